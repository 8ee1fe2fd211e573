"""A whole answer-model run (`workers/generator_tuning.py`) on real parts, hosted path: curated
answers in a real feedback database, the real redacted export, the OpenAI fine-tuning emulator
driven by the real `openai` client, the gate with the real MiniLM checks over a real index,
promotion in the `models` table, a running chat process that follows it, rollback; a candidate
made worse on purpose; a `lore` killed mid-poll that resumes the same job; cancel.

The handbook says everyone gets 25 days of leave. The base model (the emulator's `reply`) answers
vaguely and cites nothing; reviewers edited answers to say it with its citation; the fine-tuned
model (`tuned_reply`) answers as they did.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from feedback import generators
from feedback.db import Database
from feedback.reviews import save_review
from feedback.schema import InteractionRecord
from feedback.store import record_interaction
from knowledge.evaluate import Question
from knowledge.service import Knowledge
from tests.conftest import REPO, wait_for, write
from tests.emulators.openai_ft import FineTuneServer
from workers.generator_tuning import RunCancelled, job_state, tune_generator
from workers.ports import GeneratorRequest

DOCS = {
    "hr/leave.md": "# Leave\n\nEveryone gets 25 days of paid leave a year. Unused days carry over until "
    "March 31. Ask your manager before booking more than two weeks in a row.\n",
    "it/laptops.md": "# Laptops\n\nNew laptops are ordered through the IT portal and arrive within five "
    "working days. Old laptops go back to the IT desk on the second floor.\n",
    "finance/expenses.md": "# Expenses\n\nSubmit receipts within 30 days in the Kestrel tool. Meals are "
    "covered up to 40 euros a day when travelling.\n",
}
QUESTIONS = [
    "How many vacation days do I get?",
    "What is my annual leave allowance?",
    "How much paid time off per year?",
    "Holiday entitlement for employees?",
    "Number of days off each year",
    "Do we get 25 days of leave?",
    "How long is the yearly paid leave?",
    "What's the PTO policy on days?",
    "Paid holidays count per annum",
    "How much leave can staff take annually?",
    "Annual vacation quota please",
    "Days of leave for full-time workers",
    "Leave days granted every year?",
    "What amount of holiday do new hires receive?",
    "Total yearly time off allowance",
    "How many leave days come with the job?",
]
IDEAL = "Everyone gets 25 days of paid leave a year [1]."
BASE_REPLY = "I think it is about 30 days, ask HR."
EVAL = [
    Question(id="e1", question="How many days of paid leave does everyone get a year?",
             sources=["hr/leave.md"], facts=["25 days"], kind="factual"),
    Question(id="e2", question="How much paid leave do employees have per year?",
             sources=["hr/leave.md"], facts=["25 days"], kind="factual"),
]  # fmt: skip
CONTRACT = {
    "run_id", "provider", "format", "examples", "before", "after", "gate", "promoted", "model", "seconds",
}  # fmt: skip
ANSWER_KEYS = {
    "answered", "citations", "citation_validity", "cited_sentences", "citation_support",
    "citation_precision", "citation_recall", "uncited_sentences", "claims", "unsupported_claims",
    "answers_with_unsupported_claims", "fact_hit_rate", "abstain_not_in_corpus", "false_abstain", "ideal",
}  # fmt: skip


def overrides(root: Path, emu: FineTuneServer) -> dict[str, Any]:
    evals = root / "evals.jsonl"
    evals.write_text("".join(q.model_dump_json() + "\n" for q in EVAL), encoding="utf-8")
    return {
        "data_dir": root / "data",
        "sources": [{"name": "handbook", "type": "directory", "path": str(root / "docs")}],
        "llm": emu.settings(),
        "index": {"engine": "qdrant-local"},
        "database": {"url": f"sqlite:///{root / 'feedback.sqlite3'}"},
        "evals": [{"name": "handbook", "path": str(evals)}],
        "tuning": {"poll_seconds": 0.05, "held_out": 0.3},
    }


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    for rel, text in DOCS.items():
        write(tmp_path / "docs", rel, text)
    yield tmp_path


def curate(kn: Knowledge, db: Database) -> None:
    """Each question answered (by the base model) and edited by a reviewer into `IDEAL`."""
    for i, question in enumerate(QUESTIONS):
        answer = kn.answer(question).model_copy(update={"answer_id": f"a{i}"})
        record_interaction(
            db.sessions,
            InteractionRecord(answer=answer, correlation_id="c", platform="slack", user_hash="u_1"),
        )
        save_review(
            db.sessions, f"a{i}", action="edit", reviewer="rex", expected_version=0, ideal_answer=IDEAL
        )


def setup(root: Path, emu: FineTuneServer, embedder: Any) -> tuple[Settings, Knowledge, Database]:
    settings = Settings(**overrides(root, emu))
    kn = Knowledge(settings, embedder=embedder, served=generators.lookup(settings))
    assert kn.sync("handbook").error is None
    db = Database.from_settings(settings)
    db.ensure_schema()
    curate(kn, db)
    return settings, kn, db


def env_for(root: Path, emu: FineTuneServer) -> dict[str, str]:
    empty = root / "empty.toml"
    empty.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update(
        LORE_CONFIG=str(empty), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
    )
    for key, value in overrides(root, emu).items():
        env[f"LORE_{key.upper()}"] = (
            json.dumps(value, default=str) if not isinstance(value, Path) else str(value)
        )
    return env


CHAT = """
import sys
from bot.services import build_services
from config.loader import load_settings
services = build_services(load_settings())
services.knowledge.sync("handbook")  # its own embedded index (one process per data directory)
print("ready", flush=True)
for line in sys.stdin:
    answer = services.knowledge.answer(line.strip())
    print("model", answer.model, flush=True)
