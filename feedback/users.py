"""Console users: who may sign in to the web console, with an argon2id password hash and a role.

`reviewer` curates the review queue; `admin` also reindexes sources and exports datasets.
Passwords are never stored or logged: only the hash (argon2-cffi's PHC string) is kept, and a
sign-in for an unknown user still spends the same hashing time, so timing does not tell which
usernames exist.

Sessions are server-side rows (`console_sessions`): a sign-in creates one and hands back a random
token for the cookie; only its SHA-256 is stored, so the table cannot be replayed as cookies.
A session is good while its row is not revoked, younger than the session lifetime, and its user
exists and is active. Signing out revokes that row; resetting a password or role, removing a user,
or `lore users sessions revoke` ends every row of that user, so a copied cookie stops working.
User ids are never reused (see migration 0003), and the token names the session, not the user.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update

from feedback.models import ConsoleSession, ConsoleUser
from feedback.store import SessionFactory

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Role = Literal["reviewer", "admin"]
ROLES: tuple[Role, ...] = ("reviewer", "admin")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
TOUCH_EVERY = timedelta(seconds=60)  # how stale `last_seen_at` may get (saves a write per request)

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("not a real password, for constant-time misses")


class UserError(ValueError):
    """A user could not be created or changed; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime
    last_login_at: datetime | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _user(row: ConsoleUser) -> User:
    role: Role = "admin" if row.role == "admin" else "reviewer"
    return User(row.id, row.username, role, row.active, row.created_at, row.last_login_at)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")


def add_user(
    sessions: SessionFactory, username: str, password: str, role: Role, *, replace: bool = False
) -> User:
    """Create a user (or, with `replace`, reset an existing one's password and role)."""
    if not USERNAME.match(username):
        raise UserError(
            "a username is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    if role not in ROLES:
        raise UserError(f"the role must be one of {', '.join(ROLES)}")
    check_password(password)
    now = datetime.now(UTC)
    hashed = _hasher.hash(password)
    with sessions() as session, session.begin():
        row = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)).one_or_none()
        if row is not None and not replace:
            raise UserError(f"user {username!r} already exists (use --reset to change the password or role)")
        if row is None:
            row = ConsoleUser(username=username, created_at=now, last_login_at=None)
            session.add(row)
        else:  # a reset (what an admin does after a compromise): no old session survives it
            _revoke_all(session, row.id, "password reset", now)
        row.password_hash, row.role, row.active, row.updated_at = hashed, role, True, now
        session.flush()
        return _user(row)


def remove_user(sessions: SessionFactory, username: str) -> bool:
    with sessions() as session, session.begin():
        row = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)).one_or_none()
        if row is None:
            return False
        session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == row.id))
        session.delete(row)
        return True


def list_users(sessions: SessionFactory) -> list[User]:
    with sessions() as session:
        return [_user(r) for r in session.scalars(select(ConsoleUser).order_by(ConsoleUser.username))]


def get_user(sessions: SessionFactory, user_id: int) -> User | None:
    """The user with this id, if they still exist and are active."""
    with sessions() as session:
        row = session.get(ConsoleUser, user_id)
        return _user(row) if row is not None and row.active else None


def authenticate(sessions: SessionFactory, username: str, password: str) -> User | None:
    """The user if the password is right, else None (same work either way)."""
    with sessions() as session:
        row = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)).one_or_none()
        stored = row.password_hash if row is not None and row.active else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or not row.active:
        return None
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        fresh = session.get(ConsoleUser, row.id)
        if fresh is None:
            return None
        if _hasher.check_needs_rehash(fresh.password_hash):  # parameters got stronger since
            fresh.password_hash = _hasher.hash(password)
        fresh.last_login_at = now
        session.flush()
        return _user(fresh)


# ---- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionInfo:
    """One sign-in, as `lore users sessions list` shows it (`id` is a prefix of the stored hash)."""

    id: str
    created_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None

    def active(self, lifetime: timedelta, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return self.revoked_at is None and now - self.created_at < lifetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _revoke_all(session: Session, user_id: int, reason: str, now: datetime) -> int:
    result = session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def start_session(sessions: SessionFactory, user: User, *, lifetime: timedelta) -> str:
    """A new session for `user`: returns the token for the cookie (stored only as its hash).
    Rows older than `lifetime` can never be good again and are dropped here."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        session.execute(delete(ConsoleSession).where(ConsoleSession.created_at < now - lifetime))
        session.add(ConsoleSession(id=_digest(token), user_id=user.id, created_at=now, last_seen_at=now))
    return token


def user_of_session(sessions: SessionFactory, token: str, *, lifetime: timedelta) -> User | None:
    """The user a session token signs in, or None: unknown, revoked, older than `lifetime`, or its
    user removed or deactivated (checked on every request, so each takes effect at once)."""
    now = datetime.now(UTC)
    with sessions() as session:
        found = session.execute(
            select(ConsoleSession, ConsoleUser)
            .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
            .where(ConsoleSession.id == _digest(token))
        ).one_or_none()
        if found is None:
            return None
        row, user = found
        if row.revoked_at is not None or now - row.created_at >= lifetime or not user.active:
            return None
        stale = now - row.last_seen_at >= TOUCH_EVERY
        signed_in = _user(user)
    if stale:
        with sessions() as session, session.begin():
            session.execute(
                update(ConsoleSession).where(ConsoleSession.id == row.id).values(last_seen_at=now)
            )
    return signed_in


def end_session(sessions: SessionFactory, token: str, reason: str = "signed out") -> bool:
    """Revoke one session (signing out): its cookie, and any copy of it, stops working."""
    with sessions() as session, session.begin():
        result = session.execute(
            update(ConsoleSession)
            .where(ConsoleSession.id == _digest(token), ConsoleSession.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC), revoked_reason=reason)
        )
        return bool(getattr(result, "rowcount", 0))


def revoke_sessions(sessions: SessionFactory, username: str, reason: str = "revoked") -> int:
    """End every session of `username`; the number ended. Raises UserError for an unknown user."""
    with sessions() as session, session.begin():
        row = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)).one_or_none()
        if row is None:
            raise UserError(f"no user {username!r}")
        return _revoke_all(session, row.id, reason, datetime.now(UTC))


def list_sessions(sessions: SessionFactory, username: str) -> list[SessionInfo]:
    """Every kept session of `username`, newest first. Raises UserError for an unknown user."""
    with sessions() as session:
        row = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)).one_or_none()
        if row is None:
            raise UserError(f"no user {username!r}")
        rows = session.scalars(
            select(ConsoleSession)
            .where(ConsoleSession.user_id == row.id)
            .order_by(ConsoleSession.created_at.desc())
        )
        return [
            SessionInfo(r.id[:12], r.created_at, r.last_seen_at, r.revoked_at, r.revoked_reason) for r in rows
        ]
