"""`lore worker`, `lore beat`, `lore sync …`, `lore feedback stats` and `lore db …`.

Heavy imports (Celery, SQLAlchemy) happen inside the commands so `lore --help` stays fast.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from bot.commands._common import err, error, out, say, settings_of
from config.settings import Settings

sync_app = typer.Typer(no_args_is_help=True, help="Syncs through the workers: run one, see progress.")
feedback_app = typer.Typer(no_args_is_help=True, help="The answer and vote log.")
db_app = typer.Typer(no_args_is_help=True, help="The feedback database's migrations.")


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(beat)
    app.add_typer(sync_app, name="sync")
    app.add_typer(feedback_app, name="feedback")
    app.add_typer(db_app, name="db")


def _celery(settings: Settings) -> Any:
    from workers.app import make_celery

    if not settings.redis.url:
        error(
            "no Redis configured (LORE_REDIS__URL). Without it Lore runs background work in-process "
            "and there is no worker to start."
        )
        raise typer.Exit(2)
    return make_celery(settings)


# -- worker and beat -------------------------------------------------------------


def worker(
    ctx: typer.Context,
    queues: Annotated[
        str, typer.Option("-Q", "--queues", help="Comma-separated: ingest, feedback, answer, train.")
    ] = "ingest,feedback",
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (default: see below).")] = None,
    loglevel: Annotated[str | None, typer.Option(help="Log level (default: log_level in lore.toml).")] = None,
    hostname: Annotated[str | None, typer.Option("-n", "--hostname", help="Node name.")] = None,
) -> None:
    """Start a Celery worker (prefork). Embedded index: one process, which owns the index (and,
    with index.owner = worker, answers the chat processes' questions too). SIGTERM: running tasks
    finish; a long sync hands itself back to the queue after worker.shutdown_grace seconds."""
    from workers.process import prepare_metrics_dir

    settings = settings_of(ctx)
    prepare_metrics_dir(settings)  # before Celery and prometheus_client are imported
    from workers.names import Queue
    from workers.process import install_worker_hooks, use_lore_logging

    app = _celery(settings)
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - {q.value for q in Queue})
    if unknown or not wanted:
        error(f"unknown queue(s) {', '.join(unknown) or '(none)'}; use ingest, feedback, answer and/or train")
        raise typer.Exit(2)
    embedded = settings.qdrant.url is None
    if Queue.INGEST.value in wanted and Queue.ANSWER.value in wanted and embedded:
        # The pool process that owns the index serves the answer queue on its own threads
        # (workers/answers.py); through Celery's one-process pool, questions would wait for syncs.
        wanted.remove(Queue.ANSWER.value)
    if concurrency is None:
        concurrency = settings.worker.feedback_concurrency if wanted == [Queue.FEEDBACK.value] else 1
    opens_index = {Queue.INGEST.value, Queue.ANSWER.value, Queue.TRAIN.value} & set(wanted)
    if opens_index and embedded and concurrency > 1:
        say("[yellow]the embedded index is single-process: running this worker with one process[/yellow]")
        concurrency = 1
    use_lore_logging(settings)
    install_worker_hooks(app, settings)
    argv = [
        "worker",
        "--queues",
        ",".join(wanted),
        "--concurrency",
        str(concurrency),
        "--pool",
        "prefork",  # tasks run in children, so the lease thread in the parent is never starved
        "--loglevel",
        loglevel or settings.log_level.upper(),
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        hostname or f"lore-{'-'.join(wanted)}@%h",
    ]
    if settings.log_format == "json":
        argv.insert(0, "--quiet")  # no banner: every line on stderr is a JSON log record
    app.worker_main(argv)


def beat(
    ctx: typer.Context,
    loglevel: Annotated[str | None, typer.Option(help="Log level (default: log_level in lore.toml).")] = None,
) -> None:
    """Start the scheduler: each source syncs every `every` (or worker.default_every). Stops on SIGTERM."""
    from workers.process import use_lore_logging

    settings = settings_of(ctx)
    app = _celery(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    use_lore_logging(settings)
    argv = [
        "beat",
        "--schedule",
        str(settings.data_dir / "celerybeat-schedule"),
        "--loglevel",
        loglevel or settings.log_level.upper(),
    ]
    if settings.log_format == "json":
        argv.insert(0, "--quiet")
    app.start(argv)


# -- sync -----------------------------------------------------------------------


@sync_app.command("status")
def sync_status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Running syncs with their progress, and the last result of each source."""
    from workers.client import read_sync_status

    settings = settings_of(ctx)
    try:
        status = read_sync_status(settings)
    except Exception as exc:
        error(f"could not read the sync status: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        out.print_json(json.dumps({"running": status.running, "last": status.last}))
        return
    names = [s.name for s in settings.sources] + sorted(
        (set(status.running) | set(status.last)) - {s.name for s in settings.sources}
    )
    table = Table(
        "source", "state", "phase", "%", "seen", "changed", "deleted", "chunks", "finished", "error"
    )
    for name in names:
        run, last = status.running.get(name), status.last.get(name, {})
        if run:
            table.add_row(
                name,
                "running",
                str(run.get("phase", "")),
                f"{run.get('percent', 0):.0f}",
                *_counts(run),
                "",
                "",
            )
        elif last:
            finished, problem = str(last.get("finished_at", "")), str(last.get("error") or "")
            table.add_row(name, str(last.get("state", "")), "", "", *_counts(last), finished, problem)
        else:
            table.add_row(name, "never synced", *[""] * 8)
    out.print(table)


def _counts(data: dict[str, Any]) -> list[str]:
    changed = data.get("added", 0) + data.get("changed", 0)
    return [
        str(data.get("seen", "")),
        str(changed),
        str(data.get("deleted", 0)),
        str(data.get("chunks_embedded", 0)),
    ]


@sync_app.command("run")
def sync_run(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Argument(help="The source to sync.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every source.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Rebuild the source from scratch.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it finishes.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Queue a sync through the workers (or run it in-process without Redis)."""
    from workers.client import make_task_client

    settings = settings_of(ctx)
    if bool(source) == all_:
        error("name one source, or pass --all")
        raise typer.Exit(2)
    names = [s.name for s in settings.sources] if all_ else [source or ""]
    client: Any = make_task_client(settings)
    try:
        handles = []
        for name in names:
            try:
                handles.append(client.request_sync(name, full=full, requested_by="cli"))
            except KeyError as exc:
                error(exc.args[0])
                raise typer.Exit(1) from None
        for h in handles:
            if not as_json:
                verb = "joined the running sync" if h.joined else "queued"
                err.print(f"{h.source}: {verb} {h.task_id}")
        # Embedded mode runs the sync in this process: leaving would abandon it.
        if not (wait or not settings.redis.url):
            if as_json:
                out.print_json(
                    json.dumps({h.source: {"task_id": h.task_id, "joined": h.joined} for h in handles})
                )
            return
        results = {h.source: _follow(client, h.task_id, h.source, quiet=as_json) for h in handles}
    finally:
        client.close()
    if as_json:
        out.print_json(json.dumps(results))
    failed = [n for n, r in results.items() if not r or r.get("state") != "done"]
    raise typer.Exit(1 if failed else 0)


def _follow(client: Any, task_id: str, source: str, *, quiet: bool) -> dict[str, Any] | None:
    shown = ""
    while True:
        status = client.sync_status()
        last = status.last.get(source)
        if last and last.get("task_id") == task_id and last.get("state") in ("done", "failed"):
            if not quiet:
                detail = f" — {last['error']}" if last.get("error") else ""
                err.print(
                    f"{source}: {last['state']} · +{last.get('added', 0)} ~{last.get('changed', 0)} "
                    f"-{last.get('deleted', 0)} · {last.get('chunks_embedded', 0)} chunks{detail}"
                )
            return dict(last)
        run = status.running.get(source)
        if run and not quiet:
            line = (
                f"{source}: {run.get('phase')} {run.get('percent', 0):.0f}% · {run.get('seen', 0)} docs · "
                f"{run.get('chunks_embedded', 0)} chunks"
            )
            if line != shown:
                err.print(line, highlight=False)
                shown = line
        time.sleep(0.5)


# -- feedback and db ----------------------------------------------------------------


def _database(settings: Settings) -> Any:
    from feedback.db import Database

    return Database.from_settings(settings)


@feedback_app.command("stats")
def feedback_stats(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, help="Look back this many days.")] = 30,
    top: Annotated[int, typer.Option(min=1, help="How many down-voted questions to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Answers and votes by day and platform, and the most down-voted questions."""
    from feedback.stats import feedback_stats as compute

    db = _database(settings_of(ctx))
    try:
        db.ensure_schema()
        stats = compute(db.sessions, days=days, top=top)
    finally:
        db.dispose()
    if as_json:
        out.print_json(json.dumps(stats))
        return
    t = stats["totals"]
    silent = f"; {t['silent']} auto-answer questions left silent (not answers)" if t["silent"] else ""
    out.print(
        f"last {days} days: {t['answers']} answers, {t['votes']} votes ({t['up']} up, {t['down']} down)"
        f"{silent}"
    )
    table = Table("day", "platform", "answers", "abstained", "up", "down")
    for r in stats["by_day"]:
        table.add_row(r["day"], r["platform"], *(str(r[k]) for k in ("answers", "abstained", "up", "down")))
    out.print(table)
    if stats["most_downvoted"]:
        worst = Table("down", "up", "question")
        for r in stats["most_downvoted"]:
            worst.add_row(str(r["down"]), str(r["up"]), r["question"])
        out.print("Most down-voted questions", style="bold")
        out.print(worst)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    db = _database(settings_of(ctx))
    db.upgrade(revision)
    out.print(f"feedback database at {db.current() or 'base'}")
    db.dispose()


@db_app.command("downgrade")
def db_downgrade(ctx: typer.Context, revision: Annotated[str, typer.Argument()]) -> None:
    """Roll back to REVISION ("base" drops every table)."""
    db = _database(settings_of(ctx))
    db.downgrade(revision)
    out.print(f"feedback database at {db.current() or 'base'}")
    db.dispose()


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """The applied revision, and the latest one."""
    db = _database(settings_of(ctx))
    out.print(f"current: {db.current() or 'base'} · head: {db.head()}")
    db.dispose()
