"""Where the service keeps its data, which database it uses, and the limits on what it accepts.

The data folder holds the uploaded files (``files/``, content-addressed by
sha256), each request's materialised folder (``requests/ID/``) and run folder
(``runs/ID/``), and, by default, the SQLite database (``recast.db``, WAL). With
PostgreSQL (``--database-url``) the server and every worker must still share the
data folder (one machine, or a shared file system).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA = "recast-data"
SQLITE_FILE = "recast.db"

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one submission may be. Everything past a limit is refused, and nothing is stored."""

    document_bytes: int = 1 * MiB  # the request document (YAML or JSON)
    file_bytes: int = 512 * MiB  # one uploaded file
    total_bytes: int = 2048 * MiB  # everything uploaded with one request
    files: int = 1000  # uploaded files per request
    name_chars: int = 512  # one file's relative path
    document_nodes: int = 100_000  # values in the parsed document, aliases expanded (YAML bombs)


@dataclass(frozen=True)
class ServiceConfig:
    data: Path = field(default_factory=lambda: Path(DEFAULT_DATA))
    database_url: str | None = None
    catalog: Path | None = None  # None: the catalog shipped with recast (or RECAST_CATALOG)
    limits: Limits = field(default_factory=Limits)
    secure_cookies: bool = False  # set the Secure flag on the session cookie (serve behind HTTPS)
    session_hours: float = 12.0

    def __post_init__(self):
        object.__setattr__(self, "data", Path(self.data).resolve())
        if self.catalog is None and os.environ.get("RECAST_CATALOG"):
            object.__setattr__(self, "catalog", Path(os.environ["RECAST_CATALOG"]))

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.data / SQLITE_FILE}"

    @property
    def files_dir(self) -> Path:
        return self.data / "files"

    @property
    def requests_dir(self) -> Path:
        return self.data / "requests"

    @property
    def runs_dir(self) -> Path:
        return self.data / "runs"

    @property
    def uploads_dir(self) -> Path:
        """Uploads in progress: deleted once checked (stored, or refused)."""
        return self.data / "uploads"

    def ensure(self) -> None:
        for folder in (self.data, self.files_dir, self.requests_dir, self.runs_dir, self.uploads_dir):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data, 0o700)
