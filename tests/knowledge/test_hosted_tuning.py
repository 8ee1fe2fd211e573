"""The hosted fine-tuning path against the OpenAI fine-tuning emulator, with the real `openai` client.

Upload, job, events, candidate, then Lore's own OpenAI generator answering with the candidate;
failure, cancel, a 429 the SDK absorbs, a process killed mid-poll that resumes the same job, and
an emulator that refuses malformed requests (so passing tests mean the shapes are right).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from config.settings import Settings
from knowledge.answer import RetrievedChunk
from knowledge.generate import OpenAIGenerator
from knowledge.tuning import hosted
from tests.emulators.openai_ft import FineTuneServer

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "Answer only from the numbered context and cite it as [n]."


def sft_file(directory: Path, n: int = 12) -> Path:
    path = directory / "train.jsonl"
    lines = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {
                    "role": "user",
                    "content": f"[1] Leave rule {i}: 25 days.\n\nQuestion: how much leave? ({i})",
                },
                {"role": "assistant", "content": "Everyone gets 25 days of paid leave a year [1]."},
            ]
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def dpo_file(directory: Path, n: int = 12) -> Path:
    path = directory / "train.openai.jsonl"
    lines = [
        {
            "input": {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"[1] Leave: 25 days.\n\nQuestion: leave? ({i})"},
                ],
                "tools": [],
                "parallel_tool_calls": False,
            },
            "preferred_output": [{"role": "assistant", "content": "25 days a year [1]."}],
            "non_preferred_output": [{"role": "assistant", "content": "About 30 days, probably."}],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def llm(emu: FineTuneServer, **overrides: Any) -> Any:
    return Settings(llm=emu.settings(**overrides)).llm


async def run(emu: FineTuneServer, path: Path, state: Path, **kw: Any) -> tuple[str, list[hosted.Progress]]:
    seen: list[hosted.Progress] = []
    fmt = kw.pop("fmt", "sft")
    model = await asyncio.to_thread(
        hosted.fine_tune,
        llm(emu),
        path,
        fmt=fmt,
        state_path=state,
        progress=seen.append,
        poll_interval=0.01,
        **kw,
    )
    return model, seen


async def test_sft_job_gives_a_candidate_that_answers_through_lores_generator(tmp_path: Path) -> None:
    async with FineTuneServer(polls=5) as emu:
        state = tmp_path / "jobs" / "run1.json"
        model, seen = await run(emu, sft_file(tmp_path), state, hyperparameters={"n_epochs": 2})

        # one upload for fine-tune, one job with the supervised method and Lore's tag
        (upload,) = emu.requests_to("POST", "/v1/files")
        assert upload["body"] == {
            "purpose": "fine-tune",
            "filename": "train.jsonl",
            "bytes": upload["body"]["bytes"],
        }
        (create,) = emu.requests_to("POST", "/v1/fine_tuning/jobs")
        body = create["body"]
        assert body["model"] == "gpt-4o-mini-2024-07-18"
        assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
        assert (body["seed"], body["suffix"]) == (0, "lore")
        assert body["metadata"]["lore_run"].startswith("run1-")
        (job,) = emu.jobs.values()
        assert model == job.fine_tuned_model and model.startswith("ft:gpt-4o-mini-2024-07-18:")

        # every event reached the callback once, oldest first, with the metrics' data
        events = [p.message for p in seen if p.kind == "event"]
        assert events == [e["message"] for e in job.events]
        assert [p.status for p in seen if p.kind == "status"] == ["queued", "running", "succeeded"]
        metrics = [p.data for p in seen if p.data]
        assert [m["step"] for m in metrics] == [1, 2] and all("train_loss" in m for m in metrics)

        recorded = hosted.load_state(state)
        assert recorded is not None
        assert (recorded.job_id, recorded.status, recorded.fine_tuned_model) == (job.id, "succeeded", model)
        assert hosted.unfinished(state.parent) == []

        # asking again returns the recorded candidate without a second job
        again, _ = await run(emu, sft_file(tmp_path), state)
        assert again == model and len(emu.jobs) == 1

        gen = OpenAIGenerator(llm(emu, model=model))
        chunk = RetrievedChunk(
            chunk_id="c1",
            doc_id="d1",
            source="hb",
            path="leave.md",
            title="Leave",
            url="",
            text="Everyone gets 25 days of paid leave a year.",
            score=0.9,
            doc_hash="h",
        )
        answer = await asyncio.to_thread(gen.generate, "How much leave do I get?", [chunk], [])
        assert answer == emu.reply and emu.chat_models == [model]


async def test_dpo_pairs_go_as_a_dpo_job(tmp_path: Path) -> None:
    async with FineTuneServer(polls=3) as emu:
        model, _ = await run(
            emu, dpo_file(tmp_path), tmp_path / "dpo.json", fmt="dpo", hyperparameters={"beta": 0.1}
        )
        (create,) = emu.requests_to("POST", "/v1/fine_tuning/jobs")
        assert create["body"]["method"] == {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}
        assert model.startswith("ft:")


async def test_a_file_of_the_wrong_shape_is_refused_before_upload(tmp_path: Path) -> None:
    async with FineTuneServer() as emu:
        with pytest.raises(hosted.HostedTuningError, match=r"train\.openai\.jsonl"):
            await run(emu, sft_file(tmp_path), tmp_path / "s.json", fmt="dpo")
        assert emu.files == {} and emu.jobs == {}


async def test_a_failed_job_raises_its_message_and_stays_failed(tmp_path: Path) -> None:
    async with FineTuneServer(polls=4, fail_with=("server_error", "The GPU caught fire at step 2")) as emu:
        state = tmp_path / "fail.json"
        with pytest.raises(hosted.JobFailed, match="GPU caught fire") as failed:
            await run(emu, sft_file(tmp_path), state)
        assert (failed.value.status, failed.value.code) == ("failed", "server_error")
        recorded = hosted.load_state(state)
        assert recorded is not None and recorded.status == "failed"
        # the run is over: a second call re-raises, it does not pay for another job
        with pytest.raises(hosted.JobFailed, match="GPU caught fire") as again:
            await run(emu, sft_file(tmp_path), state)
        assert again.value.code == "server_error"
        assert len(emu.jobs) == 1


async def test_too_few_examples_fail_in_the_providers_validation(tmp_path: Path) -> None:
    async with FineTuneServer() as emu:
        with pytest.raises(hosted.JobFailed, match="at least 10 examples") as failed:
            await run(emu, sft_file(tmp_path, n=3), tmp_path / "few.json")
        assert failed.value.code == "invalid_training_file"


async def test_cancel_during_watch_ends_it_with_cancelled(tmp_path: Path) -> None:
    async with FineTuneServer(polls=50) as emu:
        other = hosted.client_for(llm(emu))  # another process: `lore tune cancel`
        statuses: list[str] = []

        def progress(p: hosted.Progress) -> None:
            if p.kind == "status":
                statuses.append(p.status)
            if p.status == "running" and p.kind == "status":
                assert hosted.cancel(other, p.job_id) == "cancelled"

        state = tmp_path / "c.json"
        with pytest.raises(hosted.JobFailed) as failed:
            await asyncio.to_thread(
                hosted.fine_tune,
                llm(emu),
                sft_file(tmp_path),
                fmt="sft",
                state_path=state,
                progress=progress,
                poll_interval=0.01,
            )
        assert failed.value.status == "cancelled" and statuses[-1] == "cancelled"
        (job,) = emu.jobs.values()
        assert job.status == "cancelled" and job.polls < 50
        # cancelling an ended job (the provider's 400) gives the status it ended with
        assert await asyncio.to_thread(hosted.cancel, other, job.id) == "cancelled"
        assert emu.rejected[-1][0] == 400 and "already cancelled" in emu.rejected[-1][1]


async def test_a_429_while_polling_is_absorbed_by_the_sdks_retries(tmp_path: Path) -> None:
    async with FineTuneServer(polls=4) as emu:
        emu.rate_limit("GET", "fine_tuning/jobs/", times=1)
        emu.rate_limit("POST", "files", times=1)
        model, seen = await run(emu, sft_file(tmp_path), tmp_path / "r.json")
        assert model.startswith("ft:")
        assert len(emu.rate_limited) == 2 and emu.rate_limited[1].startswith("GET /v1/fine_tuning/jobs/")
        assert len(emu.requests_to("POST", "/v1/files")) == 2  # the 429 and its retry
        assert len(emu.files) == 1 and len(emu.jobs) == 1
        assert [p.status for p in seen if p.kind == "status"][-1] == "succeeded"


async def test_with_retries_off_a_429_is_an_error(tmp_path: Path) -> None:
    async with FineTuneServer() as emu:
        emu.rate_limit("POST", "files")
        with pytest.raises(openai.RateLimitError):
            await asyncio.to_thread(
                hosted.fine_tune,
                llm(emu, max_retries=0),
                sft_file(tmp_path),
                fmt="sft",
                state_path=tmp_path / "x.json",
                poll_interval=0.01,
            )


WATCHER = """
import json, sys
from pathlib import Path
from config.settings import LLMSettings
from knowledge.tuning import hosted

