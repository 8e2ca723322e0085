"""Encryption of secrets at rest (Shopify access and refresh tokens).

The key is derived from `SECRET_KEY` (or `TOKEN_ENCRYPTION_KEY` when set, so the two can rotate
separately). `configure()` is called by every process entry point before the database is used.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

_fernet: Fernet | None = None


class TokenKeyMissing(RuntimeError):
    pass


def configure(secret: str) -> None:
    global _fernet
    digest = hashlib.sha256(("okapp-token-key:" + secret).encode()).digest()
    _fernet = Fernet(base64.urlsafe_b64encode(digest))


def _key() -> Fernet:
    if _fernet is None:
        raise TokenKeyMissing("okapp.crypto.configure(secret) was not called before using tokens")
    return _fernet


def encrypt(value: str) -> str:
    return _key().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    try:
        return _key().decrypt(value.encode()).decode()
    except InvalidToken as exc:
        raise TokenKeyMissing(
            "a stored token cannot be decrypted with the current key; was SECRET_KEY changed?"
        ) from exc
