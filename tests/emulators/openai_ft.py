"""A local emulator of OpenAI's fine-tuning API: files, fine_tuning.jobs (events, cancel), chat.

The endpoints `knowledge/tuning/hosted.py` uses, shaped as OpenAI shapes them, and strict about
what it is sent, as the real API is: a bearer key, a multipart upload with `purpose`, JSON bodies
with their required fields and no unknown ones, a `method` whose settings match its type, a
training file uploaded for `fine-tune`. A malformed request gets OpenAI's 400/401/404 error body.

A job moves one step each time it is retrieved (`GET /v1/fine_tuning/jobs/{id}`):
validating_files -> queued (or failed, when the file is not of the method's shape) -> running
(one metrics event per poll) -> succeeded after `polls` retrievals, or failed with `fail_with`.
Events are listed newest first with `after`/`limit`/`has_more`, as the real API does. State lives in
the server, so a client that dies and comes back sees the same job. `rate_limit(...)` answers the
next matching request with a 429 (the SDK's retries must absorb it). Chat completions answer only
for models this server fine-tuned (or `base_models`); `tuned_reply` makes the fine-tuned ones
answer differently from the base (a better model, or one made worse on purpose).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.emulators.openai_chat import chat_completion

PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
JOB_FIELDS = {
    "model",
    "training_file",
    "hyperparameters",
    "integrations",
    "metadata",
    "method",
    "seed",
    "suffix",
    "validation_file",
}
HYPERPARAMETERS = {
    "supervised": {"batch_size", "learning_rate_multiplier", "n_epochs"},
    "dpo": {"batch_size", "learning_rate_multiplier", "n_epochs", "beta"},
}
SHAPES = {"supervised": ("messages",), "dpo": ("input", "preferred_output", "non_preferred_output")}
TERMINAL = ("succeeded", "failed", "cancelled")
RECORD = web.RequestKey("record", dict)


class Rejected(Exception):
    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass
class Job:
    body: dict[str, Any]
    id: str = field(default_factory=lambda: f"ftjob-{secrets.token_hex(12)}")
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "validating_files"
    polls: int = 0
    error: dict[str, Any] | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first

    @property
    def method(self) -> dict[str, Any]:
        return self.body.get("method") or {"type": "supervised", "supervised": {}}

    def to_json(self) -> dict[str, Any]:
        kind = self.method["type"]
        hp = {"batch_size": 1, "learning_rate_multiplier": 1.8, "n_epochs": 3}
        hp.update((self.method.get(kind) or {}).get("hyperparameters") or {})
        return {
            "object": "fine_tuning.job",
            "id": self.id,
            "created_at": self.created_at,
            "model": self.body["model"],
            "training_file": self.body["training_file"],
            "validation_file": self.body.get("validation_file"),
            "status": self.status,
            "error": self.error,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": self.finished_at,
            "hyperparameters": hp if kind == "supervised" else {},
            "method": {"type": kind, kind: {"hyperparameters": hp}},
            "organization_id": "org-emulator",
            "result_files": [],
            "seed": self.body.get("seed") if self.body.get("seed") is not None else 42,
            "trained_tokens": 1234 if self.status == "succeeded" else None,
            "estimated_finish": None,
            "integrations": [],
            "metadata": self.body.get("metadata"),
        }


class FineTuneServer:
    """The emulator; `settings()` points Lore's `llm` at it. Jobs finish after `polls` retrievals."""

    def __init__(
        self,
        *,
        api_key: str = "sk-emulator-ft-test",
        polls: int = 4,
        fail_with: tuple[str, str] | None = None,
        min_examples: int = 10,
        base_models: Iterable[str] = ("gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14"),
        reply: str = "Everyone gets 25 days of paid leave a year [1].",
        tuned_reply: str | None = None,
    ) -> None:
        if polls < 3:
            raise ValueError("a job needs at least 3 polls: queued, running, done")
        self.api_key, self.polls, self.fail_with = api_key, polls, fail_with
        self.min_examples, self.base_models, self.reply = min_examples, set(base_models), reply
        self.tuned_reply = tuned_reply  # what the models it fine-tuned answer (None: `reply`)
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, Job] = {}  # in creation order
        self.requests: list[dict[str, Any]] = []  # every request, for assertions
        self.rejected: list[tuple[int, str]] = []  # (status, message) of every refused request
        self.rate_limited: list[str] = []  # "METHOD path" of every 429 served
        self._throttle: list[tuple[str, str, int]] = []  # (method, path prefix, remaining)
        self.chat_models: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FineTuneServer:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/v1/files", self._upload)
        app.router.add_post("/v1/fine_tuning/jobs", self._create)
        app.router.add_get("/v1/fine_tuning/jobs", self._list_jobs)
        app.router.add_get("/v1/fine_tuning/jobs/{id}", self._retrieve)
        app.router.add_get("/v1/fine_tuning/jobs/{id}/events", self._events)
        app.router.add_post("/v1/fine_tuning/jobs/{id}/cancel", self._cancel)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "provider": "openai",
            "base_url": self.url,
            "api_key": self.api_key,
            "model": "gpt-4o-mini-2024-07-18",
            "fallback_to_extractive": False,
            "max_retries": 2,
            "timeout": 10,
        } | overrides

    def rate_limit(self, method: str, path_prefix: str, times: int = 1) -> None:
        """Answer the next `times` requests `METHOD /v1/<path_prefix>...` with HTTP 429."""
        self._throttle.append((method.upper(), "/v1/" + path_prefix.lstrip("/"), times))

    def requests_to(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    # ---- plumbing ---------------------------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request[RECORD] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "body": None,
        }
        self.requests.append(request[RECORD])
        try:
            if request.headers.get("Authorization") != f"Bearer {self.api_key}":
                raise Rejected(401, "Incorrect API key provided.", code="invalid_api_key")
            for i, (method, prefix, left) in enumerate(self._throttle):
                if request.method == method and request.path.startswith(prefix):
                    self._throttle[i] = (method, prefix, left - 1)
                    self._throttle = [t for t in self._throttle if t[2] > 0]
                    self.rate_limited.append(f"{request.method} {request.path}")
                    return web.json_response(
                        _error("Rate limit reached for requests", "requests", "rate_limit_exceeded", None),
                        status=429,
                        headers={"retry-after-ms": "20"},
                    )
            response: web.StreamResponse = await handler(request)
            return response
        except Rejected as exc:
            self.rejected.append((exc.status, exc.message))
            return web.json_response(
                _error(exc.message, "invalid_request_error", exc.code, exc.param), status=exc.status
            )

    async def _json(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise Rejected(400, f"Expected application/json, got {request.content_type}")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise Rejected(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise Rejected(400, "The request body must be a JSON object.")
        request[RECORD]["body"] = body
        return body

    def _job(self, request: web.Request) -> Job:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            raise Rejected(
                404, f"Could not find fine-tune: {request.match_info['id']}", code="fine_tune_not_found"
            )
        return job

    # ---- files ------------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        if request.content_type != "multipart/form-data":
            raise Rejected(400, f"Expected multipart/form-data, got {request.content_type}")
        form = await request.post()
        unknown = set(form) - {"file", "purpose", "expires_after[anchor]", "expires_after[seconds]"}
        if unknown:
            raise Rejected(400, f"Unrecognized request argument supplied: {sorted(unknown)[0]}")
        purpose = form.get("purpose")
        if not isinstance(purpose, str) or purpose not in PURPOSES:
            raise Rejected(400, f"{purpose!r} is not one of {sorted(PURPOSES)} - 'purpose'", param="purpose")
        upload = form.get("file")
        if not isinstance(upload, web.FileField) or not upload.filename:
            raise Rejected(
                400, "'file' is a required property, and must be a file part with a name", param="file"
            )
        raw = upload.file.read()
        lines = [line for line in raw.decode("utf-8").splitlines() if line.strip()]
        if purpose == "fine-tune":
            if not upload.filename.endswith(".jsonl"):
                raise Rejected(400, "Invalid file format for Fine-Tuning API. Must be .jsonl", param="file")
            for n, line in enumerate(lines, 1):
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    raise Rejected(
                        400, f"Invalid file format: line {n} is not valid JSON", param="file"
                    ) from None
        request[RECORD]["body"] = {"purpose": purpose, "filename": upload.filename, "bytes": len(raw)}
        file_id = f"file-{secrets.token_hex(12)}"
        file = {
            "object": "file",
            "id": file_id,
            "bytes": len(raw),
            "created_at": int(time.time()),
            "filename": upload.filename,
            "purpose": purpose,
            "status": "processed",
            "lines": lines,
        }
        self.files[file_id] = file
        return web.json_response({k: v for k, v in file.items() if k != "lines"})

    # ---- jobs -------------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        unknown = set(body) - JOB_FIELDS
        if unknown:
            raise Rejected(400, f"Unrecognized request argument supplied: {sorted(unknown)[0]}")
        for name in ("model", "training_file"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise Rejected(
                    400,
                    f"Missing required parameter: '{name}'.",
                    param=name,
                    code="missing_required_parameter",
                )
        if body["model"] not in self.base_models:
            raise Rejected(
                400,
                f"Model {body['model']} is not available for fine-tuning",
                param="model",
                code="model_not_available",
            )
        for name in ("training_file", "validation_file"):
            if body.get(name) is None:
                continue
            file = self.files.get(body[name])
            if file is None:
                raise Rejected(400, f"invalid file ID {body[name]}", param=name, code="invalid_file_id")
            if file["purpose"] != "fine-tune":
                raise Rejected(
                    400, f"File {body[name]} has purpose {file['purpose']}, expected fine-tune", param=name
                )
        _check_method(body.get("method"))
        if "hyperparameters" in body and "method" in body:
            raise Rejected(400, "Pass hyperparameters under 'method', not both", param="hyperparameters")
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 64):
            raise Rejected(400, "'suffix' must be a string of at most 64 characters", param="suffix")
        if body.get("seed") is not None and not isinstance(body["seed"], int):
            raise Rejected(400, "'seed' must be an integer", param="seed")
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or not all(isinstance(v, str) for v in metadata.values())
        ):
            raise Rejected(400, "'metadata' must map at most 16 keys to strings", param="metadata")
        job = Job(body)
        self._event(job, f"Validating training file: {body['training_file']}")
        self.jobs[job.id] = job
        return web.json_response(job.to_json())

    async def _list_jobs(self, request: web.Request) -> web.Response:
        wanted = {k[len("metadata[") : -1]: v for k, v in request.query.items() if k.startswith("metadata[")}
        jobs = [j.to_json() for j in reversed(self.jobs.values())]
        jobs = [j for j in jobs if all((j["metadata"] or {}).get(k) == v for k, v in wanted.items())]
        return web.json_response(_page(jobs, request))

    async def _retrieve(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job.status not in TERMINAL:
            self._advance(job)
        return web.json_response(job.to_json())

    async def _events(self, request: web.Request) -> web.Response:
        job = self._job(request)
        return web.json_response(_page(job.events[::-1], request))

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job.status in TERMINAL:
            raise Rejected(
                400, f"Job {job.id} has already {job.status} and cannot be cancelled", code="invalid_state"
            )
        job.status, job.finished_at = "cancelled", int(time.time())
        self._event(job, "Fine-tuning job cancelled")
        return web.json_response(job.to_json())

    def _advance(self, job: Job) -> None:
        job.polls += 1
        kind = job.method["type"]
        if job.polls == 1:
            problem = self._file_problem(self.files[job.body["training_file"]], kind)
            if problem:
                self._end(job, "failed", ("invalid_training_file", problem))
            else:
                job.status = "queued"
                self._event(job, "Files validated, moving job to queued state")
        elif job.polls == 2:
            job.status = "running"
            self._event(job, "Fine-tuning job started")
        elif job.polls < self.polls:
            step, total = job.polls - 2, self.polls - 3
            loss = round(1.5 / step, 4)
            self._event(
                job,
                f"Step {step}/{total}: training loss={loss}",
                kind="metrics",
                data={"step": step, "total_steps": total, "train_loss": loss},
            )
        elif self.fail_with is not None:
            self._end(job, "failed", self.fail_with)
        else:
            suffix = job.body.get("suffix") or ""
            job.fine_tuned_model = f"ft:{job.body['model']}:lore-emulator:{suffix}:{job.id[-8:]}"
            self._event(job, f"New fine-tuned model created: {job.fine_tuned_model}")
            self._end(job, "succeeded", None)

    def _end(self, job: Job, status: str, error: tuple[str, str] | None) -> None:
        job.status, job.finished_at = status, int(time.time())
        if error is not None:
            job.error = {"code": error[0], "message": error[1], "param": None}
            self._event(job, error[1], level="error")
        else:
            self._event(job, "The job has successfully completed")

    def _file_problem(self, file: dict[str, Any], kind: str) -> str | None:
        if len(file["lines"]) < self.min_examples:
            n = len(file["lines"])
            return f"Training file has {n} example(s), but must have at least {self.min_examples} examples"
        for n, line in enumerate(file["lines"], 1):
            record = json.loads(line)
            if not isinstance(record, dict) or any(k not in record for k in SHAPES[kind]):
                return f"Invalid file format. Line {n}: a {kind} example needs {', '.join(SHAPES[kind])}"
        return None

    @staticmethod
    def _event(
        job: Job, message: str, *, level: str = "info", kind: str = "message", data: Any = None
    ) -> None:
        job.events.append(
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{secrets.token_hex(12)}",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "data": data,
                "type": kind,
            }
        )

    # ---- chat -------------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list) or not messages:
            raise Rejected(400, "'model' and a non-empty 'messages' list are required")
        if not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
            raise Rejected(400, "each message needs 'role' and 'content'", param="messages")
        tuned = {j.fine_tuned_model for j in self.jobs.values() if j.fine_tuned_model}
        if model not in tuned | self.base_models:
            raise Rejected(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        self.chat_models.append(model)
        reply = self.tuned_reply if model in tuned and self.tuned_reply is not None else self.reply
        return web.json_response(chat_completion(reply, model))


def _check_method(method: Any) -> None:
    if method is None:
        return
    if not isinstance(method, dict) or method.get("type") not in ("supervised", "dpo", "reinforcement"):
        raise Rejected(
            400, "'method.type' must be one of supervised, dpo, reinforcement", param="method.type"
        )
    kind = method["type"]
    if set(method) - {"type", kind}:
        raise Rejected(
            400,
            f"method of type {kind} takes only '{kind}' settings, got {sorted(set(method) - {'type'})}",
            param="method",
        )
    settings = method.get(kind) or {}
    if not isinstance(settings, dict) or set(settings) - {"hyperparameters"}:
        raise Rejected(400, f"'method.{kind}' takes only 'hyperparameters'", param=f"method.{kind}")
    unknown = set(settings.get("hyperparameters") or {}) - HYPERPARAMETERS.get(kind, set())
    if unknown:
        raise Rejected(
            400,
            f"Unknown {kind} hyperparameter: {sorted(unknown)[0]}",
            param=f"method.{kind}.hyperparameters",
        )


def _page(items: list[dict[str, Any]], request: web.Request) -> dict[str, Any]:
    """A cursor page: items after the one whose id is `after`, at most `limit` (default 20)."""
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        raise Rejected(400, "'limit' must be an integer", param="limit") from None
    if not 1 <= limit <= 100:
        raise Rejected(400, "'limit' must be between 1 and 100", param="limit")
    after = request.query.get("after")
    if after is not None:
        ids = [i["id"] for i in items]
        if after not in ids:
            raise Rejected(400, f"No such object for 'after': {after}", param="after")
        items = items[ids.index(after) + 1 :]
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def _error(message: str, kind: str, code: str | None, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
