"""The request service under load: a real `recast serve` (uvicorn) on loopback, many HTTP clients at once.

Phases, one after the other, against the same server in the same run; the
health endpoint (static: no database, no token) is the baseline, measured the
same way as the status endpoint:

1. closed loop: N clients (default 50) on ``GET /api/health``, then on
   ``GET /api/requests/ID`` (a request its user owns; ``Authorization:
   Bearer``, one token per user), each asking again as soon as it has its
   answer: the server's capacity, and latency at saturation;
2. polling: the same, each client looking every ``--interval`` seconds
   (default 0.5 s; ``recast remote wait`` looks every 2 s, a request's web
   page every 1 s): the latency a polling client sees; the target's phase;
3. submissions: S clients (default 20) each uploading the toy analysis's
   request (multipart: the document and its two files; 201), closed loop;
4. mixed: the N polling clients and the S submitters at once.

Each client is its own keep-alive connection (httpx, asyncio, one process
beside the server). Every loop is bounded by a count per client and by
``--seconds`` of wall time per phase. Printed per phase: p50/p95/p99 latency,
throughput, errors (any answer but the expected status, or a transport
error), the server's CPU time per answer; and the ratios of status to health.
Target: status p95 under 50 ms and no error, at 50 clients, on two cores.
Exits 1 when it is missed.

The server is ``python -m recast serve`` in a subprocess with a temporary
``--data`` folder and the toy catalog (``tests/fixtures/catalog``); SQLite in
the data folder by default, or PostgreSQL with ``--database-url`` (a fresh
database is made in that server and dropped afterwards; ``bash
scripts/postgres.sh`` prints a URL whose role may create databases).

    python benchmarks/bench_service.py [--clients 50] [--submitters 20] [--seconds 10] [--interval 0.5]
                                       [--database-url postgresql+psycopg://...] [--profile out.svg|out.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CATALOG = ROOT / "tests" / "fixtures" / "catalog"
TOY_REQUESTS = CATALOG / "toy" / "requests"
TARGET_P95_S = 0.050


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def recast(*args: str, database_url: str | None, data: Path) -> list[str]:
    argv = [sys.executable, "-m", "recast", "serve", "--data", str(data), "--catalog", str(CATALOG)]
    if database_url:
        argv += ["--database-url", database_url]
    return argv + list(args)


def fresh_postgres(url: str) -> tuple[str, callable]:
    """A new, empty database on the server ``url`` names; and a function that drops it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    base = make_url(url)
    name = f"recast_bench_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        for attempt in range(40):  # an autovacuum worker (not ours to end) may be on it for a moment
            try:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except DBAPIError:
                if attempt == 39:
                    raise
                time.sleep(0.25)
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_up(base: str, server: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if server.poll() is not None:
            raise SystemExit(f"the server ended with status {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer in {seconds:.0f} s:\n{log.read_text()[-3000:]}")


# -- the clients -----------------------------------------------------------------------------------


def toy_upload(title: str) -> dict:
    files = [("request", ("request.yaml", (TOY_REQUESTS / "default.yaml").read_bytes(), "text/yaml"))]
    for name in ("a.txt", "b.txt"):
        files.append(("file", (f"data/{name}", (TOY_REQUESTS / "data" / name).read_bytes(),
                               "application/octet-stream")))
    return {"files": files, "data": {"title": title}}


@dataclass
class Phase:
    name: str
    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    wall: float = 0.0
    server_cpu: float = 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def line(self) -> str:
        answers = len(self.latencies) + sum(self.errors.values())
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        per_answer = self.server_cpu / answers * 1000 if answers else float("nan")
        return (f"{self.name:<22} {self.clients:>3} clients  {len(self.latencies):>6} ok  "
                f"p50 {self.quantile(.5) * 1000:7.1f} ms  p95 {self.quantile(.95) * 1000:7.1f} ms  "
                f"p99 {self.quantile(.99) * 1000:7.1f} ms  {self.throughput:7.1f}/s  "
                f"server CPU {per_answer:5.2f} ms/answer  errors: {errors}")


def open_clients(count: int, base: str) -> list[httpx.AsyncClient]:
    """One client per simulated user, each its own keep-alive connection. Made before a phase's clock
    starts: making one takes milliseconds (an SSL context), and 50 made inside the phase would block the
    event loop, then release every client at once (a burst the server never sees in real life)."""
    return [httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=1))
            for _ in range(count)]