"""


async def test_openai_run_exports_trains_passes_the_gate_and_a_running_chat_follows_it(
    root, embedder
) -> None:
    async with FineTuneServer(polls=4, min_examples=4, reply=BASE_REPLY, tuned_reply=IDEAL) as emu:
        settings, kn, db = await asyncio.to_thread(setup, root, emu, embedder)
        # a chat process of its own, sharing only the feedback database (and the model registry)
        chat_env = env_for(root, emu) | {"LORE_DATA_DIR": str(root / "chat-data")}
        chat = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHAT, env=chat_env, cwd=root,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert chat.stdin is not None and chat.stdout is not None
            assert (await asyncio.wait_for(chat.stdout.readline(), 120)).startswith(b"ready")

            async def ask() -> str:
                chat.stdin.write(b"How many days of paid leave does everyone get a year?\n")  # type: ignore[union-attr]
                line = await asyncio.wait_for(chat.stdout.readline(), 60)  # type: ignore[union-attr]
                return line.decode().split()[-1]

            assert await ask() == "openai:gpt-4o-mini-2024-07-18"

            steps: list[str] = []
            request = GeneratorRequest(provider="openai", format="sft", max_minutes=5)
            body = await asyncio.to_thread(
                tune_generator, settings, kn, db.sessions, request, step=steps.append
            )

            assert set(body) == CONTRACT
            assert body["gate"]["passed"], body["gate"]["reasons"]
            (job,) = emu.jobs.values()
            assert body["model"] == job.fine_tuned_model and body["promoted"]
            assert body["examples"]["train"] + body["examples"]["held_out"] == len(QUESTIONS)
            assert body["examples"]["held_out"] >= 2
            assert set(body["before"]) == set(body["after"]) == {"held-out", "handbook"}
            for figures in (*body["before"].values(), *body["after"].values()):
                assert set(figures) == ANSWER_KEYS
            assert body["before"]["handbook"]["fact_hit_rate"] == 0.0
            assert body["after"]["handbook"]["fact_hit_rate"] == 1.0
            assert body["after"]["held-out"]["citation_validity"] == 1.0

            # the upload is the redacted export's train split; the job, its events, the record
            (upload,) = emu.requests_to("POST", "/v1/files")
            assert upload["body"]["filename"] == "train.jsonl"
            assert any(f"job {job.id} [running]" in s for s in steps)
            run = generators.get(db.sessions, body["run_id"])
            assert (run.status, run.job_id, run.model) == ("serving", job.id, body["model"])
            assert run.figures["after"] == body["after"] and run.gate == body["gate"]
            assert job_state(settings, run.id).exists()

            # the running chat process answers with the new model within FOLLOW_SECONDS
            async def follows(model: str) -> bool:
                for _ in range(30):
                    if await ask() == f"openai:{model}":
                        return True
                    await asyncio.sleep(1)
                return False

            assert await follows(body["model"])
            assert emu.chat_models[-1] == body["model"]

            # `lore tune rollback --generator`: back to the configured model, in the chat too
            from typer.testing import CliRunner

            from bot.cli import app

            result = await asyncio.to_thread(
                CliRunner().invoke, app, ["tune", "rollback", "--generator"], env=env_for(root, emu)
            )
            assert result.exit_code == 0, result.output
            assert "configured answer model serves again" in result.output
            assert generators.served_model(db.sessions) is None
            assert await follows("gpt-4o-mini-2024-07-18")
            shown = await asyncio.to_thread(
                CliRunner().invoke, app, ["config", "show"], env=env_for(root, emu)
            )
            assert json.loads(shown.stdout)["serving"]["generator"]["source"] == "configured"
        finally:
            if chat.returncode is None:
                chat.kill()
            await chat.wait()
            kn.close()
            db.dispose()


async def test_a_candidate_that_drops_its_citations_is_refused_and_the_cli_prints_the_contract(
    root, embedder
) -> None:
    """`lore tune generator --json` as a process: the fine-tuned model says the right thing but
    cites nothing, so the gate refuses it and the base model keeps answering."""
    worse = "Everyone gets 25 days of paid leave a year."
    async with FineTuneServer(polls=3, min_examples=4, reply=IDEAL, tuned_reply=worse) as emu:
        _settings, kn, db = await asyncio.to_thread(setup, root, emu, embedder)
        kn.close()  # the `lore` process owns the embedded index from here on
        try:
            lore = str(Path(sys.executable).with_name("lore"))
            proc = await asyncio.create_subprocess_exec(
                lore, "tune", "generator", "--provider", "openai", "--format", "sft", "--json",
                env=env_for(root, emu), cwd=root,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 300)
            assert proc.returncode == 0, err.decode()[-3000:]
            body = json.loads(out)
            assert set(body) == CONTRACT and (body["provider"], body["format"]) == ("openai", "sft")
            assert set(body["examples"]) == {"train", "held_out"} and set(body["gate"]) == {
                "passed",
                "reasons",
            }
            assert not body["gate"]["passed"] and not body["promoted"]
            refused = [r for r in body["gate"]["reasons"] if r.startswith("refused:")]
            assert any("citation validity 0.000" in r for r in refused), refused
            assert body["before"]["held-out"]["citation_validity"] == 1.0
            assert generators.get(db.sessions, body["run_id"]).status == "refused"
            assert generators.served_model(db.sessions) is None
        finally:
            db.dispose()


async def test_a_killed_lore_resumes_watching_the_same_job_and_cancel_stops_it(root, embedder) -> None:
    async with FineTuneServer(polls=400, min_examples=4, reply=BASE_REPLY, tuned_reply=IDEAL) as emu:
        _settings, kn, db = await asyncio.to_thread(setup, root, emu, embedder)
        kn.close()  # the `lore` processes own the embedded index from here on
        env = env_for(root, emu) | {"LORE_TUNING": json.dumps({"poll_seconds": 0.2, "held_out": 0.3})}
        lore = str(Path(sys.executable).with_name("lore"))
        args = ["tune", "generator", "--provider", "openai", "--json"]
        pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE}
        procs: list[asyncio.subprocess.Process] = []
        try:
            first = await asyncio.create_subprocess_exec(
                lore, *args, env=env, cwd=root, start_new_session=True, **pipes
            )
            procs.append(first)
            await wait_for(
                lambda: any(j.status == "running" for j in emu.jobs.values()), 120, "a running job"
            )
            os.killpg(first.pid, signal.SIGKILL)
            await first.wait()
            (job,) = emu.jobs.values()
            [run] = generators.runs(db.sessions)
            assert (run.status, run.job_id) == ("training", job.id)
            polls = job.polls

            second = await asyncio.create_subprocess_exec(
                lore, *args, env=env, cwd=root, start_new_session=True, **pipes
            )
            procs.append(second)
            await wait_for(lambda: job.polls > polls + 2, 120, "the resumed watch")
            assert len(emu.jobs) == 1 and len(emu.requests_to("POST", "/v1/files")) == 1

            from typer.testing import CliRunner

            from bot.cli import app

            result = await asyncio.to_thread(CliRunner().invoke, app, ["tune", "cancel"], env=env)
            assert result.exit_code == 0, result.output
            assert f"fine-tuning job {job.id} of run {run.id}: cancelled" in " ".join(result.output.split())
            _out, err = await asyncio.wait_for(second.communicate(), 60)
            assert second.returncode == 1 and b"cancelled" in err
            assert job.status == "cancelled" and len(emu.jobs) == 1
            assert generators.get(db.sessions, run.id).status == "cancelled"
        finally:
            for p in procs:
                if p.returncode is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    await p.wait()
            db.dispose()


async def test_a_cancel_asked_in_the_database_cancels_the_hosted_job_the_run_watches(root, embedder) -> None:
    async with FineTuneServer(polls=50, min_examples=4) as emu:
        settings, kn, db = await asyncio.to_thread(setup, root, emu, embedder)
        try:

            def step(text: str) -> None:
                if text.startswith("uploading"):
                    generators.request_cancel(db.sessions)

            request = GeneratorRequest(provider="openai", format="sft", max_minutes=5)
            with pytest.raises(RunCancelled):
                await asyncio.to_thread(tune_generator, settings, kn, db.sessions, request, step=step)
            [run] = generators.runs(db.sessions)
            assert run.status == "cancelled" and run.cancel_requested
            (job,) = emu.jobs.values()
            assert job.status == "cancelled"
        finally:
            kn.close()
            db.dispose()


def local_run_setup(
    root: Path, embedder: Any, *, steps: int, questions: int, top_k: int, evals: Path | None = None
) -> tuple[Settings, Knowledge, Database]:
    """The local path's setup: the handbook indexed, and `questions` curated answers (edited to
    IDEAL) over each question's top `top_k` chunks."""
    from knowledge.answer import Answer

    settings = Settings(
        data_dir=root / "data",
        sources=[{"name": "handbook", "type": "directory", "path": str(root / "docs")}],
        llm={"provider": "local", "max_tokens": 32},
        index={"engine": "qdrant-local"},
        database={"url": f"sqlite:///{root / 'feedback.sqlite3'}"},
        evals=[{"name": "handbook", "path": str(evals)}] if evals else [],
        tuning={"held_out": 0.3, "generator_steps": steps},
    )
    kn = Knowledge(settings, embedder=embedder)
    assert kn.sync("handbook").error is None
    db = Database.from_settings(settings)
    db.ensure_schema()
    for i, question in enumerate(QUESTIONS[:questions]):
        answer = Answer(
            answer_id=f"a{i}", question=question, text="…", abstained=False, model="local",
            prompt_version="v1", chunks=kn.search(question, top_k=top_k), citations=[],
        )  # fmt: skip
        record = InteractionRecord(answer=answer, correlation_id="c", platform="slack", user_hash="u_1")
        record_interaction(db.sessions, record)
        save_review(
            db.sessions, f"a{i}", action="edit", reviewer="rex", expected_version=0, ideal_answer=IDEAL
        )
    return settings, kn, db


