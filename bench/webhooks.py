"""Webhook intake bench: signed fulfillment webhooks against the app under gunicorn, on
PostgreSQL + Redis, compared with a bare Flask endpoint under the same gunicorn settings.

    python bench/webhooks.py [--seconds S] [--rounds R] [--connections C] [--workers W] [--threads T]

A load process (not the server's) keeps C keep-alive connections busy for S seconds, each
request a distinct `fulfillments/create` delivery signed as Shopify signs it; it records every
latency. The same run then measures the bare endpoint. Every 200 must be a stored event with a
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
                return proc
        except OSError:
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


async def _connection(port: int, payloads: list[bytes], cursor: list[int], deadline: float,
                      latencies: list[float], statuses: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline and cursor[0] < len(payloads):
            payload = payloads[cursor[0]]
            cursor[0] += 1
            started = time.perf_counter()
            writer.write(payload)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            status = int(status_line.split()[1]) if status_line else 0
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _fire(port: int, payloads: list[bytes], seconds: float, connections: int):
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    cursor = [0]
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, payloads, cursor, started + seconds, latencies,
                                       statuses) for _ in range(connections)))
    return latencies, statuses, time.perf_counter() - started


def fire(port: int, seconds: float, connections: int, count: int, first: int, queue) -> None:
    """Runs in its own process: warm up, then measure."""
    payloads = requests(count, first)
    # Warm-up (pools, imports), on payloads of its own; its answers count for the lost check.
    _, warm, _ = asyncio.run(_fire(port, payloads[:WARM_UP], 1.0, connections))
    latencies, statuses, elapsed = asyncio.run(_fire(port, payloads[WARM_UP:], seconds,
                                                     connections))
    queue.put((latencies, statuses, elapsed, warm.get(200, 0)))


class Target:
    """One server under test and what its turns measured."""

    def __init__(self, name: str, port: int):
        self.name, self.port = name, port
        self.latencies: list[float] = []
        self.elapsed = 0.0
        self.statuses: dict[int, int] = {}
        self.warm_ok = 0
        self.sent = 0  # deliveries numbered so far: every turn sends new ones

    def turn(self, seconds: float, connections: int, count: int) -> float:
        """Load it for `seconds`; returns this turn's req/s."""
        queue = multiprocessing.get_context("spawn").Queue()
        proc = multiprocessing.get_context("spawn").Process(
            target=fire, args=(self.port, seconds, connections, count, self.sent, queue))
        proc.start()
        latencies, statuses, elapsed, warm_ok = queue.get(timeout=seconds + 300)
        proc.join()
        self.sent += count
        self.latencies += latencies
        self.elapsed += elapsed
        self.warm_ok += warm_ok
        for status, n in statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        return len(latencies) / elapsed

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

        app, bare = Target("app", free_port()), Target("bare", free_port())
        procs.append(start_gunicorn("app:app", app.port, env, args.workers, args.threads))
        procs.append(start_gunicorn("bench.bare_app:app", bare.port, env, args.workers,
                                    args.threads))
        for n in range(args.rounds):
            figures = [f"{t.name} {t.turn(turn_seconds, args.connections, count):7.1f}"
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