async def drive(phase: Phase, clients: list[httpx.AsyncClient], call, expected: int, count: int,
                deadline: float, interval: float) -> None:
    """Each client does ``call`` up to ``count`` times; pollers start evenly spread over one interval."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(i: int, http: httpx.AsyncClient):
        if interval:
            await asyncio.sleep(max(0.0, start + interval * i / len(clients) - loop.time()))
        for k in range(count):
            if loop.time() > deadline:
                return
            began = time.perf_counter()
            try:
                answer = await call(http, i, k)
            except httpx.HTTPError as exc:
                phase.errors[type(exc).__name__] += 1
                continue
            elapsed = time.perf_counter() - began
            if answer.status_code == expected:
                phase.latencies.append(elapsed)
            else:
                phase.errors[f"HTTP {answer.status_code}"] += 1
            if interval:
                await asyncio.sleep(interval)

    await asyncio.gather(*(one(i, http) for i, http in enumerate(clients)))


async def measure(phases: list[tuple[Phase, object, int, int, float]], base: str, seconds: float,
                  server_pid: int) -> None:
    """Run phases concurrently (each: phase, call, expected status, count per client, interval)."""
    loop = asyncio.get_running_loop()
    clients = [open_clients(phase.clients, base) for phase, *_ in phases]
    try:
        deadline = loop.time() + seconds
        cpu = cpu_seconds(server_pid)
        start = time.perf_counter()
        await asyncio.gather(*(drive(phase, mine, call, expected, count, deadline, interval)
                               for (phase, call, expected, count, interval), mine in zip(phases, clients)))
        wall = time.perf_counter() - start
        used = cpu_seconds(server_pid) - cpu
    finally:
        for mine in clients:
            for http in mine:
                await http.aclose()
    total = sum(len(p.latencies) + sum(p.errors.values()) for p, *_ in phases) or 1
    for phase, *_ in phases:
        phase.wall = wall
        phase.server_cpu = used * (len(phase.latencies) + sum(phase.errors.values())) / total


# -- the run -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="status (and health) clients")
    parser.add_argument("--submitters", type=int, default=20, help="clients uploading requests")
    parser.add_argument("--polls", type=int, default=400, help="at most this many GETs per client and phase")
    parser.add_argument("--submissions", type=int, default=10, help="at most this many uploads per submitter and phase")
    parser.add_argument("--seconds", type=float, default=10, help="at most this long per phase")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="seconds a polling client waits between its looks (the target's phases)")
    parser.add_argument("--users", type=int, default=10, help="requester users (each with a token and a request)")
    parser.add_argument("--database-url", help="PostgreSQL server to run on (a fresh database is made there)")
    parser.add_argument("--keep-log", help="copy the server's log here")
    parser.add_argument("--profile", help="py-spy the server during the status phase into this file (.svg: a flame graph, else "
                             "collapsed stacks)")
    args = parser.parse_args()

    drop = None
    database_url = args.database_url
    if database_url:
        database_url, drop = fresh_postgres(database_url)
    try:
        with tempfile.TemporaryDirectory(prefix="recast-bench-service-") as name:
            return run(args, Path(name), database_url)
    finally:
        if drop:
            drop()


def run(args, tmp: Path, database_url: str | None) -> int:
    data = tmp / "data"
    made = subprocess.run(recast("admin", "create-user", "bench-admin", "--role", "admin", "--json",
                                 database_url=database_url, data=data),
                          cwd=ROOT, check=True, capture_output=True, text=True)
    admin_token = json.loads(made.stdout)["token"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(recast("--host", "127.0.0.1", "--port", str(port),
                                         database_url=database_url, data=data),
                                  cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_up(base, server, log)
        return asyncio.run(load(args, base, admin_token, server.pid, database_url))
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if "Traceback" in line or " 500 " in line]
        if errors:
            print(f"server log: {len(errors)} error line(s), first: {errors[0]}")
        if args.keep_log:
            Path(args.keep_log).write_bytes(log.read_bytes())


async def load(args, base: str, admin_token: str, server_pid: int, database_url: str | None) -> int:
    import platform

    admin = {"Authorization": f"Bearer {admin_token}"}
    tokens, requests = [], []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for n in range(args.users):
            made = await http.post("/api/users", headers=admin, json={"name": f"user{n}", "role": "requester"})
            made.raise_for_status()
            tokens.append({"Authorization": f"Bearer {made.json()['token']}"})
            sent = await http.post("/api/analyses/toy/requests", headers=tokens[-1], **toy_upload(f"request {n}"))
            assert sent.status_code == 201, sent.text
            requests.append(sent.json()["id"])
            if n % 2:  # half of them approved: queued, with a longer history
                (await http.post(f"/api/requests/{requests[-1]}/approve", headers=admin)).raise_for_status()

    async def health(http, i, k):
        return await http.get("/api/health")

    async def status(http, i, k):
        user = i % args.users
        return await http.get(f"/api/requests/{requests[user]}", headers=tokens[user])

    async def submit(http, i, k):
        return await http.post("/api/analyses/toy/requests", headers=tokens[i % args.users],
                               **toy_upload(f"bench {i}.{k}"))

    print(f"recast serve on {base} ({'PostgreSQL' if database_url else 'SQLite'}), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, "
          f"at most {args.seconds:g} s per phase")
    # Warm up: imports, connection pools, the catalog's cache.
    await measure([(Phase("warm-up", 10), status, 200, 20, 0), (Phase("warm-up", 2), submit, 201, 2, 0)],
                  base, 20, server_pid)

    def phase(name, clients, call, expected, count, interval):
        return Phase(name, clients), call, expected, count, interval

    async def one(*phases):
        await measure(list(phases), base, args.seconds, server_pid)
        for found in phases:
            print(found[0].line())

    def ratio(b: Phase, s: Phase, what: str) -> None:
        print(f"  status / health, {what}: p50 {s.quantile(.5) / b.quantile(.5):.2f}x, "
              f"p95 {s.quantile(.95) / b.quantile(.95):.2f}x, p99 {s.quantile(.99) / b.quantile(.99):.2f}x, "
              f"throughput {s.throughput / b.throughput:.2f}x")

    # Closed loop: each client asks again as soon as it has its answer (the server's capacity).
    closed_health = phase("health, closed loop", args.clients, health, 200, args.polls, 0)
    await one(closed_health)
    profiler = None
    if args.profile:
        profiler = subprocess.Popen(["py-spy", "record", "--pid", str(server_pid), "--output", args.profile,
                                     "--duration", str(int(args.seconds)), "--rate", "200", "--nonblocking", "--gil",
                                     "--format", "flamegraph" if args.profile.endswith(".svg") else "raw"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    closed_status = phase("status, closed loop", args.clients, status, 200, args.polls, 0)
    await one(closed_status)
    if profiler:
        profiler.wait()
        print(f"  profile of the closed-loop status phase: {args.profile}")
    ratio(closed_health[0], closed_status[0], "closed loop")
    # Polling: each client looks every --interval seconds (the target's load).
    polled_health = phase(f"health, every {args.interval:g} s", args.clients, health, 200, args.polls, args.interval)
    await one(polled_health)
    polled_status = phase(f"status, every {args.interval:g} s", args.clients, status, 200, args.polls, args.interval)
    await one(polled_status)
    ratio(polled_health[0], polled_status[0], f"every {args.interval:g} s")
    submitted = phase("submissions", args.submitters, submit, 201, args.submissions, 0)
    await one(submitted)
    mixed_status = phase(f"status + submissions", args.clients, status, 200, args.polls, args.interval)
    mixed_submit = phase("submissions + status", args.submitters, submit, 201, args.submissions, 0)
    await one(mixed_status, mixed_submit)

    everything = (closed_health, closed_status, polled_health, polled_status, submitted, mixed_status, mixed_submit)
    errors = sum(sum(p[0].errors.values()) for p in everything)
    p95 = polled_status[0].quantile(.95)
    met = p95 < TARGET_P95_S and errors == 0
    print(f"target (status p95 < {TARGET_P95_S * 1000:.0f} ms polling every {args.interval:g} s, no error in any "
          f"phase, {args.clients} clients): {'met' if met else 'NOT met'} (p95 {p95 * 1000:.1f} ms, "
          f"{errors} error(s))")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