@pytest.mark.slow
def test_a_local_lora_run_gives_a_merged_gguf_that_llama_cpp_serves_and_is_measured(root, embedder) -> None:
    """The local path on the real SmolLM2: a handful of curated answers, a few LoRA steps on Lore's
    real prompts (one step: a step over four of them takes minutes on a busy 2-core CPU), the merged
    GGUF loaded by llama.cpp for the gate's answers, a verdict recorded."""
    from knowledge.generate import LocalGenerator

    evals = root / "evals.jsonl"
    evals.write_text(EVAL[0].model_dump_json() + "\n", encoding="utf-8")
    settings, kn, db = local_run_setup(root, embedder, steps=1, questions=8, top_k=2, evals=evals)
    try:
        trained: list[tuple[int, int]] = []
        request = GeneratorRequest(provider="local", format="sft", max_minutes=10, promote="never")
        body = tune_generator(
            settings, kn, db.sessions, request, on_train_step=lambda d, t: trained.append((d, t))
        )

        assert set(body) == CONTRACT and body["provider"] == "local" and not body["promoted"]
        assert trained[-1] == (1, 1)
        model = Path(body["model"])
        assert model.name == "model.gguf" and model.is_file()
        assert set(body["after"]) == {"held-out", "handbook"} or set(body["after"]) == {"handbook"}
        for figures in body["after"].values():
            assert set(figures) == ANSWER_KEYS
        run = generators.get(db.sessions, body["run_id"])
        assert run.status in ("candidate", "refused") and run.gate == body["gate"]
        assert run.base.endswith(".gguf") and run.examples == body["examples"]

        served = LocalGenerator(settings.llm.model_copy(update={"local_model_path": str(model)}))
        assert served.name == "local:model" and served.chat(
            [{"role": "user", "content": "How many days of paid leave do I get?"}]
        )
    finally:
        kn.close()
        db.dispose()


