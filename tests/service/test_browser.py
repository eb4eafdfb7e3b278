"""The request service in a real browser: Playwright for Python driving Debian's chromium against a real
``recast serve`` (uvicorn on 127.0.0.1) and a real ``recast worker --environment docker``, on the wh1lbb
example with two signal points uploaded from its LHE samples.

A requester signs in with their token, fills the form generated from wh1lbb's parameters and uploads the
files; a maintainer of wh1lbb ticks every item of its review checklist and approves; the request page then
follows the run live (Server-Sent Events) to 100% and succeeded, and shows the results table and the limit
plot. Screenshots of every step go to ``runs/artifacts/browser/`` (CI keeps them).

Chromium comes from ``bash scripts/browser.sh`` (Debian's package; Playwright's own browser download does
not work here), Playwright from the ``test`` extra: without either this test fails under CI=true and is
skipped elsewhere. Without a Docker engine or wh1lbb's images (``recast images build wh1lbb``) it fails,
as every docker test does. Every wait is bounded; the whole test takes about 30 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT
from .conftest import wait_for
from .test_remote import free_port

pytestmark = pytest.mark.docker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
CATALOG = ROOT / "catalog"
SAMPLES = CATALOG / "wh1lbb" / "examples" / "samples"
SHOTS = ROOT / "runs" / "artifacts" / "browser"
# Two of the example's points (catalog/wh1lbb/examples/default.yaml), named by the uploaded files' names.
POINTS = [("C1N2_Wh_300_0", 0.04848, 300), ("C1N2_Wh_750_0", 0.0008205, 750)]
MS = 1000  # Playwright's timeouts are in milliseconds


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str):
    if in_ci():
        pytest.fail(f"{what}: CI must run the browser test (bash scripts/browser.sh; pip install -e '.[test]')")
    pytest.skip(what)


@pytest.fixture(scope="module")
def playwright_api():
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing (bash scripts/browser.sh installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (it is in the test extra)")
    return sync_playwright


def require_docker_and_images():
    from recast.environments.docker import engine_available

    if not engine_available():
        pytest.fail("no Docker engine answers: start one with `bash containers/engine.sh`; "
                    "docker tests must not be skipped")
    if not (CATALOG / "wh1lbb" / "images.lock.json").exists():
        pytest.fail("wh1lbb's images are not built: recast images build wh1lbb (scripts/setup.sh does)")


class Processes:
    """The server and worker, each stopped with SIGTERM (then killed) and their output kept for failures."""

    def __init__(self, logs: Path):
        self.logs, self.running = logs, []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        process = subprocess.Popen([sys.executable, "-m", "recast", *args], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.running.append((name, process, log))
        return process

    def output(self) -> str:
        return "\n".join(f"--- {name}\n{(self.logs / f'{name}.log').read_text()[-4000:]}"
                         for name, _, _ in self.running)

    def stop(self):
        for _, process, _ in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process, log in self.running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log.close()


def create_user(data: Path, name: str, role: str, analysis: str | None = None) -> str:
    extra = ["--analysis", analysis] if analysis else []
    done = subprocess.run([sys.executable, "-m", "recast", "serve", "--data", str(data), "--catalog", str(CATALOG),
                           "admin", "create-user", name, "--role", role, *extra, "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["token"]


@pytest.fixture
def service(tmp_path):
    """A real server and a real docker worker on one data folder; the two users' tokens."""
    require_docker_and_images()
    data = tmp_path / "data"
    tokens = {"alice": create_user(data, "alice", "requester"),  # also migrates the new database
              "maria": create_user(data, "maria", "maintainer", "wh1lbb")}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes = Processes(tmp_path)
    options = ["--data", str(data), "--catalog", str(CATALOG)]
    server = processes.start("server", "serve", *options, "--host", "127.0.0.1", "--port", str(port))
    worker = processes.start("worker", "worker", *options, "--environment", "docker", "--cores", "2",
                             "--poll-seconds", "0.5", "--lease-seconds", "12")  # progress every 4 s

    def up():
        try:
            return requests.get(f"{url}/api/analyses", timeout=2).status_code == 200
        except requests.RequestException:
            return server.poll() is not None

    try:
        assert wait_for(up, 60, every=0.2) and server.poll() is None, processes.output()
        yield url, tokens, processes
        assert worker.poll() is None, processes.output()
    finally:
        processes.stop()


