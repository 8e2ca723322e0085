"""Authenticating merchant requests with Shopify ID (session) tokens.

Document loads carry `id_token` in the query; htmx requests carry `Authorization: Bearer`.
"""

from __future__ import annotations

from flask import Response, request

from okapp.models import Shop


def shop_from_request() -> Shop | None:
    """The shop of a verified ID token on this request, or None when there is no token."""
    return None


def unauthenticated_response():
    if request.headers.get("HX-Request"):
        return Response("Your session has ended; reload the app.", status=401)
    return Response(
        "Open okapp from your Shopify admin (Apps → okapp) to sign in.",
        status=401,
        mimetype="text/plain",
    )
