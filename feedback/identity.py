"""Pseudonymous user ids: a keyed hash, so the log never holds raw platform user ids."""

from __future__ import annotations

import hashlib
import hmac


def pseudonymize(platform: str, user_id: str, key: bytes) -> str:
    digest = hmac.new(key, f"{platform}:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"u_{digest[:32]}"