@pytest.fixture
def shots():
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return SHOTS


def test_request_from_form_to_limit_plot_in_a_browser(playwright_api, service, shots):
    url, tokens, processes = service
    started = time.monotonic()
    step = iter(range(1, 100))

    def shot(page, name: str):
        page.screenshot(path=str(shots / f"{next(step):02d}-{name}.png"), full_page=True)

    with playwright_api() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
                                    timeout=60 * MS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(20 * MS)
            context.set_default_navigation_timeout(30 * MS)
            page = context.new_page()
            problems = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            try:
                _walk_through(page, url, tokens, shot)
            except Exception as exc:
                shown = ""
                try:
                    shot(page, "failure")
                    shown = page.locator("main").inner_text(timeout=5 * MS)[:3000]
                except Exception as why:  # noqa: BLE001 - the browser itself may be what failed
                    shown = f"(no page: {why})"
                raise AssertionError(f"the browser walk failed at {page.url}; {problems}\n--- page\n{shown}\n"
                                     f"{processes.output()}") from exc
            assert not problems, problems
        finally:
            browser.close()
    assert time.monotonic() - started < 150


# Record every change of the request page's status and progress (made by live.js from the events).
WATCH = """() => {
  window.__watching = true;
  sessionStorage.setItem("seen", "[]");
  const status = document.getElementById("status"), progress = document.getElementById("progress");
  const record = () => {
    const seen = JSON.parse(sessionStorage.getItem("seen"));
    seen.push([status.textContent, progress.textContent]);
    sessionStorage.setItem("seen", JSON.stringify(seen));
  };
  for (const node of [status, progress]) {
    new MutationObserver(record).observe(node, {childList: true, characterData: true, subtree: true});
  }
}"""


def seen_live(page) -> list[tuple[str, str]]:
    return [tuple(s) for s in json.loads(page.evaluate("sessionStorage.getItem('seen') || '[]'"))]


def sign_in(page, url: str, token: str, name: str, shot):
    page.goto(f"{url}/")
    page.get_by_role("link", name="sign in").click()
    page.wait_for_url(f"{url}/signin")
    page.get_by_label("API token").fill(token)
    shot(page, f"signin-{name}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/requests")
    assert page.locator("header .me").inner_text().startswith(name)


def sign_out(page, url: str):
    page.get_by_role("button", name="sign out").click()
    page.wait_for_url(f"{url}/")
    assert page.get_by_role("link", name="sign in").is_visible()


