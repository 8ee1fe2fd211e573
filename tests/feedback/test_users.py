"""Console users: argon2 hashes, sign-in checks and `lore users …` (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from feedback.models import ConsoleSession, ConsoleUser
from feedback.users import (
    UserError,
    add_user,
    authenticate,
    end_session,
    get_user,
    list_sessions,
    list_users,
    remove_user,
    revoke_sessions,
    start_session,
    user_of_session,
)

DAY = timedelta(hours=24)


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


def test_user_ids_are_never_reused_so_nothing_of_a_removed_user_names_the_next(db):
    add_user(db.sessions, "ada", "lovelace-1843", "reviewer")
    mallory = add_user(db.sessions, "mallory", "mallory-pass", "reviewer")  # the highest id
    token = start_session(db.sessions, mallory, lifetime=DAY)
    assert user_of_session(db.sessions, token, lifetime=DAY) == mallory
    assert remove_user(db.sessions, "mallory")
    nina = add_user(db.sessions, "nina", "nina-password", "admin")
    assert nina.id > mallory.id  # SQLite without AUTOINCREMENT gave nina mallory's id
    assert get_user(db.sessions, mallory.id) is None
    assert user_of_session(db.sessions, token, lifetime=DAY) is None
    with db.sessions() as s:  # removing a user removes their sessions
        assert s.scalars(select(ConsoleSession)).all() == []


def test_sessions_are_kept_hashed_and_end_on_sign_out(db):
    rex = add_user(db.sessions, "rex", "staple paper clips", "reviewer")
    first = start_session(db.sessions, rex, lifetime=DAY)
    second = start_session(db.sessions, rex, lifetime=DAY)
    assert first != second and len(first) >= 43  # 32 random bytes
    with db.sessions() as s:
        stored = [row.id for row in s.scalars(select(ConsoleSession))]
    assert len(stored) == 2 and first not in stored and second not in stored  # only hashes
    assert end_session(db.sessions, first) and not end_session(db.sessions, first)
    assert user_of_session(db.sessions, first, lifetime=DAY) is None
    assert user_of_session(db.sessions, second, lifetime=DAY) == rex  # the other sign-in goes on
    assert user_of_session(db.sessions, "made-up-token", lifetime=DAY) is None
    [ended, going] = sorted(list_sessions(db.sessions, "rex"), key=lambda i: i.revoked_at is None)
    assert ended.revoked_reason == "signed out" and not ended.active(DAY)
    assert going.revoked_at is None and going.active(DAY)


def test_a_password_or_role_reset_and_a_revoke_end_every_session_of_that_user_only(db):
    rex = add_user(db.sessions, "rex", "staple paper clips", "reviewer")
    ada = add_user(db.sessions, "ada", "lovelace-1843", "admin")
    rex_tokens = [start_session(db.sessions, rex, lifetime=DAY) for _ in range(2)]
    ada_token = start_session(db.sessions, ada, lifetime=DAY)
    add_user(db.sessions, "rex", "staple paper clips", "admin", replace=True)  # same password, new role
    assert [user_of_session(db.sessions, t, lifetime=DAY) for t in rex_tokens] == [None, None]
    assert {i.revoked_reason for i in list_sessions(db.sessions, "rex")} == {"password reset"}
    assert user_of_session(db.sessions, ada_token, lifetime=DAY) == ada

    again = start_session(db.sessions, get_user(db.sessions, rex.id), lifetime=DAY)
    assert user_of_session(db.sessions, again, lifetime=DAY).role == "admin"
    assert revoke_sessions(db.sessions, "rex") == 1 and revoke_sessions(db.sessions, "rex") == 0
    assert user_of_session(db.sessions, again, lifetime=DAY) is None
    assert user_of_session(db.sessions, ada_token, lifetime=DAY) == ada
    with pytest.raises(UserError, match="no user"):
        revoke_sessions(db.sessions, "nobody")


def test_sessions_expire_after_their_lifetime_and_are_dropped_later(db):
    rex = add_user(db.sessions, "rex", "staple paper clips", "reviewer")
    old = start_session(db.sessions, rex, lifetime=DAY)
    with db.sessions() as s, s.begin():  # as if it started 25 hours ago
        row = s.scalars(select(ConsoleSession)).one()
        row.created_at = row.last_seen_at = datetime.now(UTC) - timedelta(hours=25)
    assert user_of_session(db.sessions, old, lifetime=DAY) is None
    assert not list_sessions(db.sessions, "rex")[0].active(DAY)
    fresh = start_session(db.sessions, rex, lifetime=DAY)  # a sign-in sweeps rows that can't be good
    assert [i.active(DAY) for i in list_sessions(db.sessions, "rex")] == [True]
    assert user_of_session(db.sessions, fresh, lifetime=DAY) == rex


def test_lore_users_sessions_list_and_revoke(db, tmp_path, monkeypatch):
    from bot.cli import app

    (tmp_path / "lore.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db.url}"\n')
    monkeypatch.chdir(tmp_path)
    rex = add_user(db.sessions, "rex", "staple paper clips", "reviewer")
    tokens = [start_session(db.sessions, rex, lifetime=DAY) for _ in range(2)]
    end_session(db.sessions, tokens[0])
    runner = CliRunner()
    listed = runner.invoke(app, ["users", "sessions", "list", "rex", "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted(s["state"] for s in json.loads(listed.stdout)) == ["active", "ended (signed out)"]
    assert "active" in runner.invoke(app, ["users", "sessions", "list", "rex"]).output
    revoked = runner.invoke(app, ["users", "sessions", "revoke", "rex"])
    assert revoked.exit_code == 0 and "ended 1 session of rex" in revoked.output
    assert user_of_session(db.sessions, tokens[1], lifetime=DAY) is None
    listed = runner.invoke(app, ["users", "sessions", "list", "rex", "--json"])
    assert sorted(s["state"] for s in json.loads(listed.stdout)) == ["ended (revoked)", "ended (signed out)"]
    assert runner.invoke(app, ["users", "sessions", "revoke", "nobody"]).exit_code == 1
    assert runner.invoke(app, ["users", "sessions", "list", "nobody"]).exit_code == 1
