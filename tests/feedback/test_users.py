"""Console users: argon2 hashes, sign-in checks and `lore users …` (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from feedback.models import ConsoleUser
from feedback.users import UserError, add_user, authenticate, get_user, list_users, remove_user


def test_passwords_are_stored_as_argon2id_hashes_and_checked(db):
    user = add_user(db.sessions, "ada", "lovelace-1843", "admin")
    with db.sessions() as s:
        row = s.scalars(select(ConsoleUser)).one()
    assert row.password_hash.startswith("$argon2id$") and "lovelace" not in row.password_hash
    assert authenticate(db.sessions, "ada", "lovelace-1843") == get_user(db.sessions, user.id)
    assert get_user(db.sessions, user.id).last_login_at is not None
    assert authenticate(db.sessions, "ada", "wrong-password") is None
    assert authenticate(db.sessions, "nobody", "lovelace-1843") is None
    assert user.is_admin and [u.username for u in list_users(db.sessions)] == ["ada"]


def test_bad_users_are_refused_and_reset_needs_asking(db):
    add_user(db.sessions, "rex", "staple paper clips", "reviewer")
    with pytest.raises(UserError, match="already exists"):
        add_user(db.sessions, "rex", "another password", "reviewer")
    with pytest.raises(UserError, match="at least 8"):
        add_user(db.sessions, "sam", "short", "reviewer")
    with pytest.raises(UserError, match="role"):
        add_user(db.sessions, "sam", "long enough pw", "owner")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="username"):
        add_user(db.sessions, "bad name!", "long enough pw", "reviewer")
    reset = add_user(db.sessions, "rex", "a brand new one", "admin", replace=True)
    assert reset.role == "admin" and authenticate(db.sessions, "rex", "a brand new one")
    assert authenticate(db.sessions, "rex", "staple paper clips") is None
    assert remove_user(db.sessions, "rex") and not remove_user(db.sessions, "rex")
    assert get_user(db.sessions, reset.id) is None


def test_lore_users_add_list_remove(db, tmp_path, monkeypatch, caplog):
    from bot.cli import app

    (tmp_path / "lore.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db.url}"\n')
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    # From a hidden prompt, asked twice; never echoed.
    result = runner.invoke(
        app, ["users", "add", "ada", "--role", "admin"], input="hopper-and-lovelace\nhopper-and-lovelace\n"
    )
    assert result.exit_code == 0, result.output
    assert "added ada (admin)" in result.output and "hopper-and-lovelace" not in result.output
    # From standard input, for scripts.
    result = runner.invoke(app, ["users", "add", "rex", "--password-stdin"], input="staple paper clips\n")
    assert result.exit_code == 0 and "added rex (reviewer)" in result.output
    assert "staple paper clips" not in result.output
    assert authenticate(db.sessions, "rex", "staple paper clips")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "hopper-and-lovelace" not in logged and "staple paper clips" not in logged

    assert (
        runner.invoke(app, ["users", "add", "rex", "--password-stdin"], input="whatever-long\n").exit_code
        == 1
    )
    assert runner.invoke(app, ["users", "add", "sam", "--password-stdin"], input="short\n").exit_code == 2
    assert (
        runner.invoke(
            app, ["users", "add", "sam", "--role", "owner", "--password-stdin"], input="x" * 9
        ).exit_code
        == 2
    )
    listed = runner.invoke(app, ["users", "list", "--json"])
    assert [(u["username"], u["role"]) for u in json.loads(listed.stdout)] == [
        ("ada", "admin"),
        ("rex", "reviewer"),
    ]
    assert "rex" in runner.invoke(app, ["users", "list"]).output
    assert runner.invoke(app, ["users", "remove", "rex"]).exit_code == 0
    assert runner.invoke(app, ["users", "remove", "rex"]).exit_code == 1
    assert [u.username for u in list_users(db.sessions)] == ["ada"]
