"""Webhook intake bench: signed fulfillment webhooks against the app under gunicorn, on
PostgreSQL + Redis, compared with a bare Flask endpoint under the same gunicorn settings.

    python bench/webhooks.py [--seconds S] [--rounds R] [--connections C] [--workers W] [--threads T]

A load process (not the server's) keeps C keep-alive connections busy, each request a distinct
`fulfillments/create` delivery signed as Shopify signs it, and records every latency. The two
servers run side by side and take turns (app, bare, bare, app per round), each turn on new
connections spread evenly over gunicorn's workers (`open_evenly`). Every 200 must be a stored event with a
drain job queued for the worker: the bench fails on any lost one. Last line:

    RESULT bench=webhooks rps=… p99_ms=… bare_rps=… ratio=…

Targets: ratio >= 0.5, p99 <= 25 ms, zero lost events.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bench.scheduler import drop_database, log, make_database, take_redis_db  # noqa: E402
from okapp import migrate  # noqa: E402
from okapp.config import Config  # noqa: E402
from okapp.models import WebhookEvent  # noqa: E402
from okapp.runtime import Runtime  # noqa: E402

CLIENT_ID, SECRET = "bench-client-id", "bench-client-secret-0123456789abcdef0123456789"
PATH = "/webhooks/fulfillments"
WARM_UP = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(target: str, port: int, env: dict, workers: int, threads: int):
    cmd = [sys.executable, "-m", "gunicorn", target, "--bind", f"127.0.0.1:{port}",
           "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
           "--keep-alive", "30", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if len(worker_pids(proc.pid)) == workers:
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"gunicorn {target} did not start")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- the load process ------------------------------------------------------------------------

def requests(count: int, first: int) -> list[bytes]:
    """`count` distinct signed deliveries, numbered from `first`, as raw HTTP/1.1 requests."""
    from okapp.shopify.simulator import Simulator

    sim = Simulator(CLIENT_ID, SECRET)
    out = []
    for n in range(first, first + count):
        payload = {"id": 5_000_000 + n, "order_id": 6_000_000 + n, "status": "success",
                   "created_at": "2026-11-01T12:00:00Z", "updated_at": "2026-11-01T12:00:00Z",
                   "shipment_status": None, "tracking_company": "UPS",
                   "tracking_number": f"1Z{n:012d}", "email": f"c{n}@example.com",
                   "line_items": [{"id": 7_000_000 + n, "quantity": 1, "title": "Thing",
                                   "requires_shipping": True, "gift_card": False}]}
        body, headers = sim.signed_webhook("bench-shop", "fulfillments/create", payload)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out.append((f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    sim.http.close()
    return out


def worker_pids(master: int) -> list[int]:
    """gunicorn's workers: the processes whose parent is its master."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == master:
                pids.append(int(entry))
    return sorted(pids)


def owners(server_port: int, client_ports: list[int], pids: list[int]) -> list[int | None]:
    """Which worker holds the server's end of each client connection (read from /proc)."""
    inode_of = {}  # client port -> inode of the server-side socket
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = (int(a.split(":")[1], 16) for a in fields[1:3])
        if local_port == server_port:
            inode_of[remote_port] = fields[9]
    pid_of = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                pid_of[target[8:-1]] = pid
    return [pid_of.get(inode_of.get(port, "")) for port in client_ports]


