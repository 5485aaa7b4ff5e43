"""Hiding secrets in database URLs shown to people, without importing SQLAlchemy.

``mask_query`` hides the values of query parameters that carry a password (``?password=``,
``sslpassword``, ``passwd``, ``pwd``); ``sql._urls.masked`` and the command line's URL texts
both use it, besides hiding the password of the user info.
"""

from __future__ import annotations

import re

__all__ = ["SECRET_PARAM", "mask_query"]

SECRET_PARAM = re.compile(r"(?i)([?&](?:[^=&]*pass(?:word|wd)[^=&]*|pwd)=)[^&]*")
MASK = "***"


def mask_query(text: str) -> str:
    """``text`` with the value of every password-carrying query parameter as ``***``."""
    return SECRET_PARAM.sub(rf"\g<1>{MASK}", text)