async def test_the_run_on_the_train_queue_waits_for_the_tuning_lock_and_reports_its_steps(
    stack, start_worker, embedder
) -> None:
    """`lore.tune_generator` on a real Celery `train` worker: it takes the lock retriever runs take
    (so it waits while one holds it), reports its steps, and returns the CLI's body."""
    from knowledge.tuning.lock import run_lock
    from workers.client import request_tuning

    async with FineTuneServer(polls=3, min_examples=4, reply=BASE_REPLY, tuned_reply=IDEAL) as emu:
        for rel, text in DOCS.items():
            write(stack.tmp / "docs", rel, text)
        over = overrides(stack.tmp, emu)
        stack.overrides.update({k: (str(v) if isinstance(v, Path) else v) for k, v in over.items()})
        stack.overrides.pop("data_dir")  # the stack's own
        settings = stack.settings()
        kn = Knowledge(settings, embedder=embedder)
        assert kn.sync("handbook").error is None
        db = Database.from_settings(settings)
        db.ensure_schema()
        await asyncio.to_thread(curate, kn, db)
        kn.close()  # the worker owns the embedded index from here on
        await asyncio.to_thread(start_worker, "train")

        steps: list[str] = []
        request = GeneratorRequest(provider="openai", format="sft", max_minutes=5, requested_by="test")
        with run_lock(settings):  # a retriever run in progress
            queued = asyncio.create_task(
                asyncio.to_thread(request_tuning, settings, request, on_step=steps.append, poll=0.2)
            )
            await asyncio.sleep(8)
            assert emu.jobs == {} and not queued.done()
        body = await asyncio.wait_for(queued, 300)
        assert set(body) == CONTRACT and body["promoted"] and body["gate"]["passed"]
        assert any(s.startswith("exporting the curated answers") for s in steps), steps
        run = generators.get(db.sessions, body["run_id"])
        assert (run.status, run.requested_by) == ("serving", "test")

        # --no-wait: back as soon as the run has started; the worker finishes it
        started = await asyncio.to_thread(request_tuning, settings, request, wait=False, poll=0.2)
        assert set(started) == {"task_id", "step"}
        await wait_for(lambda: len(generators.runs(db.sessions)) == 2, 60, "the second run")
        await wait_for(
            lambda: generators.runs(db.sessions)[0].status not in ("training", "candidate"),
            300,
            "its verdict",
        )
        # the same model again gains nothing over itself: refused, the first keeps serving
        assert generators.runs(db.sessions)[0].status == "refused"
        assert generators.served_model(db.sessions).model == body["model"]  # type: ignore[union-attr]
        db.dispose()


