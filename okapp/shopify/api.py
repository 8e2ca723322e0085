"""The app's Shopify credentials and the one HTTP client every Shopify call goes through.

Shopify's `shopify_app` library always addresses `https://{shop}.myshopify.com`. It accepts an
injected `httpx.Client`, so ours carries a transport that sends those requests to
`SHOPIFY_ADMIN_BASE_URL` instead: the real Shopify in production, the simulator in tests and the
demo, with no other code knowing the difference.
"""

from __future__ import annotations

import re
import threading

import httpx
from shopify_app import ShopifyApp

from okapp.config import Config

DEFAULT_ADMIN_BASE_URL = "https://{shop}.myshopify.com"
SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]\.myshopify\.com$")
HTTP_TIMEOUT = httpx.Timeout(20.0, connect=5.0)

_clients: dict[str, httpx.Client] = {}
_clients_lock = threading.Lock()


def valid_shop_domain(value: str | None) -> str | None:
    """`Foo.myshopify.com` -> `foo.myshopify.com`; None for anything that is not a shop domain."""
    domain = (value or "").strip().lower()
    return domain if SHOP_DOMAIN.match(domain) else None


def subdomain(domain: str) -> str:
    """`foo.myshopify.com` -> `foo`, the form `shopify_app` takes."""
    return domain.removesuffix(".myshopify.com")


def domain_of(shop: str) -> str:
    return shop if shop.endswith(".myshopify.com") else f"{shop}.myshopify.com"


def shopify_app(config: Config) -> ShopifyApp:
    return ShopifyApp(client_id=config.shopify_api_key, client_secret=config.shopify_api_secret)


def admin_url(config: Config, domain: str, path: str) -> str:
    """Where `path` of a shop's admin lives (`/admin/oauth/authorize`, ...)."""
    return config.shopify_admin_base_url.format(shop=subdomain(domain)) + path


class AdminBaseTransport(httpx.BaseTransport):
    """Rewrites `https://{shop}.myshopify.com/<path>` to `<SHOPIFY_ADMIN_BASE_URL>/<path>`."""

    def __init__(self, base_template: str, inner: httpx.BaseTransport | None = None):
        self.base_template = base_template
        self.inner = inner or httpx.HTTPTransport(retries=1)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host.endswith(".myshopify.com") and self.base_template != DEFAULT_ADMIN_BASE_URL:
            base = httpx.URL(self.base_template.format(shop=host.removesuffix(".myshopify.com")))
            request.url = base.copy_with(
                path=base.path.rstrip("/") + request.url.path, query=request.url.query or None
            )
            request.headers["Host"] = request.url.netloc.decode()
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def http_client(config: Config) -> httpx.Client:
    """One pooled, thread-safe client per admin base URL, with explicit timeouts."""
    key = config.shopify_admin_base_url
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = httpx.Client(transport=AdminBaseTransport(key), timeout=HTTP_TIMEOUT)
            _clients[key] = client
        return client
