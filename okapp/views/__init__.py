"""The HTTP layer: one blueprint per area, thin views over the engine's plain functions."""

from __future__ import annotations

import json

from flask import Flask, Response, current_app, g, render_template, request
from sqlalchemy.orm import Session

from okapp.runtime import Runtime


def runtime() -> Runtime:
    return current_app.extensions["okapp"]


def db() -> Session:
    """The request's database session, closed when the request ends."""
    if "db" not in g:
        g.db = runtime().sessions()
    return g.db


def is_htmx() -> bool:
    return bool(request.headers.get("HX-Request")) and not request.headers.get(
        "HX-History-Restore-Request"
    )


def render(page: str, fragment: str | None = None, **context):
    """A full page, or only the fragment an htmx request asked for (DESIGN §10)."""
    template = fragment if fragment and is_htmx() else page
    return render_template(template, **context)


def with_toast(response, message: str, status: int = 200) -> Response:
    """The response plus a toast the page shows (static/ui.js listens for the `toast` event)."""
    if not isinstance(response, Response):
        response = Response(response, status=status)
    response.headers["HX-Trigger"] = json.dumps({"toast": message})
    return response


def _close_db(_exc=None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def _vary_on_htmx(response):
    response.vary.add("HX-Request")
    return response


def init_app(app: Flask) -> None:
    from okapp.views import auth, formatting, health, nav, orders, sequences

    app.teardown_appcontext(_close_db)
    app.after_request(_vary_on_htmx)
    app.context_processor(nav.inject_nav)
    app.jinja_env.filters.update(formatting.FILTERS)
    app.jinja_env.globals.update(formatting.GLOBALS)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    if not app.config["OKAPP"].is_production:
        app.register_blueprint(auth.dev_bp)
    app.register_blueprint(sequences.bp)
    app.register_blueprint(orders.bp)
    from okapp.views import reviews

    app.register_blueprint(reviews.bp)
    from okapp.views import emails, settings, tracking

    app.register_blueprint(tracking.bp)
    app.register_blueprint(emails.bp)
    app.register_blueprint(settings.bp)
    from okapp.views import shopify_auth, webhooks

    app.register_blueprint(shopify_auth.bp)
    app.wsgi_app = webhooks.WebhookIntake(app.wsgi_app, app.extensions["okapp"])
