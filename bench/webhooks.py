"""Webhook intake bench: signed fulfillment webhooks against the app under gunicorn, on
PostgreSQL + Redis, compared with a bare Flask endpoint under the same gunicorn settings.

    python bench/webhooks.py [--seconds S] [--connections C] [--workers W] [--threads T]

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

def requests(count: int) -> list[bytes]:
    """`count` distinct signed deliveries, as raw HTTP/1.1 requests."""
    from okapp.shopify.simulator import Simulator

    sim = Simulator(CLIENT_ID, SECRET)
    out = []
    for n in range(count):
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


def fire(port: int, seconds: float, connections: int, count: int, queue) -> None:
    """Runs in its own process: warm up, then measure."""
    payloads = requests(count)
    # Warm-up (pools, imports), on payloads of its own; its answers count for the lost check.
    _, warm, _ = asyncio.run(_fire(port, payloads[:WARM_UP], 1.0, connections))
    latencies, statuses, elapsed = asyncio.run(_fire(port, payloads[WARM_UP:], seconds,
                                                     connections))
    queue.put((latencies, statuses, elapsed, warm.get(200, 0)))


def measure(port: int, seconds: float, connections: int, count: int):
    queue = multiprocessing.get_context("spawn").Queue()
    proc = multiprocessing.get_context("spawn").Process(
        target=fire, args=(port, seconds, connections, count, queue))
    proc.start()
    latencies, statuses, elapsed, warm_ok = queue.get(timeout=seconds + 300)
    proc.join()
    latencies.sort()
    rps = len(latencies) / elapsed
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return rps, p50, p99, statuses, warm_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    count = int(args.seconds * 4000) + 400

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
                   f"{args.connections} keep-alive connections, {args.seconds:.0f}s"
        log(f"webhooks bench: {settings}; load average before: {os.getloadavg()[0]:.1f}")

        port = free_port()
        procs.append(start_gunicorn("app:app", port, env, args.workers, args.threads))
        rps, p50, p99, statuses, warm_ok = measure(port, args.seconds, args.connections, count)
        stop(procs.pop())
        with runtime.session_scope() as s:
            stored = s.scalar(select(func.count()).select_from(WebhookEvent))
        ok = statuses.get(200, 0) + warm_ok
        log(f"app:  {rps:8.1f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  statuses {statuses}")
        drains = runtime.queue("webhooks").count
        log(f"      {ok} accepted (incl. {warm_ok} in the warm-up), {stored} stored, "
            f"{drains} drain job(s) queued for the worker")

        port = free_port()
        procs.append(start_gunicorn("bench.bare_app:app", port, env, args.workers, args.threads))
        bare_rps, bare_p50, bare_p99, bare_statuses, _ = measure(port, args.seconds,
                                                                 args.connections, count)
        stop(procs.pop())
        log(f"bare: {bare_rps:8.1f} req/s  p50 {bare_p50:6.2f} ms  p99 {bare_p99:6.2f} ms  "
            f"statuses {bare_statuses}")

        lost = ok - stored
        if set(statuses) != {200} or lost or drains != 1:
            log(f"LOST EVENTS: {lost} accepted but not stored; {drains} drain jobs (want 1); "
                f"statuses {statuses}")
            raise SystemExit(1)
        ratio = rps / bare_rps
        log(f"targets: ratio {ratio:.2f} >= 0.5 {'ok' if ratio >= 0.5 else 'MISSED'}, "
            f"p99 {p99:.1f} ms <= 25 {'ok' if p99 <= 25 else 'MISSED'}, lost 0 ok")
        print(f"RESULT bench=webhooks rps={rps:.0f} p99_ms={p99:.1f} bare_rps={bare_rps:.0f} "
              f"ratio={ratio:.2f}", flush=True)
    finally:
        for proc in procs:
            stop(proc)
        runtime.dispose()
        drop_database(admin_url, db_url)
        lock.delete(lock_key)


if __name__ == "__main__":
    main()