def show(p):
    print(json.dumps({"kind": p.kind, "status": p.status, "message": p.message}), flush=True)

hosted.fine_tune(LLMSettings(**json.loads(sys.argv[1])), Path(sys.argv[2]), fmt="sft",
                 state_path=Path(sys.argv[3]), progress=show, poll_interval=0.05)
"""


async def test_a_process_killed_mid_poll_is_resumed_on_the_same_job(tmp_path: Path) -> None:
    async with FineTuneServer(polls=30) as emu:
        data, state = sft_file(tmp_path), tmp_path / "jobs" / "restart.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WATCHER,
            json.dumps(emu.settings()),
            str(data),
            str(state),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
        assert proc.stdout is not None
        try:
            while True:  # wait until the job is training and the first step was shown
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                assert line, "the watcher exited before the job ran"
                if json.loads(line)["message"].startswith("Step 1/"):
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        (job,) = emu.jobs.values()
        assert job.status == "running"

        # a restarted process finds the run and resumes it from the state file alone
        (found,) = hosted.unfinished(state.parent)
        seen: list[hosted.Progress] = []
        model = await asyncio.to_thread(
            hosted.resume, llm(emu), found, progress=seen.append, poll_interval=0.01
        )
        assert model == job.fine_tuned_model
        assert len(emu.jobs) == 1 and len(emu.files) == 1  # no second upload, no second job
        # the resumed watch went on from the last recorded event: what the killed one showed and
        # recorded is not shown again (the step it was killed while showing may be, once)
        messages = [p.message for p in seen if p.kind == "event"]
        assert not any(m.startswith(("Validating", "Files validated")) for m in messages)
        assert sum(m.startswith("Step 1/") for m in messages) <= 1
        assert messages[-1] == "The job has successfully completed"


async def test_a_crash_between_creating_and_recording_the_job_finds_it_by_its_tag(tmp_path: Path) -> None:
    async with FineTuneServer(polls=3) as emu:
        data, state = sft_file(tmp_path), tmp_path / "tagged.json"
        client = hosted.client_for(llm(emu))
        created = await asyncio.to_thread(
            hosted.start, client, data, fmt="sft", base_model="gpt-4o-mini-2024-07-18", state_path=state
        )
        # what a crash right after `jobs.create` leaves: the file id recorded, the job id not
        recorded = hosted.load_state(state)
        assert recorded is not None
        recorded.job_id, recorded.status = None, "creating"
        recorded.save(state)
        model, _ = await run(emu, data, state)
        assert len(emu.jobs) == 1 and emu.jobs[created.job_id or ""].fine_tuned_model == model
        (lookup,) = emu.requests_to("GET", "/v1/fine_tuning/jobs")
        assert lookup["query"]["metadata[lore_run]"] == recorded.run


async def test_the_state_file_belongs_to_its_data(tmp_path: Path) -> None:
    async with FineTuneServer(polls=3) as emu:
        state = tmp_path / "mine.json"
        await run(emu, sft_file(tmp_path), state)
        other = tmp_path / "other"
        other.mkdir()
        with pytest.raises(hosted.HostedTuningError, match="other data"):
            await run(emu, sft_file(other, n=11), state)


async def test_the_emulator_refuses_malformed_requests(tmp_path: Path) -> None:
    async with FineTuneServer() as emu:
        client = hosted.client_for(llm(emu))
        good = await asyncio.to_thread(
            client.files.create, file=sft_file(tmp_path).open("rb"), purpose="fine-tune"
        )
        assistants = await asyncio.to_thread(
            client.files.create, file=("a.jsonl", b'{"x": 1}\n'), purpose="assistants"
        )

        def create(**kw: Any) -> Any:
            return client.fine_tuning.jobs.create(
                **({"model": "gpt-4o-mini-2024-07-18", "training_file": good.id} | kw)
            )

        bad_calls: list[dict[str, Any]] = [
            {"extra_body": {"bogus": 1}},  # an argument the API does not know
            {"model": "gpt-nope"},
            {"training_file": "file-missing"},
            {"training_file": assistants.id},  # uploaded for another purpose
            {"method": {"type": "dpo", "supervised": {"hyperparameters": {}}}},
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"beta": 0.1}}}},
            {"suffix": "x" * 65},
        ]
        for kw in bad_calls:
            with pytest.raises(openai.BadRequestError):
                await asyncio.to_thread(create, **kw)
        with pytest.raises(openai.BadRequestError):
            await asyncio.to_thread(client.files.create, file=("t.jsonl", b"not json\n"), purpose="fine-tune")
        with pytest.raises(openai.NotFoundError):
            await asyncio.to_thread(client.fine_tuning.jobs.retrieve, "ftjob-missing")
        with pytest.raises(openai.NotFoundError):  # only fine-tuned (or base) models answer
            await asyncio.to_thread(
                client.chat.completions.create,
                model="ft:unknown",
                messages=[{"role": "user", "content": "hi"}],
            )
        wrong_key = hosted.client_for(llm(emu, api_key="sk-wrong", max_retries=0))
        with pytest.raises(openai.AuthenticationError):
            await asyncio.to_thread(wrong_key.fine_tuning.jobs.list)

        # shapes the SDK would never send: raw HTTP, from the test side only
        headers = {"Authorization": f"Bearer {emu.api_key}"}
        async with httpx.AsyncClient(base_url=emu.url, headers=headers) as raw:
            missing = await raw.post("/fine_tuning/jobs", json={"model": "gpt-4o-mini-2024-07-18"})
            assert missing.status_code == 400 and missing.json()["error"]["param"] == "training_file"
            as_json = await raw.post("/files", json={"purpose": "fine-tune"})
            assert as_json.status_code == 400 and "multipart" in as_json.json()["error"]["message"]
            no_purpose = await raw.post("/files", files={"file": ("t.jsonl", b'{"a": 1}\n')})
            assert no_purpose.status_code == 400 and no_purpose.json()["error"]["param"] == "purpose"
            no_auth = await raw.post("/fine_tuning/jobs", json={}, headers={"Authorization": ""})
            assert no_auth.status_code == 401
        assert emu.jobs == {} and len(emu.rejected) == len(bad_calls) + 8


async def test_watching_past_max_seconds_times_out_and_a_later_watch_finishes(tmp_path: Path) -> None:
    async with FineTuneServer(polls=8) as emu:
        state = tmp_path / "slow.json"
        with pytest.raises(TimeoutError, match="still queued"):
            await run(emu, sft_file(tmp_path), state, max_seconds=0)
        (job,) = emu.jobs.values()
        assert job.status == "queued" and hosted.unfinished(tmp_path) == [state]
        client = hosted.client_for(llm(emu))
        model = await asyncio.to_thread(hosted.watch, client, state, poll_interval=0.01)
        assert model == job.fine_tuned_model and len(emu.jobs) == 1
