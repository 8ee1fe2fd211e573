"""The answer models' registry (`feedback/generators.py`) on SQLite and the real PostgreSQL:
one serving row at most, promotion only past the gate, rollback to the previous model or the
configured one, cancel requests, and the lookup every answering process follows."""

from __future__ import annotations

import pytest

from feedback import generators
from feedback.generators import PromotionRefused
from knowledge.generate import ServedModel


def candidate(db, model: str, *, passed: bool = True, provider: str = "openai") -> str:
    run = generators.start_run(db.sessions, provider=provider, method="sft", base="gpt-4o-mini-2024-07-18")
    status = "candidate" if passed else "refused"
    generators.save(
        db.sessions, run.id, model=model, status=status, gate={"passed": passed, "reasons": ["r"]}
    )
    return run.id


def test_promote_serves_one_model_and_rollback_walks_back_to_the_configured_one(db) -> None:
    assert generators.served_model(db.sessions) is None
    first = candidate(db, "ft:one")
    second = candidate(db, "ft:two")

    generators.promote(db.sessions, first)
    assert generators.served_model(db.sessions) == ServedModel(first, "openai", "ft:one")
    promoted = generators.promote(db.sessions, second)
    assert promoted.replaced == first
    assert generators.served_model(db.sessions) == ServedModel(second, "openai", "ft:two")
    statuses = {r.id: r.status for r in generators.runs(db.sessions)}
    assert statuses == {first: "retired", second: "serving"}

    back = generators.rollback(db.sessions)
    assert back is not None and back.id == first
    assert generators.served_model(db.sessions) == ServedModel(first, "openai", "ft:one")
    assert generators.rollback(db.sessions) is None  # first replaced nothing: the configured model
    assert generators.served_model(db.sessions) is None
    with pytest.raises(PromotionRefused, match="nothing to roll back"):
        generators.rollback(db.sessions)


def test_a_refused_or_unfinished_run_is_never_promoted_unless_forced(db) -> None:
    refused = candidate(db, "ft:worse", passed=False)
    with pytest.raises(PromotionRefused, match="did not pass the gate"):
        generators.promote(db.sessions, refused)
    training = generators.start_run(db.sessions, provider="local", method="sft", base="/b.gguf")
    with pytest.raises(PromotionRefused, match="no model to serve"):
        generators.promote(db.sessions, training.id, force=True)
    assert generators.served_model(db.sessions) is None
    generators.promote(db.sessions, refused, force=True)  # an admin's explicit choice
    assert generators.served_model(db.sessions) == ServedModel(refused, "openai", "ft:worse")


def test_cancel_marks_the_run_in_training_and_interrupted_runs_are_closed(db) -> None:
    assert generators.request_cancel(db.sessions) is None
    run = generators.start_run(db.sessions, provider="local", method="sft", base="/b.gguf")
    hosted = generators.start_run(db.sessions, provider="openai", method="sft", base="gpt-4o-mini")
    asked = generators.request_cancel(db.sessions, run.id)
    assert asked is not None and asked.id == run.id
    assert generators.cancel_requested(db.sessions, run.id)
    assert not generators.cancel_requested(db.sessions, hosted.id)

    closed = generators.close_interrupted(db.sessions, keep=lambda r: r.provider == "openai")
    assert closed == [run.id]
    assert generators.get(db.sessions, run.id).status == "failed"
    assert [r.id for r in generators.unfinished(db.sessions, "openai")] == [hosted.id]


def test_the_lookup_reads_the_configured_database(tmp_path) -> None:
    from config.settings import Settings
    from feedback.db import Database

    settings = Settings(data_dir=tmp_path, llm={"provider": "openai", "base_url": "http://127.0.0.1:9/v1"})
    assert generators.active(settings)["source"] == "configured"  # no database yet
    ask = generators.lookup(settings)
    assert ask() is None and not (tmp_path / "feedback.sqlite3").exists()  # asking creates nothing
    db = Database.from_settings(settings)
    db.upgrade("0006")  # not migrated to the models table yet: nothing was promoted
    assert ask() is None
    db.ensure_schema()
    assert ask() is None
    generators.promote(db.sessions, candidate(db, "ft:three"))
    assert ask() is not None and ask().model == "ft:three"  # type: ignore[union-attr]
    shown = generators.active(settings)
    assert (shown["source"], shown["model"], shown["provider"]) == ("promoted", "ft:three", "openai")
    local = Settings(data_dir=tmp_path, llm={"provider": "extractive"})
    assert generators.active(local)["source"] == "configured" and "note" in generators.active(local)
    db.dispose()


def test_the_cli_promotes_lists_rolls_back_and_cancels_answer_models(tmp_path) -> None:
    import json
    from typing import Any

    from typer.testing import CliRunner

    from bot.cli import app
    from config.settings import Settings
    from feedback.db import Database

    empty = tmp_path / "empty.toml"
    empty.touch()
    env = {
        "LORE_CONFIG": str(empty),
        "LORE_DATA_DIR": str(tmp_path),
        "LORE_LLM": json.dumps({"provider": "openai", "base_url": "http://127.0.0.1:9/v1"}),
    }
    db = Database.from_settings(Settings(data_dir=tmp_path))
    db.ensure_schema()
    refused = candidate(db, "ft:worse", passed=False)
    good = candidate(db, "ft:better")

    def lore(*args: str) -> Any:
        return CliRunner().invoke(app, list(args), env=env)

    no = lore("tune", "promote", refused)
    assert no.exit_code == 1 and "did not pass the gate" in no.output
    yes = lore("tune", "promote", good)
    assert yes.exit_code == 0 and "ft:better" in yes.output
    status = json.loads(lore("tune", "status", "--json").stdout)
    assert status["generator"]["serving"]["model"] == "ft:better"
    assert [r["id"] for r in status["generator"]["runs"]] == [good, refused]
    shown = json.loads(lore("config", "show").stdout)
    assert shown["serving"]["generator"] == {
        "source": "promoted", "provider": "openai", "model": "ft:better", "run": good,
    }  # fmt: skip
    assert lore("tune", "cancel").exit_code == 1
    back = lore("tune", "rollback", "--generator")
    assert back.exit_code == 0 and "configured answer model" in back.output
    assert generators.served_model(db.sessions) is None
    db.dispose()
