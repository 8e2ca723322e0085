"""okapp: review-request email sequences for Shopify shops."""

from __future__ import annotations

from flask import Flask

from okapp.config import PROJECT_ROOT, Config
from okapp.runtime import Runtime, set_current


def create_app(config: Config | None = None, runtime: Runtime | None = None) -> Flask:
    """The app factory: one Flask app bound to one Runtime (database, Redis, settings)."""
    if runtime is None:
        runtime = Runtime(config or Config.from_env())
    config = runtime.config
    set_current(runtime)

    app = Flask(
        __name__,
        instance_path=str(config.instance_path),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(config.as_flask_config())
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.is_production,
        MAX_CONTENT_LENGTH=200 * 1024 * 1024,
    )
    app.extensions["okapp"] = runtime
    if config.trust_proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = config.trust_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from okapp import views

    views.init_app(app)
    return app
