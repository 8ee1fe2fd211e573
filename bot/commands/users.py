"""`lore users add|list|remove`: who may sign in to the web console.

The password comes from a hidden prompt (asked twice) or, for scripts, from standard input with
`--password-stdin`; it is never echoed, logged or accepted as an argument (which would leave it
in the shell history and the process list).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from bot.commands._common import err, error, out, settings_of

users_app = typer.Typer(no_args_is_help=True, help="Console users: reviewers and admins.")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _database(ctx: typer.Context) -> Any:
    from feedback.db import Database

    db = Database.from_settings(settings_of(ctx))
    db.ensure_schema()
    return db


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
    db = _database(ctx)
    try:
        user = add_user(db.sessions, username, password, role, replace=reset)  # type: ignore[arg-type]
    except UserError as exc:
        error(exc)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    err.print(f"{'updated' if reset else 'added'} {user.username} ({user.role})", highlight=False)


@users_app.command("list")
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every console user with their role and last sign-in."""
    from feedback.users import list_users

    db = _database(ctx)
    try:
        users = list_users(db.sessions)
    finally:
        db.dispose()
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
    """Remove a console user (their sessions stop working at once)."""
    from feedback.users import remove_user

    db = _database(ctx)
    try:
        removed = remove_user(db.sessions, username)
    finally:
        db.dispose()
    if not removed:
        error(f"no user {username!r}")
        raise typer.Exit(1)
    err.print(f"removed {username}", highlight=False)