@pytest.mark.slow
def test_a_cancelled_local_run_stops_at_its_next_training_step(root, embedder) -> None:
    settings, kn, db = local_run_setup(root, embedder, steps=50, questions=6, top_k=1)
    try:

        def step(text: str) -> None:
            if text.startswith("training a LoRA"):
                generators.request_cancel(db.sessions)  # `lore tune cancel`, as the run starts

        trained: list[int] = []
        request = GeneratorRequest(provider="local", format="sft", max_minutes=10)
        with pytest.raises(RunCancelled, match="at step 1"):
            tune_generator(
                settings, kn, db.sessions, request, step=step, on_train_step=lambda d, _t: trained.append(d)
            )
        assert trained == [1]
        [run] = generators.runs(db.sessions)
        assert run.status == "cancelled" and run.model is None
    finally:
        kn.close()
        db.dispose()


def test_curated_answers_to_eval_questions_are_never_trained_on(tmp_path: Path) -> None:
    from knowledge.answer import RetrievedChunk
    from knowledge.prompt import chat_messages
    from workers.generator_tuning import _leak_free

    evals = tmp_path / "evals.jsonl"
    evals.write_text("".join(q.model_dump_json() + "\n" for q in EVAL), encoding="utf-8")
    settings = Settings(data_dir=tmp_path, evals=[{"name": "handbook", "path": str(evals)}])
    chunk = RetrievedChunk(
        chunk_id="c", doc_id="d", source="hb", path="hr/leave.md", title="Leave", url="", text="25 days.",
        score=0.9, doc_hash="h", n=1,
    )  # fmt: skip
    asked = ["HOW many days of paid leave does everyone get a year??", QUESTIONS[0]]
    lines = [
        {"messages": [*chat_messages(q, [chunk], []), {"role": "assistant", "content": IDEAL}]} for q in asked
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")

    kept, dropped = _leak_free(settings, train)
    assert dropped == 1 and kept.name == "train.leak-free.jsonl"
    [line] = [json.loads(x) for x in kept.read_text().splitlines()]
    assert line["messages"][1]["content"].endswith(QUESTIONS[0])
    assert _leak_free(Settings(data_dir=tmp_path), train) == (train, 0)
