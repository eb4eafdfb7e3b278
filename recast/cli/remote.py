"""``recast remote``: the request service from the command line (the token from RECAST_TOKEN or
``recast remote login``; the server from RECAST_URL or the same login)."""

from __future__ import annotations

import os

import click

from recast.cli.common import console, emit_json, err_console, json_option, table
from recast.errors import RecastError

id_argument = click.argument("request_id", type=click.IntRange(min=1))
url_option = click.option("--url", envvar="RECAST_URL", help="The server (default: the one of `recast remote login`).")


def _client(url=None):
    from recast.service.client import from_environment

    return from_environment(url)


def _show(request: dict, as_json: bool) -> None:
    if as_json:
        emit_json(request)
        return
    progress = request.get("progress") or {}
    done = f"{progress.get('done', 0)}/{progress.get('total') or '?'}" if progress else "-"
    console.print(table(None, ["id", "analysis", "owner", "status", "jobs done", "updated", "title"],
                        [[request["id"], request["analysis"], request["owner"], request["status"], done,
                          request["updated"], request["title"]]]))
    if request.get("reason"):
        console.print(f"rejected: {request['reason']}", highlight=False)
    if request.get("error"):
        console.print(f"error: {request['error']}", highlight=False)
    unticked = [c["item"] for c in request.get("checklist") or [] if not c["ticked"]]
    if request.get("status") == "submitted" and unticked:
        console.print("checklist, not ticked: " + "; ".join(unticked), highlight=False)


@click.group()
def remote():
    """Submit to, follow and review on a recast request service."""


@remote.command()
@click.argument("url")
@click.option("--token", envvar="RECAST_TOKEN", help="The API token (default: asked, not echoed; env RECAST_TOKEN).")
@json_option
def login(url, token, as_json):
    """Check a token against URL and remember both (in a file only you can read)."""
    from recast.service.client import Client, write_config

    token = token or click.prompt("token", hide_input=True)
    me = Client(url, token).me()
    path = write_config(url, token)
    if as_json:
        emit_json({"url": url, "user": me["name"], "roles": me["roles"], "config": str(path)})
    else:
        err_console.print(f"signed in to {url} as {me['name']}; saved in {path}", highlight=False)


@remote.command()
@click.argument("analysis_id")
@click.option("--request", "request_file", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The request (YAML or JSON); its files, relative to its folder, are uploaded with it.")
@click.option("--title", default="", help="A title for the request.")
@url_option
@json_option
def submit(analysis_id, request_file, title, url, as_json):
    """Submit a request for ANALYSIS_ID, with its files."""
    found = _client(url).submit(analysis_id, request_file, title)
    if as_json:
        emit_json(found)
    else:
        err_console.print(f"request {found['id']} submitted: a maintainer of {analysis_id} reviews it next",
                          highlight=False)


@remote.command()
@click.argument("request_id", type=click.IntRange(min=1), required=False)
@click.option("--mine", is_flag=True, help="Only my own requests.")
@url_option
@json_option
def status(request_id, mine, url, as_json):
    """One request (with REQUEST_ID), or the requests I may see."""
    client = _client(url)
    if request_id:
        _show(client.request(request_id), as_json)
        return
    found = client.requests(mine=mine)
    if as_json:
        emit_json(found)
    else:
        console.print(table(None, ["id", "analysis", "owner", "status", "updated", "title"],
                            [[r["id"], r["analysis"], r["owner"], r["status"], r["updated"], r["title"]]
                             for r in found]))


@remote.command()
@id_argument
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds.")
@click.option("--every", type=click.FloatRange(min=0.2), default=2, show_default=True, help="Seconds between looks.")
@url_option
@json_option
def wait(request_id, timeout, every, url, as_json):
    """Wait until a request is finished; exit 0 only if it succeeded."""
    found = _client(url).wait(request_id, timeout, every)
    _show(found, as_json)
    if found["status"] != "succeeded":
        raise SystemExit(1)


@remote.command()
@id_argument
@url_option
@json_option
def results(request_id, url, as_json):
    """A succeeded request's results.json."""
    document = _client(url).results(request_id)
    if as_json:
        emit_json(document)
        return
    rows = [[name, value] for name, value in document.get("values", {}).items()]
    console.print(table(f"request {request_id}: {document['analysis']['id']} {document['analysis']['version']}",
                        ["value", "result"], rows))


@remote.command()
@id_argument
@click.option("--to", "folder", type=click.Path(file_okay=False), help="Folder (default: request-ID).")
@url_option
@json_option
def download(request_id, folder, url, as_json):
    """Download results.json, provenance.json and the result files."""
    written = _client(url).download(request_id, folder or f"request-{request_id}")
    if as_json:
        emit_json([str(p) for p in written])
    else:
        for path in written:
            click.echo(str(path))


@remote.command()
@id_argument
@click.argument("items", nargs=-1, required=True)
@click.option("--untick", is_flag=True, help="Remove the ticks instead.")
@url_option
@json_option
def tick(request_id, items, untick, url, as_json):
    """Tick items of a request's review checklist (maintainers)."""
    client = _client(url)
    for item in items:
        state = client.tick(request_id, item, not untick)
    if as_json:
        emit_json(state)
    else:
        console.print(table(None, ["item", "ticked", "by"], [[c["item"], c["ticked"], c["by"]] for c in state]))


@remote.command()
@id_argument
@click.option("--comment", default="")
@url_option
@json_option
def approve(request_id, comment, url, as_json):
    """Approve a request (maintainers; every checklist item ticked): it is queued for a worker."""
    _show(_client(url).approve(request_id, comment), as_json)


@remote.command()
@id_argument
@click.option("--reason", required=True, help="Why: the requester reads it.")
@url_option
@json_option
def reject(request_id, reason, url, as_json):
    """Reject a request (maintainers)."""
    _show(_client(url).reject(request_id, reason), as_json)


@remote.command()
@id_argument
@click.option("--comment", default="")
@url_option
@json_option
def cancel(request_id, comment, url, as_json):
    """Cancel a request (its owner, or a maintainer); a running one is stopped."""
    _show(_client(url).cancel(request_id, comment), as_json)


@remote.command()
@id_argument
@click.option("--comment", default="")
@click.option("--refresh", is_flag=True, help="Only if the analysis changed since: run into a new folder, keep both.")
@url_option
@json_option
def rerun(request_id, comment, refresh, url, as_json):
    """Queue a finished request again (maintainers)."""
    _show(_client(url).rerun(request_id, comment, refresh), as_json)