def _walk_through(page, url: str, tokens: dict, shot):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    # The public catalog, then the requester signs in and opens wh1lbb.
    page.goto(f"{url}/")
    expect(page.get_by_role("link", name="wh1lbb")).to_be_visible()
    shot(page, "catalog")
    sign_in(page, url, tokens["alice"], "alice", shot)
    shot(page, "requests-alice-empty")
    page.get_by_role("link", name="catalog").click()
    page.get_by_role("link", name="wh1lbb").click()
    page.wait_for_url(f"{url}/analyses/wh1lbb")

    expect(page.locator("th:text-is('tags') + td")).to_have_text("SUSY, electroweakino, wino, Wh, example")

    # The form generated from wh1lbb's parameters: signals (YAML), luminosity_fb (number), and the files.
    signals = page.locator('textarea[name="p.signals"]')
    luminosity = page.locator('input[name="p.luminosity_fb"]')
    expect(signals).to_be_visible()
    example = signals.input_value()
    assert "events: C1N2_Wh_300_0.lhe.gz" in example and "samples/" not in example, \
        "the form is pre-filled from the analysis's example, its files named as a browser uploads them"
    assert luminosity.input_value() == "139"
    checklist = page.locator("h2:has-text('Review checklist') + ul > li")
    expect(checklist).to_have_count(3)
    page.get_by_label("Title").fill("two wino points from the browser")
    signals.fill("\n".join(f"- {{name: {name}, events: {name}.lhe.gz, cross_section_pb: {xsec}, "
                           f"m_C1N2: {mass}, m_N1: 0}}" for name, xsec, mass in POINTS))
    page.locator('input[type="file"][name="file"]').set_input_files(
        [str(SAMPLES / f"{name}.lhe.gz") for name, _, _ in POINTS])
    shot(page, "request-form-filled")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(re.compile(rf"{re.escape(url)}/requests/\d+$"))
    request_url = page.url
    expect(page.locator("#status")).to_have_text("submitted")
    expect(page.locator("h1")).to_contain_text("two wino points from the browser")
    for name, _, _ in POINTS:
        expect(page.get_by_role("link", name=f"{name}.lhe.gz")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)  # a requester cannot approve
    shot(page, "request-submitted")
    sign_out(page, url)

    # The maintainer: the review queue, every checklist item ticked, approved.
    sign_in(page, url, tokens["maria"], "maria", shot)
    page.get_by_role("link", name="review", exact=True).click()
    page.wait_for_url(f"{url}/review")
    request_id = request_url.rsplit("/", 1)[1]
    expect(page.locator("td.status")).to_have_text(["submitted"])
    shot(page, "review-queue")
    page.get_by_role("link", name=request_id, exact=True).click()
    page.wait_for_url(request_url)
    shot(page, "review-request")
    expect(page.get_by_role("button", name="Approve")).to_be_disabled()  # until every item is ticked
    for ticked in range(3):
        with page.expect_navigation(url=request_url):
            page.get_by_role("button", name="tick", exact=True).first.click()
        expect(page.get_by_role("button", name="untick", exact=True)).to_have_count(ticked + 1)
    expect(page.get_by_role("button", name="tick", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Approve")).to_be_enabled()
    shot(page, "review-ticked")
    page.get_by_label("Comment").fill("cross-sections and samples checked")
    with page.expect_navigation(url=request_url):
        page.get_by_role("button", name="Approve").click()
    page.wait_for_load_state("load")

    # The live view: status and progress change over Server-Sent Events, without reloading the page,
    # until the run ends; then the page reloads itself once to show the results. Every change the
    # script makes is recorded in sessionStorage, which outlives that reload.
    page.evaluate(WATCH)
    shot_running = False
    ends = time.monotonic() + 100
    while time.monotonic() < ends:
        try:
            state = page.evaluate("""() => ({status: document.getElementById('status').textContent,
                                             progress: document.getElementById('progress').textContent,
                                             live: window.__watching === true})""")
        except PlaywrightError:  # the page reloading itself at the end of the run
            page.wait_for_load_state("load")
            continue
        if state["status"] in ("succeeded", "failed", "cancelled") and not state["live"]:
            break
        if state["live"] and state["status"] == "running" and not shot_running \
                and re.search(r"jobs done \((?!0%)", state["progress"]):
            shot(page, "request-running")
            shot_running = True
        page.wait_for_timeout(250)
    else:
        raise AssertionError(f"the run did not finish within 100 s; seen live: {seen_live(page)}")
    page.wait_for_load_state("load")
    expect(page.locator("#status")).to_have_text("succeeded")
    seen = seen_live(page)
    assert any(status == "running" for status, _ in seen), f"no live 'running' state: {seen}"
    assert ("succeeded", "9/9 jobs done (100%)") in seen, f"the end of the run did not arrive live: {seen}"
    expect(page.locator("#progress")).to_have_text("9/9 jobs done (100%)")
    assert page.evaluate("document.getElementById('bar').value") == 100

    # The results: the points table (one row per point) and the limit plot, actually decoded.
    expect(page.get_by_role("heading", name="Results")).to_be_visible()
    points = page.locator("h3:has-text('points') + table")
    expect(points.locator("tr")).to_have_count(1 + len(POINTS))
    for name, _, _ in POINTS:
        expect(points).to_contain_text(name)
    plot = page.locator("img.plot")
    expect(plot).to_have_count(1)
    plot.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=plot.element_handle(),
                           timeout=15 * MS)
    assert page.evaluate("img => img.naturalWidth", plot.element_handle()) > 100
    shot(page, "request-succeeded")
    timeline = page.locator("h2:has-text('Timeline') + table")
    for change in ("submitted → approved", "running → succeeded"):
        expect(timeline).to_contain_text(change)
