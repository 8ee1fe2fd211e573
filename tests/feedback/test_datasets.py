"""Dataset exports on SQLite and the real PostgreSQL: formats, validation, redaction, cleaning,
split, versioned output, manifest and card, the CLI and the scheduled Celery task."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import select
from typer.testing import CliRunner

from config.settings import Settings
from feedback.datasets import clean
from feedback.datasets.export import ExportError, export_dataset, list_exports
from feedback.datasets.schemas import SCHEMAS, InvalidExample
from feedback.reviews import save_review
from feedback.schema import InteractionRecord, VoteRecord
from feedback.store import record_interaction, record_vote
from knowledge.answer import Answer, Citation, RetrievedChunk, Turn

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def record(
    answer_id: str,
    question: str,
    *,
    text: str = "Everyone gets 25 days [1].",
    chunk: str = "Everyone gets 25 days.",
    title: str = "Leave",
    url: str = "https://wiki.example/hr/leave.md",
    source: str = "hb",
    context: tuple[str, ...] = (),
    at: datetime = T0,
    extra_chunk: str | None = None,
    access: tuple[str, ...] = ("public",),
    extra_access: tuple[str, ...] = ("public",),
) -> InteractionRecord:
    chunks = [
        RetrievedChunk(
            chunk_id=f"c-{answer_id}",
            doc_id=f"{source}:leave.md",
            source=source,
            path="leave.md",
            title=title,
            url=url,
            text=chunk,
            score=0.8,
            doc_hash="v1",
            n=1,
            access=list(access),
        )
    ]
    if extra_chunk:
        chunks.append(
            RetrievedChunk(
                chunk_id=f"d-{answer_id}",
                doc_id=f"{source}:other.md",
                source=source,
                path="other.md",
                title="Other",
                url=url,
                text=extra_chunk,
                score=0.5,
                doc_hash="v9",
                n=None,
                access=list(extra_access),
            )
        )
    answer = Answer(
        answer_id=answer_id,
        question=question,
        text=text,
        abstained=False,
        model="extractive",
        prompt_version="v1",
        chunks=chunks,
        citations=[
            Citation(
                n=1,
                title=title,
                url=url,
                source=source,
                path="leave.md",
                doc_id=f"{source}:leave.md",
                score=0.8,
            )
        ],
    )
    return InteractionRecord(
        answer=answer,
        correlation_id="c",
        platform="slack",
        user_hash="u_x",
        created_at=at,
        context=[Turn(role="user" if i % 2 == 0 else "assistant", text=t) for i, t in enumerate(context)],
    )


def add(
    db,
    answer_id: str,
    question: str,
    *,
    votes: tuple[str, ...] = (),
    correction: str | None = None,
    status: str | None = None,
    ideal: str | None = None,
    **kw,
) -> None:
    record_interaction(db.sessions, record(answer_id, question, **kw))
    for i, value in enumerate(votes):
        record_vote(
            db.sessions,
            VoteRecord(
                answer_id=answer_id,
                user_hash=f"u{i}",
                platform="slack",
                value=value,
                correction=correction if value == "down" else None,
                created_at=T0 + timedelta(seconds=i),
            ),
        )
    if status:
        action = {"approved": "approve", "edited": "edit", "rejected": "reject"}[status]
        save_review(
            db.sessions, answer_id, action=action, reviewer="rev", expected_version=0, ideal_answer=ideal
        )


def settings_for(tmp_path: Path, **datasets) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", datasets=datasets, feedback={"private_url_patterns": [r"corp\.example"]}
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def every_line(directory: Path) -> dict[str, list[dict]]:
    return {p.name: lines(p) for p in sorted(directory.glob("*.jsonl"))}


def typical(db) -> None:
    add(db, "approved", "How many leave days do I get?", votes=("up",), status="approved")
    add(
        db,
        "edited",
        "What is the per diem in New York?",
        votes=("down", "down"),
        correction="95 USD a day.",
        status="edited",
        ideal="The per diem in New York is 95 USD a day [1].",
        text="75 USD a day [1].",
        chunk="New York: 95 USD a day. Elsewhere: 75 USD.",
        context=("hi", "hello! ask away"),
    )
    add(db, "rejected", "Tell me a joke about deploys", votes=("down",), status="rejected")
    add(db, "voted-up", "Who approves Friday deploys?", votes=("up", "up", "down"))
    add(db, "voted-down", "Where is the VPN guide?", votes=("down",))
    add(db, "tied", "Is split tunnelling allowed?", votes=("up", "down"))
    add(db, "silent", "What is the wifi password?")


def test_every_format_writes_schema_valid_lines_from_the_right_items(db, tmp_path):
    typical(db)
    settings = settings_for(tmp_path, validation_fraction=0)
    results = {f: export_dataset(db.sessions, f, settings) for f in ("sft", "dpo", "kto")}

    sft = every_line(results["sft"].directory)
    assert set(sft) == {"train.jsonl", "validation.jsonl"}
    assert results["sft"].counts["examples"] == 2
    by_answer = {rows["messages"][2]["content"]: rows for rows in sft["train.jsonl"]}
    assert set(by_answer) == {"Everyone gets 25 days [1].", "The per diem in New York is 95 USD a day [1]."}
    edited = by_answer["The per diem in New York is 95 USD a day [1]."]["messages"]
    assert [m["role"] for m in edited] == ["system", "user", "assistant"]
    assert "only the numbered sources" in edited[0]["content"]
    assert '<source id="1">' in edited[1]["content"] and "New York: 95 USD a day." in edited[1]["content"]
    assert "user: hi" in edited[1]["content"] and edited[1]["content"].endswith(
        "Question: What is the per diem in New York?"
    )

    dpo = every_line(results["dpo"].directory)
    assert set(dpo) == {
        "train.trl.jsonl",
        "validation.trl.jsonl",
        "train.openai.jsonl",
        "validation.openai.jsonl",
    }
    [trl] = dpo["train.trl.jsonl"]
    assert trl["chosen"] == [
        {"role": "assistant", "content": "The per diem in New York is 95 USD a day [1]."}
    ]
    assert trl["rejected"] == [{"role": "assistant", "content": "75 USD a day [1]."}]
    [openai] = dpo["train.openai.jsonl"]
    assert openai["input"]["messages"] == trl["prompt"] and openai["input"]["tools"] == []
    assert openai["preferred_output"] == trl["chosen"] and openai["non_preferred_output"] == trl["rejected"]

    kto = every_line(results["kto"].directory)["train.jsonl"]
    labels = {row["prompt"][1]["content"].rsplit("Question: ", 1)[1]: row["label"] for row in kto}
    assert labels == {
        "How many leave days do I get?": True,
        "What is the per diem in New York?": False,  # the original answer was down-voted
        "Who approves Friday deploys?": True,
        "Where is the VPN guide?": False,
    }  # the rejected item, the tie and the silent one are left out
    assert results["kto"].counts["skipped"] == {"no votes": 1, "rejected by a reviewer": 1, "tied votes": 1}

    for fmt, result in results.items():  # every line, checked here independently of the exporter
        for name, rows in every_line(result.directory).items():
            shape = f"dpo-{name.split('.')[1]}" if fmt == "dpo" else fmt
            validator = Draft202012Validator(SCHEMAS[shape])
            for row in rows:
                assert not list(validator.iter_errors(row)), (name, row)


def test_exports_are_versioned_with_a_card_and_a_manifest_that_says_what_is_new(db, tmp_path):
    typical(db)
    settings = settings_for(tmp_path, validation_fraction=0.3, seed=7)
    t1 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    first = export_dataset(db.sessions, "kto", settings, now=t1)
    assert (
        first.directory == settings.datasets.directory(settings.data_dir).resolve() / "kto-20261120T120000Z"
    )
    assert first.changes is None
    card = (first.directory / "dataset_card.md").read_text()
    for expected in (
        "## Counts",
        "**examples written** | **4**",
        "## Split",
        "## Date range",
        "2026-11-02 to 2026-11-02",
        "## Sources",
        "- hb: 4 examples",
        "## Redactions",
        "## Settings",
        "| seed | 7 |",
        "| validation_fraction | 0.3 |",
        "first export of this format",
    ):
        assert expected in card, expected
    assert (
        f"- train: {first.splits['train']}" in card and f"- validation: {first.splits['validation']}" in card
    )

    add(db, "new-1", "How do I request a new laptop?", votes=("up",))
    add(db, "new-2", "How do I report phishing?", votes=("down",))
    record_vote(
        db.sessions,
        VoteRecord(
            answer_id="voted-up",
            user_hash="u9",
            platform="slack",
            value="down",
            created_at=T0 + timedelta(minutes=1),
        ),
    )
    record_vote(
        db.sessions,
        VoteRecord(
            answer_id="voted-up",
            user_hash="u8",
            platform="slack",
            value="down",
            created_at=T0 + timedelta(minutes=2),
        ),
    )
    second = export_dataset(db.sessions, "kto", settings, now=t1)  # same second: a suffix, not an overwrite
    assert second.directory.name == "kto-20261120T120000Z-2"
    assert second.changes["previous"] == "kto-20261120T120000Z"
    assert (second.changes["new"], second.changes["changed"], second.changes["removed"]) == (2, 1, 0)
    assert sorted(second.changes["new_ids"]) == ["new-1", "new-2"] and second.changes["changed_ids"] == [
        "voted-up"
    ]
    card = (second.directory / "dataset_card.md").read_text()
    assert "Compared with `kto-20261120T120000Z`: 2 new, 1 changed, 0 removed" in card
    manifest = json.loads((second.directory / "manifest.json").read_text())
    assert {i["answer_id"] for i in manifest["items"]} == {
        "approved",
        "edited",
        "voted-up",
        "voted-down",
        "new-1",
        "new-2",
    }
    assert all(len(i["sha256"]) == 64 and i["split"] in ("train", "validation") for i in manifest["items"])
    assert [e["name"] for e in list_exports(second.directory.parent)] == [
        second.directory.name,
        first.directory.name,
    ]
    assert not list(second.directory.parent.glob(".*"))  # no partial directories left behind


def test_exact_and_near_duplicate_questions_are_dropped_keeping_the_best(db, tmp_path):
    add(db, "d1", "How many leave days do I get?", votes=("up",), status="approved")
    add(db, "d2", "how many leave days do I get", votes=("up",), status="edited", ideal="25 days a year [1].")
    add(db, "d3", "How many leave days do I get, please?", votes=("up",), status="approved")
    add(db, "other", "What is the per diem in New York?", votes=("up",), status="approved")
    result = export_dataset(db.sessions, "sft", settings_for(tmp_path, validation_fraction=0))
    rows = every_line(result.directory)["train.jsonl"]
    assert sorted(r["messages"][2]["content"] for r in rows) == [
        "25 days a year [1].",
        "Everyone gets 25 days [1].",
    ]
    assert result.counts["duplicates_dropped"] == {"exact": 1, "near": 1}


def test_the_split_is_seeded_stable_across_runs_and_near_duplicates_never_straddle_it(db, tmp_path):
    topics = [
        "vpn setup",
        "leave days",
        "per diem",
        "friday deploys",
        "laptop refresh",
        "phishing report",
        "wifi password",
        "parental leave",
        "expense report",
        "on call rotation",
        "password manager",
        "code review",
        "printer setup",
        "benefits enrollment",
        "remote work",
        "data classification",
    ]
    n = 0
    for t in topics:
        for phrasing in (
            f"How does {t} work?",
            f"How does the {t} work here?",
            f"Where can I read about {t}?",
        ):
            n += 1
            add(db, f"s{n}", phrasing, votes=("up",), status="approved", at=T0 + timedelta(minutes=n))
    settings = settings_for(tmp_path, validation_fraction=0.25, seed=42, group_similarity=0.3)
    first = export_dataset(db.sessions, "sft", settings)
    second = export_dataset(db.sessions, "sft", settings)

    def sides(result) -> dict[str, str]:
        manifest = json.loads((result.directory / "manifest.json").read_text())
        return {i["answer_id"]: i["split"] for i in manifest["items"]}

    assert sides(first) == sides(second)  # stable across runs
    assert set(sides(first).values()) == {"train", "validation"}
    questions = {
        name: [r["messages"][1]["content"].rsplit("Question: ", 1)[1] for r in rows]
        for name, rows in every_line(first.directory).items()
    }
    for q_train in questions["train.jsonl"]:
        for q_val in questions["validation.jsonl"]:
            similarity = clean.jaccard(clean.shingles(q_train), clean.shingles(q_val))
            assert similarity < 0.3, (q_train, q_val)  # grouped: no near-duplicate straddles the split
    other_seed = export_dataset(
        db.sessions, "sft", settings_for(tmp_path, validation_fraction=0.25, seed=43, group_similarity=0.3)
    )
    assert sides(other_seed) != sides(first)  # the seed decides


def test_similar_pairs_finds_exactly_what_brute_force_finds():
    import random

    rng = random.Random(5)
    words = [
        "how",
        "do",
        "i",
        "set",
        "up",
        "the",
        "vpn",
        "leave",
        "days",
        "per",
        "diem",
        "deploy",
        "friday",
        "laptop",
        "wifi",
    ]
    questions = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 8))) for _ in range(150)]
    for threshold in (0.3, 0.5, 0.8):
        fast = clean.similar_pairs(questions, threshold)
        sets = [clean.shingles(q) for q in questions]
        slow = {
            (i, j)
            for i in range(len(questions))
            for j in range(i + 1, len(questions))
            if clean.jaccard(sets[i], sets[j]) >= threshold
        }
        assert set(fast) == slow


def test_since_limits_the_export_to_recent_answers(db, tmp_path):
    add(db, "old", "How many leave days do I get?", votes=("up",), at=T0 - timedelta(days=30))
    add(db, "new", "What is the per diem?", votes=("up",), at=T0)
    result = export_dataset(db.sessions, "kto", settings_for(tmp_path), since=T0 - timedelta(days=1))
    assert result.counts["answers_considered"] == 1 and result.counts["examples"] == 1
    assert "| since | 2026-11-01" in (result.directory / "dataset_card.md").read_text()


def test_an_export_that_fails_validation_leaves_nothing_behind(db, tmp_path, monkeypatch):
    import feedback.datasets.export as export

    typical(db)
    real = export._write_files

    def corrupting(directory, fmt, kept, sides):
        files = real(directory, fmt, kept, sides)
        with files[0].open("a") as fh:
            fh.write('{"messages": []}\n')  # what a broken disk or a bug would leave
        return files

    monkeypatch.setattr(export, "_write_files", corrupting)
    settings = settings_for(tmp_path)
    with pytest.raises(InvalidExample, match="line 3"):
        export_dataset(db.sessions, "sft", settings)
    assert list(settings.datasets.directory(settings.data_dir).iterdir()) == []


def test_an_invalid_example_is_refused_before_anything_is_written(db, tmp_path, monkeypatch):
    import feedback.datasets.export as export
    from feedback.datasets.build import build_examples

    typical(db)

    def broken(fmt, items, **kw):
        examples, skipped = build_examples(fmt, items, **kw)
        examples[0].records["sft"]["messages"][2]["content"] = "   "
        return examples, skipped

    monkeypatch.setattr(export, "build_examples", broken)
    settings = settings_for(tmp_path)
    with pytest.raises(ExportError, match="is not valid"):
        export_dataset(db.sessions, "sft", settings)
    assert not settings.datasets.directory(settings.data_dir).exists()  # not even the directory


def test_restricted_context_is_left_out_unless_asked_for_and_counted_on_the_card_either_way(db, tmp_path):
    add(db, "open", "How many leave days do I get?", votes=("up",), status="approved")
    add(db, "hr", "What is the salary band for L5?", votes=("up",), status="approved", access=("group:hr",))
    add(
        db,
        "mixed",  # the restricted chunk was only context, not cited: still restricted
        "Who approves Friday deploys?",
        votes=("up",),
        status="approved",
        extra_chunk="L5 band: 120-140k.",
        extra_access=("public", "group:hr"),
    )
    add(db, "person", "Where is my review?", votes=("up",), status="approved", access=("web:alice",))
    settings = settings_for(tmp_path, validation_fraction=0)

    default = export_dataset(db.sessions, "sft", settings)
    assert default.counts["examples"] == 1
    assert default.counts["restricted"] == {"left_out": 3, "included": 0}
    written = json.dumps(every_line(default.directory))
    assert "salary band" not in written and "120-140k" not in written and "my review" not in written
    card = (default.directory / "dataset_card.md").read_text()
    assert "| restricted context: left out (not public) | 3 |" in card
    assert "| include_restricted | False |" in card
    manifest = json.loads((default.directory / "manifest.json").read_text())
    assert [i["answer_id"] for i in manifest["items"]] == ["open"]
    assert manifest["settings"]["include_restricted"] is False

    kept = export_dataset(db.sessions, "sft", settings, include_restricted=True)
    assert kept.counts["examples"] == 4
    assert kept.counts["restricted"] == {"left_out": 0, "included": 3}
    card = (kept.directory / "dataset_card.md").read_text()
    assert "| restricted context: included (`--include-restricted`) | 3 |" in card
    assert "120-140k" in json.dumps(every_line(kept.directory))


def test_records_from_before_permissions_count_as_public(db, tmp_path):
    from sqlalchemy import update

    from feedback.datasets.build import is_restricted
    from feedback.models import Interaction

    add(db, "old", "How many leave days do I get?", votes=("up",), status="approved")
    with db.sessions() as s, s.begin():  # a row written before chunks had an access list
        row = s.scalars(select(Interaction).where(Interaction.answer_id == "old")).one()
        chunks = [{k: v for k, v in c.items() if k != "access"} for c in row.chunks]
        s.execute(update(Interaction).where(Interaction.answer_id == "old").values(chunks=chunks))
    with db.sessions() as s:
        assert "access" not in s.scalars(select(Interaction)).one().chunks[0]
    result = export_dataset(db.sessions, "sft", settings_for(tmp_path, validation_fraction=0))
    assert result.counts["examples"] == 1 and result.counts["restricted"]["left_out"] == 0
    assert not is_restricted([{"text": "x"}, {"access": ["public"]}, {"access": None}])
    assert is_restricted([{"access": ["public", "group:hr"]}]) and is_restricted([{"access": ["group:hr"]}])


def test_the_cli_exports_and_reports(db, tmp_path, monkeypatch):
    from bot.cli import app

    typical(db)
    (tmp_path / "lore.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db.url}"\n')
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    out = tmp_path / "exports"
    result = runner.invoke(
        app, ["dataset", "export", "--format", "dpo", "--out", str(out), "--since", "2026-11-01"]
    )
    assert result.exit_code == 0, result.output
    [made] = list(out.iterdir())
    assert made.name.startswith("dpo-") and str(made) in result.stdout
    assert "1 examples (" in result.stderr and "redacted:" in result.stderr
    assert "restricted: 0 left out" in result.stderr
    result = runner.invoke(app, ["dataset", "export", "--format", "sft", "--out", str(out), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["counts"]["examples"] == 2
    add(db, "hr", "What is the L5 salary band?", votes=("up",), status="approved", access=("group:hr",))
    result = runner.invoke(app, ["dataset", "export", "--format", "sft", "--out", str(out)])
    assert result.exit_code == 0
    assert "restricted: 1 left out (--include-restricted keeps them)" in result.stderr
    result = runner.invoke(app, ["dataset", "export", "-f", "sft", "--out", str(out), "--include-restricted"])
    assert result.exit_code == 0 and "restricted: 1 included" in result.stderr
    assert "3 examples (" in result.stderr
    assert runner.invoke(app, ["dataset", "export", "--format", "csv"]).exit_code == 2
    assert runner.invoke(app, ["dataset", "export", "--format", "sft", "--since", "yesterday"]).exit_code == 2


def test_the_scheduled_celery_task_exports_each_configured_format(db, tmp_path):
    from workers.app import make_celery
    from workers.names import QUEUE_OF, TaskName
    from workers.schedule import build_schedule

    typical(db)
    settings = Settings(
        data_dir=tmp_path / "data",
        database={"url": db.url},
        redis={"url": "redis://127.0.0.1:6379/0", "prefix": "lore-datasets-test:"},
        datasets={"export_every": "1d", "formats": ["sft", "kto"]},
    )
    entry = build_schedule(settings)["export-datasets-every-1d"]
    assert entry["task"] == TaskName.EXPORT_DATASETS == "lore.export_datasets"
    assert entry["schedule"] == 86400.0 and entry["kwargs"] == {"formats": ["sft", "kto"]}
    assert entry["options"]["queue"] == QUEUE_OF[TaskName.EXPORT_DATASETS] == "feedback"
    app = make_celery(settings)
    task = app.tasks[TaskName.EXPORT_DATASETS]
    assert task.acks_late and task.soft_time_limit
    summaries = task.apply(kwargs=entry["kwargs"]).get(disable_sync_subtasks=False)
    assert [s["format"] for s in summaries] == ["sft", "kto"]
    assert all(Path(s["directory"]).is_dir() for s in summaries)
    assert "export-datasets-every-1d" not in build_schedule(Settings(data_dir=tmp_path / "x"))
