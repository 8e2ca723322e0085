"""The app factory, configuration rules and the development login."""

from __future__ import annotations

import pytest

from okapp import create_app
from okapp.config import DEFAULT_SECRET, Config, ConfigError
from okapp.runtime import Runtime
from okapp.views.auth import dev_login_url


def test_production_refuses_default_or_missing_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("OKAPP_ENV", "production")
    monkeypatch.setenv("OKAPP_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/okapp")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("SHOPIFY_API_SECRET", "real-secret")
    for secret in (None, DEFAULT_SECRET, "short"):
        if secret is None:
            monkeypatch.delenv("SECRET_KEY", raising=False)
        else:
            monkeypatch.setenv("SECRET_KEY", secret)
        with pytest.raises(ConfigError, match="SECRET_KEY"):
            Config.from_env()
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    assert Config.from_env().is_production


def test_admin_base_url_must_name_the_shop():
    with pytest.raises(ConfigError, match="{shop}"):
        Config(shopify_admin_base_url="https://example.com").validate()


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"ok": True}


def test_sequences_page_needs_a_merchant(client):
    assert client.get("/sequences").status_code == 401


def test_dev_login_link_opens_the_sequences_page(app, client, shop):
    with app.test_request_context():
        url = dev_login_url("", shop.domain)
    response = client.get(url)
    assert response.status_code == 200
    assert shop.name in response.get_data(as_text=True)
    # The login sticks for the next request.
    assert client.get("/sequences").status_code == 200


def test_forged_dev_login_is_refused(client, shop):
    assert client.get("/sequences?dev_login=forged.token").status_code == 403


def test_no_dev_login_in_production(config, shop):
    config.env = "production"
    app = create_app(runtime=Runtime(config))
    client = app.test_client()
    with app.test_request_context():
        from itsdangerous import URLSafeSerializer

        token = URLSafeSerializer(config.secret_key, salt="okapp-dev-login").dumps(
            {"shop": shop.domain})
    assert client.get(f"/dev/login?shop={shop.domain}").status_code == 404
    assert client.get(f"/sequences?dev_login={token}").status_code == 401


def test_htmx_responses_vary_on_hx_request(merchant):
    assert "HX-Request" in merchant.get("/sequences").headers["Vary"]


def test_numeric_settings_are_validated(monkeypatch):
    monkeypatch.setenv("OKAPP_SEND_RETRY_INTERVALS", "30,soon")
    with pytest.raises(ConfigError, match="OKAPP_SEND_RETRY_INTERVALS"):
        Config.from_env()
    monkeypatch.setenv("OKAPP_SEND_RETRY_INTERVALS", "5,10")
    monkeypatch.setenv("OKAPP_REPAIR_AFTER_SECONDS", "0")
    with pytest.raises(ConfigError, match="at least 1"):
        Config.from_env()
    monkeypatch.setenv("OKAPP_REPAIR_AFTER_SECONDS", "45")
    config = Config.from_env()
    assert (config.send_retry_intervals, config.repair_after_seconds) == ((5, 10), 45)


def test_proxy_headers_trusted_only_when_configured(config):
    config.trust_proxy_hops = 1
    app = create_app(runtime=Runtime(config))

    @app.get("/_addr")
    def addr():
        from flask import request

        return request.remote_addr

    headers = {"X-Forwarded-For": "203.0.113.9"}
    assert app.test_client().get("/_addr", headers=headers).text == "203.0.113.9"
    config.trust_proxy_hops = 0
    plain = create_app(runtime=Runtime(config))
    plain.add_url_rule("/_addr", view_func=addr)
    assert plain.test_client().get("/_addr", headers=headers).text == "127.0.0.1"