class Connection:
    """One keep-alive connection of the load process."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.port = writer.get_extra_info("sockname")[1]

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, payload: bytes) -> int:
        self.writer.write(payload)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1]) if status_line else 0

    def close(self) -> None:
        self.writer.close()


async def open_evenly(port: int, count: int, pids: list[int], payloads: list[bytes],
                      statuses: dict) -> list[Connection]:
    """`count` connections spread evenly over the workers, each having made one request.

    Each worker of gthread accepts whatever connections it is woken for, so a burst of new
    connections often lands 7 to 1 on two workers, and a turn then runs at about half speed
    whichever server is measured. In production many connections from Shopify even that out;
    here the bench evens it out itself, the same way for both servers, by reopening connections
    that landed on a worker that already has its share. Requests made on the way count as
    warm-up."""
    share = -(-count // len(pids))  # no worker holds more than its share, rounded up
    connections: list[Connection] = []
    while len(connections) < count:
        if not payloads:
            raise SystemExit(f"could not spread {count} connections over {len(pids)} workers")
        connection = await Connection.open(port)
        status = await connection.request(payloads.pop())  # the worker has accepted it now
        statuses[status] = statuses.get(status, 0) + 1
        held = owners(port, [c.port for c in connections + [connection]], pids)
        if held[-1] is not None and held.count(held[-1]) <= share:
            connections.append(connection)
        else:
            connection.close()
    return connections


async def _load(connection: Connection, payloads: list[bytes], deadline: float,
                latencies: list[float], statuses: dict) -> None:
    while time.perf_counter() < deadline and payloads:
        payload = payloads.pop()
        started = time.perf_counter()
        status = await connection.request(payload)
        latencies.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1


async def _fire(port: int, pids: list[int], payloads: list[bytes], seconds: float,
                connections: int):
    warm: dict[int, int] = {}
    measured = payloads[WARM_UP:]
    warm_up = payloads[:WARM_UP]
    pool = await open_evenly(port, connections, pids, warm_up, warm)
    held = owners(port, [c.port for c in pool], pids)
    split = "+".join(str(held.count(pid)) for pid in pids)
    try:
        # Warm-up (pools, imports, prepared statements) on the rest of its own payloads.
        await asyncio.gather(*(_load(c, warm_up, time.perf_counter() + 1.0, [], warm)
                               for c in pool))
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        measured.reverse()  # taken from the end: in numbering order
        started = time.perf_counter()
        await asyncio.gather(*(_load(c, measured, started + seconds, latencies, statuses)
                               for c in pool))
        return latencies, statuses, time.perf_counter() - started, warm, split
    finally:
        for c in pool:
            c.close()


def fire(port: int, master: int, seconds: float, connections: int, count: int, first: int,
         queue) -> None:
    """Runs in its own process: open connections evenly, warm up, then measure."""
    payloads = requests(count, first)
    latencies, statuses, elapsed, warm, split = asyncio.run(
        _fire(port, worker_pids(master), payloads, seconds, connections))
    queue.put((latencies, statuses, elapsed, warm.get(200, 0), split))


class Target:
    """One server under test and what its turns measured."""

    def __init__(self, name: str, port: int, master: int):
        self.name, self.port, self.master = name, port, master
        self.latencies: list[float] = []
        self.elapsed = 0.0
        self.statuses: dict[int, int] = {}
        self.warm_ok = 0
        self.sent = 0  # deliveries numbered so far: every turn sends new ones

    def turn(self, seconds: float, connections: int, count: int) -> str:
        """Load it for `seconds`; returns this turn's req/s and its connections per worker."""
        queue = multiprocessing.get_context("spawn").Queue()
        proc = multiprocessing.get_context("spawn").Process(
            target=fire, args=(self.port, self.master, seconds, connections, count, self.sent, queue))
        proc.start()
        latencies, statuses, elapsed, warm_ok, split = queue.get(timeout=seconds + 300)
        proc.join()
        self.sent += count
        self.latencies += latencies
        self.elapsed += elapsed
        self.warm_ok += warm_ok
        for status, n in statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        return f"{len(latencies) / elapsed:7.1f} ({split})"

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per server, all rounds")
    parser.add_argument("--rounds", type=int, default=2,
                        help="each round is four turns: app, bare, bare, app")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if args.seconds <= 0 or args.rounds < 1 or args.connections < 1:
        parser.error("--seconds must be positive, --rounds and --connections at least 1")
    turn_seconds = args.seconds / (2 * args.rounds)
    count = int(turn_seconds * 4000) + WARM_UP + 100

    admin_url, db_url = make_database()
    redis_url, lock, lock_key = take_redis_db()
    procs = []
    try:
        config = Config(env="development", database_url=db_url, redis_url=redis_url,
                        shopify_api_key=CLIENT_ID, shopify_api_secret=SECRET,
                        secret_key="bench-" + "x" * 40, instance_path=ROOT / "instance" / "bench")
        runtime = Runtime(config)
        migrate.upgrade(runtime.engine)
        runtime.redis.flushdb()
        env = dict(os.environ, PYTHONPATH=str(ROOT), DATABASE_URL=db_url, REDIS_URL=redis_url,
                   SHOPIFY_API_KEY=CLIENT_ID, SHOPIFY_API_SECRET=SECRET,
                   SECRET_KEY=config.secret_key, OKAPP_INSTANCE_PATH=str(config.instance_path),
                   OKAPP_ENV="development")
        settings = f"gunicorn gthread, {args.workers} workers x {args.threads} threads, " \
                   f"{args.connections} keep-alive connections, {args.seconds:.0f}s per server " \
                   f"in {args.rounds} rounds"
        log(f"webhooks bench: {settings}; load average before: {os.getloadavg()[0]:.1f}")

        targets = []
        for name, wsgi in (("app", "app:app"), ("bare", "bench.bare_app:app")):
            port = free_port()
            procs.append(start_gunicorn(wsgi, port, env, args.workers, args.threads))
            targets.append(Target(name, port, procs[-1].pid))
        app, bare = targets
        for n in range(args.rounds):
            figures = [f"{t.name} {t.turn(turn_seconds, args.connections, count)}"
                       for t in (app, bare, bare, app)]
            log(f"round {n + 1}: req/s " + ", ".join(figures))
        for proc in procs:
            stop(proc)
        procs.clear()

        with runtime.session_scope() as s:
            stored = s.scalar(select(func.count()).select_from(WebhookEvent))
        ok = app.statuses.get(200, 0) + app.warm_ok
        drains = runtime.queue("webhooks").count
        for t in (app, bare):
            log(f"{t.name + ':':5} {t.rps:8.1f} req/s  p50 {t.percentile(0.5):6.2f} ms  "
                f"p99 {t.percentile(0.99):6.2f} ms  statuses {t.statuses}")
        log(f"      {ok} accepted by the app (incl. {app.warm_ok} in warm-ups), {stored} stored, "
            f"{drains} drain job(s) queued for the worker")

        lost = ok - stored
        if set(app.statuses) != {200} or lost or drains != 1:
            log(f"LOST EVENTS: {lost} accepted but not stored; {drains} drain jobs (want 1); "
                f"statuses {app.statuses}")
            raise SystemExit(1)
        ratio, p99 = app.rps / bare.rps, app.percentile(0.99)
        log(f"targets: ratio {ratio:.2f} >= 0.5 {'ok' if ratio >= 0.5 else 'MISSED'}, "
            f"p99 {p99:.1f} ms <= 25 {'ok' if p99 <= 25 else 'MISSED'}, lost 0 ok")
        print(f"RESULT bench=webhooks rps={app.rps:.0f} p99_ms={p99:.1f} "
              f"bare_rps={bare.rps:.0f} ratio={ratio:.2f}", flush=True)
    finally:
        for proc in procs:
            stop(proc)
        runtime.dispose()
        drop_database(admin_url, db_url)
        lock.delete(lock_key)


if __name__ == "__main__":
    main()
