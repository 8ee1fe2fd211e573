"""Fine-tuning the answer model on OpenAI's API, or any server that implements it (the hosted path).

upload the exported JSONL (Files API, purpose `fine-tune`) -> create a job (`method` supervised for
SFT chat files, dpo for OpenAI-shaped preference pairs) -> poll the job and report its new events ->
the job's `fine_tuned_model` is the candidate. Everything goes through the `openai` package: its
resources, its retries (a 429 or a 5xx is retried `llm.max_retries` times) and its pagination.

A hosted job runs for minutes to hours and is billed, so a process that dies while watching must
not start a second one. Every step is recorded in a small JSON state file the caller chooses (e.g.
`data_dir/models/generator-jobs/<run>.json`), replaced atomically: calling `fine_tune` (or `watch`)
again with the same file resumes the same job. Jobs are tagged with `metadata.lore_run`, so even a
crash between creating the job and recording its id finds the job instead of making another.

The caller exports the dataset (redacted, as `lore dataset export` does) and passes the file:
`train.jsonl` for `sft`, `train.openai.jsonl` for `dpo`. This module knows nothing of feedback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from config.settings import LLMSettings

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

log = logging.getLogger(__name__)

Format = Literal["sft", "dpo"]
METHODS: dict[str, str] = {"sft": "supervised", "dpo": "dpo"}
TERMINAL = ("succeeded", "failed", "cancelled")
# Keys a line must have for each format (the exporter's schemas check the rest).
_LINE_KEYS: dict[str, tuple[str, ...]] = {
    "sft": ("messages",),
    "dpo": ("input", "preferred_output", "non_preferred_output"),
}
EVENTS_PAGE = 100  # events per page when catching up; the SDK fetches further pages itself


class HostedTuningError(RuntimeError):
    """The hosted fine-tuning could not produce a candidate."""


class JobFailed(HostedTuningError):
    """The job ended `failed` or `cancelled`; `message` is the provider's own explanation."""

    def __init__(self, job_id: str, status: str, message: str, code: str | None = None) -> None:
        self.job_id, self.status, self.message, self.code = job_id, status, message, code
        detail = f" ({code})" if code else ""
        super().__init__(f"fine-tuning job {job_id} {status}{detail}: {message}")


@dataclass
class Progress:
    """One thing worth showing: a job event (`kind="event"`) or a change of status (`"status"`)."""

    job_id: str
    status: str
    message: str
    kind: Literal["event", "status"] = "event"
    level: str = "info"
    data: dict[str, Any] | None = None  # metrics events: step, total_steps, train_loss, ...


ProgressCallback = Callable[[Progress], None]


@dataclass
class JobState:
    """What the state file holds: enough to find the job again after a restart."""

    run: str  # the `metadata.lore_run` tag the job is created with: `<state file stem>-<random>`
    format: Format
    base_model: str
    training_file: str
    sha256: str  # of the training file: the state belongs to this data, not just this path
    validation_file: str | None = None
    seed: int | None = None
    suffix: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    file_id: str | None = None
    validation_file_id: str | None = None
    job_id: str | None = None
    status: str = "uploading"  # ours until the job exists, then the job's own status
    fine_tuned_model: str | None = None
    last_event_id: str | None = None  # the newest event already reported
    error: str | None = None
    error_code: str | None = None
    created_at: str = field(default_factory=lambda: _now())
    updated_at: str = field(default_factory=lambda: _now())

    def save(self, path: Path) -> None:
        """Write the whole file to a temporary name and rename it over the old one."""
        self.updated_at = _now()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def load_state(path: Path) -> JobState | None:
    """The recorded job, or None when this run has not started one."""
    if not path.exists():
        return None
    return JobState(**json.loads(path.read_text(encoding="utf-8")))


def unfinished(directory: Path) -> list[Path]:
    """State files under `directory` whose job has not ended: what a restarted process resumes."""
    found = []
    for path in sorted(directory.glob("*.json")):
        state = load_state(path)
        if state is not None and state.status not in TERMINAL:
            found.append(path)
    return found


def client_for(settings: LLMSettings) -> OpenAI:
    """An `openai.OpenAI` client for `llm.base_url` / `llm.api_key`, with `llm`'s timeout and retries."""
    from openai import OpenAI

    key = settings.api_key.get_secret_value() if settings.api_key else "unused"
    return OpenAI(
        api_key=key,
        base_url=settings.base_url or None,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
    )


