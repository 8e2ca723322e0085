"""Signed, expiring links to an order's review page (no login for customers).

A token names the shop and the order; it cannot be altered without the app's secret, and it
expires (default 180 days) so old emails stop working after a while.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from okapp.signed import url_safe_serializer

SALT = "okapp-review-link"
MAX_AGE_SECONDS = 180 * 24 * 3600


class InvalidReviewToken(Exception):
    """The link was altered, is for nothing we know, or has expired (`expired` says which)."""

    def __init__(self, message: str, expired: bool = False):
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class ReviewLink:
    shop_id: int
    order_id: int


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return url_safe_serializer(secret, SALT, timed=True)


def make_token(secret: str, shop_id: int, order_id: int) -> str:
    return _serializer(secret).dumps({"s": shop_id, "o": order_id})


def read_token(secret: str, token: str, max_age: int = MAX_AGE_SECONDS) -> ReviewLink:
    try:
        data = _serializer(secret).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise InvalidReviewToken("This review link has expired.", expired=True) from exc
    except BadSignature as exc:
        raise InvalidReviewToken("This review link is not valid.") from exc
    try:
        return ReviewLink(shop_id=int(data["s"]), order_id=int(data["o"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidReviewToken("This review link is not valid.") from exc


def review_url(app_url: str, secret: str, shop_id: int, order_id: int,
               product_id: int | None = None, rating: int | None = None) -> str:
    """The review page of an order; with a product and rating, that star is preselected."""
    params: dict[str, int] = {}
    if product_id is not None:
        params["product"] = product_id
    if rating is not None:
        params["rating"] = rating
    query = f"?{urlencode(params)}" if params else ""
    return f"{app_url}/r/{make_token(secret, shop_id, order_id)}{query}"
