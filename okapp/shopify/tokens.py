"""Offline access tokens: install by token exchange, store encrypted, refresh before expiry.

Shopify's offline tokens expire after an hour and come with a refresh token that rotates on every
use, so two workers refreshing at once would race: refreshes are serialised per shop by a Redis
lock, and the rotated pair is written in one UPDATE. A dead refresh token (`invalid_grant`) marks
the shop `needs_reauth`, which pauses its sends until the merchant opens the app again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from shopify_app import TokenExchangeAccessToken
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from okapp.db import utcnow
from okapp.models import Shop
from okapp.runtime import Runtime
from okapp.shopify import api

log = logging.getLogger(__name__)

# Refresh this long before the access token expires, so no call goes out with a dying token.
REFRESH_MARGIN = timedelta(minutes=5)
LOCK_TIMEOUT = 30  # seconds a refresh may hold the per-shop lock


class ShopifyError(RuntimeError):
    """Shopify refused or failed a call; the message says which and why (never a secret)."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code  # shopify_app's log code, e.g. invalid_subject_token, network_error


class ReauthRequired(ShopifyError):
    """The shop's refresh token is dead or the app is not installed: the merchant must reopen it."""


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def token_values(token: TokenExchangeAccessToken) -> dict:
    """The Shop columns a freshly issued token pair sets."""
    return {
        "access_token": token.token,
        "access_token_expires_at": parse_iso(token.expires),
        "refresh_token": token.refresh_token,
        "refresh_token_expires_at": parse_iso(token.refresh_token_expires),
        "scopes": token.scope or "",
        "needs_reauth": False,
    }


def install(session: Session, domain: str, token: TokenExchangeAccessToken, now: datetime) -> Shop:
    """Record a (re)installation: the shop row with its new token pair, installed from `now`."""
    shop = session.scalar(select(Shop).where(Shop.domain == domain))
    if shop is None:
        shop = Shop(domain=domain)
        session.add(shop)
    for key, value in token_values(token).items():
        setattr(shop, key, value)
    if not shop.is_installed:
        shop.installed_at = now
    shop.uninstalled_at = None
    session.flush()
    return shop


def exchange_id_token(runtime: Runtime, id_token) -> TokenExchangeAccessToken:
    """Token exchange: a verified ID token for an expiring offline token pair."""
    config = runtime.config
    result = api.shopify_app(config).exchange_using_token_exchange(
        "offline", id_token=id_token, expiring=True, http_client=api.http_client(config)
    )
    if not result.ok or result.access_token is None:
        raise ShopifyError(f"token exchange failed: {result.log.code}", result.log.code)
    return result.access_token


def _is_fresh(shop: Shop, now: datetime) -> bool:
    if not shop.access_token:
        return False
    expires = shop.access_token_expires_at
    return expires is None or expires - REFRESH_MARGIN > now


def _load(runtime: Runtime, shop_id: int) -> Shop:
    with runtime.session_scope() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise ReauthRequired(f"shop {shop_id} does not exist")
        session.expunge(shop)
    if not shop.is_installed:
        raise ReauthRequired(f"{shop.domain} has uninstalled the app")
    if shop.needs_reauth or not shop.access_token:
        raise ReauthRequired(f"{shop.domain} must open the app again to renew its access")
    return shop


def access_token(runtime: Runtime, shop_id: int, rejected: str | None = None,
                 now: datetime | None = None) -> str:
    """A usable access token for the shop, refreshed when it is about to expire.

    `rejected` is a token Shopify just answered 401 to: it is refreshed even if it looks fresh,
    unless another worker has already replaced it.
    """
    shop = _load(runtime, shop_id)
    if rejected is None and _is_fresh(shop, now or utcnow()):
        return shop.access_token
    lock = runtime.redis.lock(f"okapp:shopify-token:{shop_id}", timeout=LOCK_TIMEOUT,
                              blocking_timeout=LOCK_TIMEOUT)
    if not lock.acquire():
        raise ShopifyError(f"timed out waiting for another token refresh of shop {shop_id}")
    try:
        # Whoever held the lock before us may have refreshed already: use their token.
        shop = _load(runtime, shop_id)
        if shop.access_token != rejected and _is_fresh(shop, now or utcnow()):
            return shop.access_token
        return _refresh(runtime, shop)
    finally:
        try:
            lock.release()
        except Exception:  # the lock expired while refreshing; the rotated pair is stored anyway
            log.warning("token lock for shop %s expired before release", shop_id)


def _refresh(runtime: Runtime, shop: Shop) -> str:
    config = runtime.config
    if not shop.refresh_token:
        _mark_needs_reauth(runtime, shop.id)
        raise ReauthRequired(f"{shop.domain} has a non-expiring token and no refresh token")
    # `expires: None` makes the library refresh now: the decision to refresh is ours (above).
    result = api.shopify_app(config).refresh_token_exchanged_access_token(
        {
            "shop": api.subdomain(shop.domain),
            "refresh_token": shop.refresh_token,
            "expires": None,
            "refresh_token_expires": _iso(shop.refresh_token_expires_at),
            "access_mode": "offline",
        },
        http_client=api.http_client(config),
    )
    if result.ok and result.access_token is not None:
        with runtime.session_scope() as session:
            session.execute(
                update(Shop).where(Shop.id == shop.id).values(**token_values(result.access_token))
            )
        log.info("refreshed the access token of %s", shop.domain)
        return result.access_token.token
    if result.log.code in ("invalid_grant", "refresh_token_expired"):
        _mark_needs_reauth(runtime, shop.id)
        raise ReauthRequired(f"{shop.domain}: refresh token rejected ({result.log.code})")
    raise ShopifyError(f"token refresh for {shop.domain} failed: {result.log.code}")


def _mark_needs_reauth(runtime: Runtime, shop_id: int) -> None:
    with runtime.session_scope() as session:
        session.execute(update(Shop).where(Shop.id == shop_id).values(needs_reauth=True))
