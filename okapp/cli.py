"""The `okapp` command: database, processes, the demo and diagnostics."""

from __future__ import annotations

import os
import sys

import click

from okapp.config import PROJECT_ROOT, Config, ConfigError


def _runtime():
    from okapp.runtime import Runtime, set_current

    try:
        runtime = Runtime.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    set_current(runtime)
    return runtime


@click.group()
def main():
    """okapp: review-request email sequences for Shopify shops."""


@main.group()
def db():
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision):
    """Apply the Alembic migrations to DATABASE_URL."""
    from okapp import migrate

    runtime = _runtime()
    migrate.upgrade(runtime.engine, revision)
    click.echo(f"database at {runtime.engine.url.render_as_string()} is at {revision}")


@db.command("check")
def db_check():
    """Fail when the models and the migrated schema differ."""
    from okapp import migrate

    diff = migrate.drift(_runtime().engine)
    if diff:
        for item in diff:
            click.echo(repr(item), err=True)
        raise click.ClickException("models and migrations differ; write a migration")
    click.echo("no drift")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def web(host, port, workers):
    """Serve the app with gunicorn."""
    _runtime()  # fail early with a clear message on a bad configuration
    os.chdir(PROJECT_ROOT)
    args = [sys.executable, "-m", "gunicorn", "app:app", "--bind", f"{host}:{port}",
            "--workers", str(workers), "--threads", "4", "--access-logfile", "-"]
    os.execv(sys.executable, args)


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.argument("queue_names", nargs=-1)
def worker(burst, queue_names):
    """Run an RQ worker on the webhooks, sends and default queues."""
    from okapp.jobs.worker import run_worker

    runtime = _runtime()
    run_worker(runtime, list(queue_names) or None, burst=burst)


@main.command()
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600))
@click.option("--once", is_flag=True, help="Run a single tick and exit.")
def scheduler(interval, once):
    """Run the scheduler loop: one tick(now) every INTERVAL seconds. Safe to run twice."""
    from okapp.jobs.scheduler import run_forever, run_once

    runtime = _runtime()
    if once:
        click.echo(run_once(runtime))
        return
    run_forever(runtime, interval)


@main.command()
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
def demo(port, host):
    """Start web, worker and scheduler on embedded defaults with a seeded demo shop."""
    from okapp.demo import run_demo

    if Config.from_env().is_production:
        raise click.ClickException("the demo does not run with OKAPP_ENV=production")
    run_demo(host=host, port=port)


@main.command("shopify-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=click.IntRange(1, 65535))
@click.option("--app-url", default=None, help="Where webhooks go [default: APP_URL].")
@click.option("--shop", "shops", multiple=True, help="Generate this shop (subdomain) at start.")
@click.option("--orders", default=120, show_default=True, type=click.IntRange(0, 100000))
@click.option("--products", default=12, show_default=True, type=click.IntRange(1, 1000))
@click.option("--access-ttl", default=3600, show_default=True, type=click.IntRange(1),
              help="Seconds an access token lives.")
@click.option("--restore-rate", default=100.0, show_default=True, type=click.FloatRange(1))
def shopify_sim(host, port, app_url, shops, orders, products, access_ttl, restore_rate):
    """Run the Shopify simulator (OAuth, token exchange, Admin GraphQL, signed webhooks)."""
    from okapp.shopify.simulator import Simulator

    config = Config.from_env()
    sim = Simulator(config.shopify_api_key, config.shopify_api_secret,
                    app_url=app_url or config.app_url, access_ttl=access_ttl,
                    restore_rate=restore_rate)
    for sub in shops:
        sim.generate(sub.removesuffix(".myshopify.com"), orders=orders, products=products)
    click.echo(f"Shopify simulator on http://{host}:{port}; set "
               f"SHOPIFY_ADMIN_BASE_URL=http://{host}:{port}/{{shop}}", err=True)
    sim.serve_forever(host, port)


@main.command()
@click.argument("shop_domain")
@click.argument("order_name")
def explain(shop_domain, order_name):
    """Print the journey of one order: recruited or why not, each step, what is due next."""
    from sqlalchemy import select

    from okapp.models import Shop
    from okapp.sequences.explain import explain as explain_order
    from okapp.sequences.explain import find_order

    runtime = _runtime()
    with runtime.session_scope() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == shop_domain.strip().lower()))
        if shop is None:
            raise click.ClickException(f"no shop {shop_domain!r}")
        order = find_order(session, shop, order_name)
        if order is None:
            raise click.ClickException(f"no order {order_name!r} in {shop.domain}")
        for line in explain_order(session, order).lines():
            click.echo(line)


if __name__ == "__main__":
    main()
