"""URL-safe signed tokens (itsdangerous) for links in emails, made by the thousand per send.

itsdangerous tries zlib on every payload and keeps the result when it is shorter. Ours are a few
dozen bytes of JSON, which never get shorter, and setting up zlib cost three times the rest of a
token. These serializers skip the attempt; their tokens are the uncompressed form that every
itsdangerous loader reads, so tokens made before and after read the same.
"""

from __future__ import annotations

from functools import lru_cache

from itsdangerous import Serializer, TimedSerializer, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode


class _Plain(URLSafeSerializer):
    def dump_payload(self, obj) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


class _PlainTimed(URLSafeTimedSerializer):
    def dump_payload(self, obj) -> bytes:
        return base64_encode(TimedSerializer.dump_payload(self, obj))


@lru_cache(maxsize=64)
def url_safe_serializer(secret: str, salt: str, timed: bool = False) -> URLSafeSerializer:
    """The serializer for `salt` (one per purpose), shared: it keeps no state between calls."""
    return (_PlainTimed if timed else _Plain)(secret, salt=salt)
