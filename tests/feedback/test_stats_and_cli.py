"""`lore feedback stats`, `lore db …` and the pseudonymization key."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from feedback.db import Database
from feedback.identity import load_key, pseudonymize
from feedback.stats import feedback_stats
from feedback.store import record_interaction, record_vote
from tests.feedback.test_store import interaction, vote


def _fill(db) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    for i, q in enumerate(["How many leave days?", "Where is the VPN guide?", "What is the per diem?"]):
        rec = interaction(f"a{i}", q)
        rec.created_at = now - timedelta(days=i)
        record_interaction(db.sessions, rec)
    for u in range(3):  # a0: three downs, one of them later changed to up
        record_vote(
            db.sessions,
            vote("down", answer="a0", user=f"u{u}", reason="outdated").model_copy(update={"created_at": now}),
        )
    record_vote(
        db.sessions,
        vote("up", answer="a0", user="u2").model_copy(update={"created_at": now + timedelta(seconds=1)}),
    )
    record_vote(
        db.sessions,
        vote("down", answer="a1", user="u0", reason="wrong").model_copy(update={"created_at": now}),
    )
    record_vote(db.sessions, vote("up", answer="a2", user="u0").model_copy(update={"created_at": now}))


def test_stats_count_by_day_platform_and_vote_and_rank_down_voted_questions(db):
    _fill(db)
    stats = feedback_stats(db.sessions, days=30)
    assert stats["totals"] == {"answers": 3, "silent": 0, "votes": 5, "up": 2, "down": 3}
    assert [(q["question"], q["down"], q["up"]) for q in stats["most_downvoted"]] == [
        ("How many leave days?", 2, 1),
        ("Where is the VPN guide?", 1, 0),
    ]
    assert stats["down_reasons"] == {"outdated": 2, "wrong": 1}
    today = datetime.now(UTC).date().isoformat()
    (row,) = [r for r in stats["by_day"] if r["day"] == today]
    assert (row["platform"], row["answers"], row["up"], row["down"]) == ("slack", 1, 2, 3)
    assert sum(r["answers"] for r in stats["by_day"]) == 3


def test_the_cli_shows_stats_and_migrations(tmp_path, monkeypatch):
    from bot.cli import app

    (tmp_path / "lore.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LORE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade"])
    head = Database(f"sqlite:///{tmp_path / 'data' / 'feedback.sqlite3'}").head()
    assert result.exit_code == 0 and f"at {head}" in result.output, result.output
    db = Database(f"sqlite:///{tmp_path / 'data' / 'feedback.sqlite3'}")
    _fill(db)
    result = runner.invoke(app, ["feedback", "stats", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["most_downvoted"][0]["question"] == "How many leave days?"
    result = runner.invoke(app, ["feedback", "stats"])
    assert "Most down-voted questions" in result.output and "How many leave days?" in result.output
    assert f"current: {head}" in runner.invoke(app, ["db", "current"]).output
    assert runner.invoke(app, ["db", "downgrade", "base"]).exit_code == 0
    assert db.current() is None


def test_the_user_key_is_generated_once_private_and_stable(make_settings):
    settings = make_settings()
    key = load_key(settings)
    path = settings.data_dir / "user_hash.key"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(settings) == key
    a, b = pseudonymize("slack", "U123", key), pseudonymize("slack", "U123", load_key(settings))
    assert a == b and "U123" not in a
    assert load_key(make_settings(feedback={"user_hash_key": "configured"})) == b"configured"
