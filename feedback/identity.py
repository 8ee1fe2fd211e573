"""Pseudonymous user ids: a keyed hash, so the log never holds raw platform user ids."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from config.settings import Settings


def pseudonymize(platform: str, user_id: str, key: bytes) -> str:
    digest = hmac.new(key, f"{platform}:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"u_{digest[:32]}"


def load_key(settings: Settings) -> bytes:
    """The pseudonymization key: `feedback.user_hash_key`, else one generated once and kept
    in `data_dir/user_hash.key` (mode 0600). Changing it breaks the link to earlier votes."""
    if settings.feedback.user_hash_key is not None:
        return settings.feedback.user_hash_key.get_secret_value().encode()
    path = settings.data_dir / "user_hash.key"
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.hex())
    try:
        os.link(tmp, path)  # atomic and fails if another process won the race: use theirs
    except FileExistsError:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    finally:
        tmp.unlink()
    return key
