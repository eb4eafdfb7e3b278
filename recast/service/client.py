"""The request service's API from Python (on ``requests``): what ``recast remote`` is built on.

The token comes from ``RECAST_TOKEN``, or from the file ``recast remote
login`` writes (``~/.config/recast/remote.json``, mode 0600; another path
with ``RECAST_REMOTE_CONFIG``), which also holds the server's URL.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import requests

from recast.errors import RecastError, RequestError

FINISHED = ("succeeded", "failed", "cancelled", "rejected")


class RemoteError(RecastError):
    """The server refused or failed; ``status`` is its HTTP status (0: it could not be reached)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def config_path() -> Path:
    if os.environ.get("RECAST_REMOTE_CONFIG"):
        return Path(os.environ["RECAST_REMOTE_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "recast" / "remote.json"


def read_config() -> dict:
    path = config_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RecastError(f"{path}: cannot be read ({exc}); run `recast remote login URL` again") from None


def write_config(url: str, token: str) -> Path:
    """Save the server and token, readable by this user only (the file is made 0600 before anything is in it)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "token": token}, out)
    os.replace(tmp, path)
    return path


def from_environment(url: str | None = None) -> Client:
    config = read_config()
    url = url or os.environ.get("RECAST_URL") or config.get("url")
    token = os.environ.get("RECAST_TOKEN") or config.get("token")
    if not url:
        raise RecastError("no server: run `recast remote login URL` (or set RECAST_URL)")
    return Client(url, token)


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 60):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            answer = self.http.request(method, f"{self.url}/api{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise RemoteError(0, f"cannot reach {self.url}: {exc}") from None
        if answer.status_code >= 400:
            raise self._error(answer)
        return answer

    def _error(self, answer: requests.Response) -> RecastError:
        try:
            detail = answer.json().get("detail")
        except ValueError:
            detail = answer.text[:500]
        if answer.status_code == 422 and isinstance(detail, dict) and "problems" in detail:
            return RequestError([(p.get("file", ""), p.get("field", ""), p.get("message", ""))
                                 for p in detail["problems"]])
        if isinstance(detail, list):  # FastAPI's own validation of a body
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
        return RemoteError(answer.status_code, f"{answer.status_code}: {detail}")

    def _json(self, method: str, path: str, **kwargs) -> Any:
        return self._send(method, path, **kwargs).json()

    # -- the API ------------------------------------------------------------------------------

    def me(self) -> dict:
        return self._json("GET", "/me")

    def analyses(self) -> list[dict]:
        return self._json("GET", "/analyses")["analyses"]

    def analysis(self, analysis_id: str) -> dict:
        return self._json("GET", f"/analyses/{analysis_id}")

    def submit(self, analysis_id: str, request_file: str | Path, title: str = "") -> dict:
        """Upload a request file and every file it names (paths relative to its folder)."""
        from recast import spec

        path = Path(request_file)
        document = spec.load_document(path)
        if not isinstance(document, dict) or not isinstance(document.get("parameters"), dict):
            raise RequestError([(str(path), "parameters", "expected a mapping of parameters")])
        parameters = self.analysis(analysis_id)["parameters"]
        names = sorted(set(file_names(parameters, document["parameters"])))
        with _opened(path.parent, names) as parts:
            form = [("request", (path.name, path.read_bytes(), "application/octet-stream")), *parts]
            return self._json("POST", f"/analyses/{analysis_id}/requests", files=form, data={"title": title})

    def requests(self, mine: bool = False, status: str | None = None) -> list[dict]:
        params = {"mine": "true"} if mine else {}
        if status:
            params["status"] = status
        return self._json("GET", "/requests", params=params)["requests"]

    def request(self, request_id: int) -> dict:
        return self._json("GET", f"/requests/{int(request_id)}")

    def wait(self, request_id: int, timeout: float | None = None, every: float = 2.0) -> dict:
        """Poll until the request is finished (succeeded, failed, cancelled or rejected)."""
        ends = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self.request(request_id)
            if found["status"] in FINISHED:
                return found
            if ends is not None and time.monotonic() > ends:
                raise RemoteError(0, f"request {request_id} is still {found['status']} after {timeout:g} s")
            time.sleep(every)

    def results(self, request_id: int) -> dict:
        return self._json("GET", f"/requests/{int(request_id)}/results")

    def provenance(self, request_id: int) -> dict:
        return self._json("GET", f"/requests/{int(request_id)}/provenance")

    def files(self, request_id: int) -> dict:
        return self._json("GET", f"/requests/{int(request_id)}/files")

    def download(self, request_id: int, folder: str | Path) -> list[Path]:
        """results.json, provenance.json and the result files, into ``folder`` (never outside it)."""
        from recast.files import atomic_write, confined

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [atomic_write(folder / "results.json", json.dumps(self.results(request_id), indent=1)),
                   atomic_write(folder / "provenance.json", json.dumps(self.provenance(request_id), indent=1))]
        for output in self.files(request_id)["outputs"]:
            target = confined(folder, output["path"], "result file")
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self._send("GET", f"/requests/{int(request_id)}/files/outputs/{output['name']}").content
            written.append(atomic_write(target, data))
        return written

    def tick(self, request_id: int, item: str, ticked: bool = True) -> list[dict]:
        return self._json("POST", f"/requests/{int(request_id)}/checklist",
                          json={"item": item, "ticked": ticked})["checklist"]

    def approve(self, request_id: int, comment: str = "") -> dict:
        return self._json("POST", f"/requests/{int(request_id)}/approve", json={"comment": comment})

    def reject(self, request_id: int, reason: str) -> dict:
        return self._json("POST", f"/requests/{int(request_id)}/reject", json={"reason": reason})

    def cancel(self, request_id: int, comment: str = "") -> dict:
        return self._json("POST", f"/requests/{int(request_id)}/cancel", json={"comment": comment})

    def rerun(self, request_id: int, comment: str = "", refresh: bool = False) -> dict:
        return self._json("POST", f"/requests/{int(request_id)}/rerun", json={"comment": comment, "refresh": refresh})


def file_names(parameters: dict, given: dict) -> Iterator[str]:
    """The file paths a request's values name, by the parameter types the server describes."""

    def walk(param: dict, value: Any) -> Iterator[str]:
        kind = param.get("type")
        if kind == "file" and isinstance(value, str):
            yield value
        elif kind == "list" and isinstance(value, list) and "items" in param:
            for item in value:
                yield from walk(param["items"], item)
        elif kind == "object" and isinstance(value, dict):
            for key, sub in param.get("properties", {}).items():
                if key in value:
                    yield from walk(sub, value[key])

    for name, value in given.items():
        if name in parameters:
            yield from walk(parameters[name], value)


class _opened:
    """The files to upload, opened without following links and refusing paths outside the request's folder."""

    def __init__(self, base: Path, names: list[str]):
        self.base, self.names, self.handles = base, names, []

    def __enter__(self) -> list:
        from recast.files import UnsafePath, open_regular

        parts = []
        try:
            for name in self.names:
                try:
                    context = open_regular(self.base, name)
                    handle = context.__enter__()
                except (UnsafePath, FileNotFoundError) as exc:
                    raise RequestError([(str(self.base), name, f"cannot be uploaded: {exc}")]) from None
                self.handles.append(context)
                parts.append(("file", (name, handle, "application/octet-stream")))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return parts

    def __exit__(self, *exc) -> None:
        for context in self.handles:
            context.__exit__(None, None, None)
        self.handles = []
