"""Secrets out of anything saved, exported or shown: a server URL's `user:pass@` and `?api_key=`-like
query values are dropped. The full URL (credentials included) lives only in memory, for the request.

The one place for it, low enough that settings, conversations, bench files and messages all use it."""

from __future__ import annotations

import re
from typing import Any

# Query keys whose value is a credential (matched case-insensitively, as a whole key).
SECRET_KEYS = ("api_key", "apikey", "api-key", "key", "token", "access_token", "auth", "password",
               "passwd", "secret", "sig", "signature")
MASK = "REDACTED"

# scheme://userinfo@ -> scheme:// ; userinfo is anything up to the first @ before the host part ends.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:" + "|".join(re.escape(k) for k in SECRET_KEYS) + r")=)[^&#\s]*")


def redact_text(text: str) -> str:
    """`text` with every URL's credentials removed (the rest of the text unchanged)."""
    if "://" not in text and "=" not in text:
        return text  # the common case: nothing to look at
    return _QUERY_SECRET.sub(r"\1" + MASK, _USERINFO.sub(r"\1", text))


def redact(obj: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples, strings) with `redact_text` applied to every
    string in it, keys included; other values are returned as they are."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {redact(k): redact(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact(v) for v in obj)
    return obj
