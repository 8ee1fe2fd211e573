"""Console users: who may sign in to the web console, with an argon2id password hash and a role.

`reviewer` curates the review queue; `admin` also reindexes sources and exports datasets.
Passwords are never stored or logged: only the hash (argon2-cffi's PHC string) is kept, and a
sign-in for an unknown user still spends the same hashing time, so timing does not tell which
usernames exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select

from feedback.models import ConsoleUser
from feedback.store import SessionFactory

Role = Literal["reviewer", "admin"]
ROLES: tuple[Role, ...] = ("reviewer", "admin")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8

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
        row.password_hash, row.role, row.active, row.updated_at = hashed, role, True, now
        session.flush()
        return _user(row)


def remove_user(sessions: SessionFactory, username: str) -> bool:
    with sessions() as session, session.begin():
        row = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)).one_or_none()
        if row is None:
            return False
        session.delete(row)
        return True


def list_users(sessions: SessionFactory) -> list[User]:
    with sessions() as session:
        return [_user(r) for r in session.scalars(select(ConsoleUser).order_by(ConsoleUser.username))]


def get_user(sessions: SessionFactory, user_id: int) -> User | None:
    """The user behind a session, if they still exist and are active (checked on every request,
    so removing a user or changing a role takes effect at once)."""
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
