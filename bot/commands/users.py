"""`lore users add|list|remove` and `lore users sessions list|revoke`: who may sign in to the web
console, and who is signed in.

The password comes from a hidden prompt (asked twice) or, for scripts, from standard input with
`--password-stdin`; it is never echoed, logged or accepted as an argument (which would leave it
in the shell history and the process list).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from bot.commands._common import err, error, out, settings_of

T = TypeVar("T")
users_app = typer.Typer(no_args_is_help=True, help="Console users: reviewers and admins.")
sessions_app = typer.Typer(no_args_is_help=True, help="A user's console sessions (sign-ins).")
users_app.add_typer(sessions_app, name="sessions")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _on_database(ctx: typer.Context, action: Callable[[Any], T]) -> T:
    """`action(sessions)` on the feedback database (migrated first); a `UserError` is printed and
    exits 1."""
    from feedback.db import Database
    from feedback.users import UserError

    db = Database.from_settings(settings_of(ctx))
    try:
        db.ensure_schema()
        return action(db.sessions)
    except UserError as exc:
        error(exc)
        raise typer.Exit(1) from None
    finally:
        db.dispose()


@users_app.command("add")
def add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The sign-in name.")],
    role: Annotated[
        str, typer.Option(help="reviewer (the review queue) or admin (also sources and exports).")
    ] = ("reviewer"),
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (first line).")
    ] = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Change an existing user's password and role.")
    ] = False,
) -> None:
    """Create a console user (argon2-hashed password). Prompts for the password unless --password-stdin."""
    from feedback.users import ROLES, UserError, add_user, check_password

    if role not in ROLES:
        error(f"--role must be one of {', '.join(ROLES)}")
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password(password)
    except UserError as exc:
        error(exc)
        raise typer.Exit(2) from None
    user = _on_database(
        ctx,
        lambda sessions: add_user(sessions, username, password, role, replace=reset),  # type: ignore[arg-type]
    )
    if reset:
        err.print(f"updated {user.username} ({user.role}); their sessions have ended", highlight=False)
    else:
        err.print(f"added {user.username} ({user.role})", highlight=False)


@users_app.command("list")
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every console user with their role and last sign-in."""
    from feedback.users import list_users

    users = _on_database(ctx, list_users)
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "username": u.username,
                        "role": u.role,
                        "active": u.active,
                        "created_at": u.created_at.isoformat(),
                        "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
                    }
                    for u in users
                ]
            )
        )
        return
    if not users:
        err.print("No console users yet. Add one: lore users add NAME --role admin")
        return
    table = Table("username", "role", "created", "last sign-in")
    for u in users:
        last = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
        table.add_row(u.username, u.role, u.created_at.strftime("%Y-%m-%d"), last)
    out.print(table)


@users_app.command("remove")
def remove(ctx: typer.Context, username: Annotated[str, typer.Argument()]) -> None:
    """Remove a console user (their sessions end at once)."""
    from feedback.users import remove_user

    removed = _on_database(ctx, lambda sessions: remove_user(sessions, username))
    if not removed:
        error(f"no user {username!r}")
        raise typer.Exit(1)
    err.print(f"removed {username}", highlight=False)


@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A user's sessions: when each started and was last seen, and whether it still works."""
    from datetime import timedelta

    from feedback.users import list_sessions

    settings = settings_of(ctx)
    lifetime = timedelta(hours=settings.web.session_hours)
    found = _on_database(ctx, lambda sessions: list_sessions(sessions, username))

    def state(s: Any) -> str:
        if s.revoked_at is not None:
            return f"ended ({s.revoked_reason or 'revoked'})"
        return "active" if s.active(lifetime) else "expired"

    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "id": s.id,
                        "created_at": s.created_at.isoformat(),
                        "last_seen_at": s.last_seen_at.isoformat(),
                        "state": state(s),
                    }
                    for s in found
                ]
            )
        )
        return
    if not found:
        err.print(f"{username} has no sessions.", highlight=False)
        return
    table = Table("session", "started", "last seen", "state")
    for s in found:
        table.add_row(
            s.id, s.created_at.strftime("%Y-%m-%d %H:%M"), s.last_seen_at.strftime("%Y-%m-%d %H:%M"), state(s)
        )
    out.print(table)


@sessions_app.command("revoke")
def sessions_revoke(ctx: typer.Context, username: Annotated[str, typer.Argument()]) -> None:
    """End every session of a user now (their browsers must sign in again)."""
    from feedback.users import revoke_sessions

    ended = _on_database(ctx, lambda sessions: revoke_sessions(sessions, username))
    err.print(f"ended {ended} session{'s' if ended != 1 else ''} of {username}", highlight=False)
