"""The web pages (placeholder until the templates land)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi import Request as HttpRequest
from fastapi.responses import HTMLResponse

router = APIRouter()


def error_page(http: HttpRequest, status: int, message: str, problems: list | None = None):
    import html

    items = "".join(f"<li>{html.escape(p['field'] or '')}: {html.escape(p['message'])}</li>" for p in problems or [])
    return HTMLResponse(f"<p>{html.escape(message)}</p><ul>{items}</ul>", status_code=status)
