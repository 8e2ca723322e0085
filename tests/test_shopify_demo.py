"""`okapp demo` end to end: the simulator starts, the demo shop is installed through it, the
printed link opens the Sequences page within 60 s, and a fulfilment in the simulator reaches the
app as a signed webhook that the worker applies."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from okapp.config import PROJECT_ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_demo_installs_through_the_simulator_and_serves_the_sequences_page(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "SHOPIFY_ADMIN_BASE_URL", "APP_URL")}
    env.update(OKAPP_INSTANCE_PATH=str(tmp_path / "instance"), OKAPP_ENV="development",
               PYTHONUNBUFFERED="1")
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "okapp.cli", "demo", "--port", str(port)],
                                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        started = time.monotonic()
        url = sim = None
        while time.monotonic() - started < 60 and not (url and sim):
            assert demo.poll() is None, log.read_text()
            text = log.read_text()
            url = (re.search(rf"http://127\.0\.0\.1:{port}/sequences\?dev_login=\S+", text)
                   or [None])[0]
            sim = (re.search(r"simulator is at (http://127\.0\.0\.1:\d+)", text) or [None, None])[1]
            time.sleep(0.5)
        assert url and sim, log.read_text()
        page = httpx.get(url, follow_redirects=True, timeout=10)
        assert page.status_code == 200
        assert time.monotonic() - started < 60
        assert "Okapi Outfitters" in page.text

        shop = httpx.get(f"{sim}/_sim/shops/okapp-demo", timeout=10).json()
        assert shop["counters"]["exchanges"] == 1 and shop["orders"] == 120
        order_id = shop["unfulfilled"][0]
        httpx.post(f"{sim}/_sim/shops/okapp-demo/orders/{order_id}/fulfill",
                   timeout=30).raise_for_status()
        database = tmp_path / "instance" / "okapp.db"
        deadline = time.monotonic() + 30
        fulfilled = None
        while time.monotonic() < deadline and not fulfilled:
            with sqlite3.connect(database, timeout=30) as conn:
                row = conn.execute("SELECT fulfilled_at FROM orders WHERE gid = ?",
                                   (f"gid://shopify/Order/{order_id}",)).fetchone()
            fulfilled = row and row[0]
            time.sleep(0.5)
        assert fulfilled, log.read_text()
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
