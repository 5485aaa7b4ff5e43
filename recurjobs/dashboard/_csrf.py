"""CSRF protection of the action forms: a signed double-submit token.

The first page a browser gets sets a cookie ``recurjobs_csrf`` holding a random nonce
(``HttpOnly``, ``SameSite=Strict``, limited to the dashboard's path). Every action form carries
a hidden field ``csrf_token`` = ``<nonce>.<HMAC-SHA256(secret, nonce)>``. A POST is accepted
only when the field is there, its nonce equals the cookie's and its signature is the app's
(compared in constant time); a cross-site page can neither read the cookie nor forge the
signature, and a cookie planted by a sibling subdomain fails the signature. A POST whose
``Origin`` header names another host, or a plain-http page when the dashboard is served over
https, is refused as well.

The secret is per app: random at ``create_app`` unless given (give the same ``secret_key`` to
every worker process of one dashboard, or tokens issued by one worker fail at another).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["COOKIE", "FIELD", "make_token", "new_nonce", "token_ok"]

COOKIE = "recurjobs_csrf"
FIELD = "csrf_token"


def new_nonce() -> str:
    """A fresh random nonce for the cookie (128 bits, hex)."""
    return secrets.token_hex(16)


def _sign(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, nonce.encode("ascii", "replace"), hashlib.sha256).hexdigest()


def make_token(secret: bytes, nonce: str) -> str:
    """The form token for ``nonce``."""
    return f"{nonce}.{_sign(secret, nonce)}"


def token_ok(secret: bytes, cookie: str | None, token: str | None) -> bool:
    """Whether ``token`` (the form field) is this app's signature of ``cookie``'s nonce."""
    if not cookie or not token:
        return False
    nonce, _, signature = token.partition(".")
    if not hmac.compare_digest(nonce.encode(), cookie.encode()):
        return False
    return hmac.compare_digest(signature.encode(), _sign(secret, nonce).encode())