def method_for(fmt: Format, hyperparameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job's `method`: `{"type": "supervised", "supervised": {...}}` or the same for dpo."""
    kind = METHODS[fmt]
    return {"type": kind, kind: {"hyperparameters": dict(hyperparameters or {})}}


def count_examples(path: Path, fmt: Format) -> int:
    """Examples in `path`, each checked to be JSON of `fmt`'s shape: a wrong file fails before upload."""
    n = 0
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HostedTuningError(f"{path.name} line {number}: not JSON ({exc})") from None
            missing = [k for k in _LINE_KEYS[fmt] if not isinstance(record, dict) or k not in record]
            if missing:
                raise HostedTuningError(
                    f"{path.name} line {number} is not a {fmt} example (no {', '.join(missing)}); "
                    f"{'train.openai.jsonl' if fmt == 'dpo' else 'train.jsonl'} is the file to send"
                )
            n += 1
    if n == 0:
        raise HostedTuningError(f"{path} has no examples")
    return n


def start(
    client: OpenAI,
    training_file: Path,
    *,
    fmt: Format,
    base_model: str,
    state_path: Path,
    validation_file: Path | None = None,
    seed: int | None = 0,
    suffix: str | None = "lore",
    hyperparameters: dict[str, Any] | None = None,
) -> JobState:
    """Upload and create the job, or return the one `state_path` already records (never a second).

    The job settings (`seed`, `suffix`, `hyperparameters`) are recorded with the first call; a
    resumed call uses the recorded ones.
    """
    digest = _sha256(training_file)
    state = load_state(state_path)
    interrupted = state is not None and state.file_id is not None  # may have created the job
    if state is not None:
        _check_belongs(state, state_path, digest, fmt, base_model)
        if state.job_id is not None:
            return state
    else:
        count_examples(training_file, fmt)
        if validation_file is not None:
            count_examples(validation_file, fmt)
        state = JobState(
            run=f"{state_path.stem}-{secrets.token_hex(4)}",  # unique even across deployments
            format=fmt,
            base_model=base_model,
            training_file=str(training_file),
            sha256=digest,
            validation_file=str(validation_file) if validation_file else None,
            seed=seed,
            suffix=suffix or None,
            hyperparameters=dict(hyperparameters or {}),
        )
        state.save(state_path)

    if state.file_id is None:
        state.file_id = _upload(client, training_file)
        if state.validation_file:
            state.validation_file_id = _upload(client, Path(state.validation_file))
        state.status = "creating"
        state.save(state_path)

    # A job created just before a crash, but never recorded, is found by its tag.
    job = _job_tagged(client, state.run) if interrupted else None
    if job is None:  # with what the state recorded, so a resumed start creates the same job
        extra: dict[str, Any] = {"seed": state.seed} if state.seed is not None else {}
        if state.suffix:
            extra["suffix"] = state.suffix
        if state.validation_file_id:
            extra["validation_file"] = state.validation_file_id
        job = client.fine_tuning.jobs.create(
            model=base_model,
            training_file=state.file_id,
            method=cast(Any, method_for(fmt, state.hyperparameters)),
            metadata={"lore_run": state.run},
            **extra,
        )
        log.info("fine-tuning job %s created on %s (%s)", job.id, base_model, METHODS[fmt])
    else:
        log.info("found fine-tuning job %s of run %s; resuming it", job.id, state.run)
    state.job_id, state.status = job.id, job.status
    state.save(state_path)
    return state


def watch(
    client: OpenAI,
    state_path: Path,
    *,
    progress: ProgressCallback | None = None,
    poll_interval: float = 10.0,
    max_seconds: float | None = None,
) -> str:
    """Poll the recorded job until it ends; report new events; return the fine-tuned model id.

    Raises `JobFailed` when the job fails or is cancelled, `TimeoutError` after `max_seconds` (the
    job keeps running and stays recorded: watch again later). A `progress` callback that raises
    stops the watch the same way. Events are reported at least once: one reported just before a
    crash, but not yet recorded, is reported again by the resumed watch.
    """
    state = load_state(state_path)
    if state is None or state.job_id is None:
        raise HostedTuningError(f"{state_path} records no fine-tuning job")
    job_id = state.job_id
    report = progress or log_progress
    began = time.monotonic()
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        fresh = _new_events(client, job_id, state.last_event_id)
        for event in fresh:
            report(_event_progress(job_id, job.status, event))
        if fresh:
            state.last_event_id = fresh[-1].id
        if job.status != state.status:
            report(Progress(job_id, job.status, f"job {job.status}", kind="status"))
            state.status = job.status
        if job.status == "succeeded":
            if not job.fine_tuned_model:
                raise HostedTuningError(f"fine-tuning job {job_id} succeeded without a model id")
            state.fine_tuned_model = job.fine_tuned_model
            state.save(state_path)
            return job.fine_tuned_model
        if job.status in ("failed", "cancelled"):
            error = _error(job)
            state.error_code, state.error = error
            state.save(state_path)
            raise JobFailed(job_id, job.status, error[1], error[0])
        state.save(state_path)
        if max_seconds is not None and time.monotonic() - began > max_seconds:
            raise TimeoutError(f"fine-tuning job {job_id} still {job.status} after {max_seconds:.0f} s")
        time.sleep(poll_interval)


def fine_tune(
    settings: LLMSettings,
    training_file: Path,
    *,
    fmt: Format,
    state_path: Path,
    base_model: str | None = None,
    validation_file: Path | None = None,
    seed: int | None = 0,
    suffix: str | None = "lore",
    hyperparameters: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    poll_interval: float = 10.0,
    max_seconds: float | None = None,
    client: OpenAI | None = None,
) -> str:
    """Upload, create (or resume) the job and watch it; the candidate's model id when it succeeds.

    `base_model` defaults to `llm.model`; OpenAI fine-tunes dated snapshots such as
    `gpt-4o-mini-2024-07-18`. A state file whose job already succeeded returns its model at once;
    one whose job failed raises that failure again (a new attempt is a new state file).
    """
    client = client or client_for(settings)
    base_model = base_model or settings.model
    state = load_state(state_path)
    if state is not None:
        _check_belongs(state, state_path, _sha256(training_file), fmt, base_model)
        if state.status == "succeeded" and state.fine_tuned_model:
            return state.fine_tuned_model
        if state.status in ("failed", "cancelled") and state.job_id:
            raise JobFailed(state.job_id, state.status, state.error or "no message", state.error_code)
    start(
        client,
        training_file,
        fmt=fmt,
        base_model=base_model,
        state_path=state_path,
        validation_file=validation_file,
        seed=seed,
        suffix=suffix,
        hyperparameters=hyperparameters,
    )
    return watch(client, state_path, progress=progress, poll_interval=poll_interval, max_seconds=max_seconds)


def resume(
    settings: LLMSettings,
    state_path: Path,
    *,
    progress: ProgressCallback | None = None,
    poll_interval: float = 10.0,
    max_seconds: float | None = None,
    client: OpenAI | None = None,
) -> str:
    """Finish the run `state_path` records, from whatever step it stopped at (see `unfinished`)."""
    state = load_state(state_path)
    if state is None:
        raise HostedTuningError(f"{state_path} records no fine-tuning run")
    return fine_tune(
        settings,
        Path(state.training_file),
        fmt=state.format,
        state_path=state_path,
        base_model=state.base_model,
        validation_file=Path(state.validation_file) if state.validation_file else None,
        seed=state.seed,
        suffix=state.suffix,
        hyperparameters=state.hyperparameters,
        progress=progress,
        poll_interval=poll_interval,
        max_seconds=max_seconds,
        client=client,
    )


def cancel(client: OpenAI, job_id: str) -> str:
    """Ask the provider to cancel `job_id`; its status after the request (`cancelled` normally).
    A job that already ended (e.g. the run watching it cancelled it first) gives its status."""
    import openai

    try:
        return client.fine_tuning.jobs.cancel(job_id).status
    except openai.BadRequestError:
        status = client.fine_tuning.jobs.retrieve(job_id).status
        if status in TERMINAL:
            return status
        raise


def log_progress(p: Progress) -> None:
    """The default display: one log line per event or status change."""
    log.log(
        logging.WARNING if p.level != "info" else logging.INFO,
        "fine-tuning %s [%s] %s",
        p.job_id,
        p.status,
        p.message,
    )


# ---- helpers --------------------------------------------------------------------------------------


def _upload(client: OpenAI, path: Path) -> str:
    with path.open("rb") as fh:
        uploaded = client.files.create(file=(path.name, fh), purpose="fine-tune")
    log.info("uploaded %s as %s", path.name, uploaded.id)
    return uploaded.id


def _job_tagged(client: OpenAI, run: str) -> FineTuningJob | None:
    for job in client.fine_tuning.jobs.list(metadata={"lore_run": run}, limit=10):
        return job
    return None


def _new_events(client: OpenAI, job_id: str, last_seen: str | None) -> list[FineTuningJobEvent]:
    """Events newer than `last_seen`, oldest first. The API lists newest first; the SDK pages on."""
    fresh = []
    for event in client.fine_tuning.jobs.list_events(job_id, limit=EVENTS_PAGE):
        if event.id == last_seen:
            break
        fresh.append(event)
    return fresh[::-1]


def _event_progress(job_id: str, status: str, event: FineTuningJobEvent) -> Progress:
    data = event.data if isinstance(event.data, dict) else None
    return Progress(job_id, status, event.message, kind="event", level=event.level, data=data)


def _error(job: FineTuningJob) -> tuple[str | None, str]:
    if job.error is not None and job.error.message:
        return job.error.code, job.error.message
    return None, "cancelled" if job.status == "cancelled" else "the provider gave no reason"


def _check_belongs(state: JobState, path: Path, digest: str, fmt: Format, base_model: str) -> None:
    if (state.sha256, state.format, state.base_model) != (digest, fmt, base_model):
        raise HostedTuningError(
            f"{path} records a job for other data or another model "
            f"({state.format}, {state.base_model}); use a new state file for a new run"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
