"""Workers benchmark: votes recorded per second through the queue (1 and 2 worker processes),
and sync throughput through a worker as a ratio to the in-process `lore index`.

    .venv/bin/python bench/workers_bench.py [--votes 2000] [--docs 150] [--db sqlite,postgres]

Needs the local Redis (and PostgreSQL for --db postgres). Uses a private key prefix, a temp
data directory and throwaway databases; prints a Markdown table and writes JSON to
bench/results/workers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("LORE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def env_for(overrides: dict[str, Any], tmp: Path) -> dict[str, str]:
    (tmp / "empty.toml").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update(LORE_CONFIG=str(tmp / "empty.toml"), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    for key, value in overrides.items():
        env[f"LORE_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def start_worker(
    env: dict[str, str], queues: str, log: Path, concurrency: int = 1
) -> subprocess.Popen[bytes]:
    node = f"bench-{uuid.uuid4().hex[:6]}@%h"
    argv = [str(BIN / "lore"), "worker", "-Q", queues, "--concurrency", str(concurrency), "-n", node]
    fh = open(log, "wb")  # noqa: SIM115 - lives as long as the worker
    proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while " ready." not in log.read_text(errors="replace"):
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.2)
    return proc


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def bench_votes(n_votes: int, n_workers: int, db_kind: str, tmp: Path) -> dict[str, Any]:
    from sqlalchemy import func, select

    from config.settings import Settings
    from feedback.db import Database
    from feedback.models import VoteEvent
    from feedback.schema import VoteRecord
    from workers.sender import CeleryTaskClient

    prefix = f"lore-bench-{uuid.uuid4().hex[:8]}:"
    data = tmp / f"votes-{db_kind}-{n_workers}"
    overrides: dict[str, Any] = {"data_dir": str(data), "redis": {"url": REDIS_URL, "prefix": prefix}}
    pg_name = None
    if db_kind == "postgres":
        import psycopg

        pg_name = f"lore_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        overrides["database"] = {"url": PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_name}"}
    settings = Settings(**overrides)
    db = Database.from_settings(settings)
    db.ensure_schema()
    env = env_for(overrides, tmp)
    procs = [
        start_worker(env, "feedback", data.parent / f"w-{db_kind}-{n_workers}-{i}.log")
        for i in range(n_workers)
    ]
    client = CeleryTaskClient(settings)
    votes = [
        VoteRecord(
            answer_id=f"a{i // 3}",
            user_hash=f"u{i % 3}",
            platform="slack",
            value=random.choice(["up", "down"]),
        )
        for i in range(n_votes)
    ]
    try:
        t0 = time.perf_counter()
        for v in votes:
            client.record_vote(v)
        sent = time.perf_counter() - t0
        while True:
            with db.sessions() as s:
                if s.scalar(select(func.count()).select_from(VoteEvent)) == n_votes:
                    break
            time.sleep(0.05)
        total = time.perf_counter() - t0
    finally:
        client.close()
        stop(procs)
        db.dispose()
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"{prefix}*"))
        if keys:
            r.delete(*keys)
        if pg_name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    return {
        "db": db_kind,
        "workers": n_workers,
        "votes": n_votes,
        "send_per_s": n_votes / sent,
        "stored_per_s": n_votes / total,
    }


def make_corpus(root: Path, n: int) -> None:
    rnd = random.Random(n)
    words = [
        "policy",
        "laptop",
        "badge",
        "office",
        "meeting",
        "review",
        "deploy",
        "incident",
        "pager",
        "holiday",
        "budget",
        "invoice",
        "vpn",
    ]
    for i in range(n):
        body = "\n".join(
            f"## Part {j}\n\n" + " ".join(rnd.choice(words) for _ in range(60)) + ".\n" for j in range(2)
        )
        path = root / f"team{i % 8}" / f"doc{i:04d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Document {i}\n\n{body}", encoding="utf-8")


def bench_sync(n_docs: int, tmp: Path) -> dict[str, Any]:
    from config.settings import Settings
    from workers.sender import CeleryTaskClient

    docs = tmp / "corpus"
    make_corpus(docs, n_docs)
    sources = [{"name": "bench", "type": "directory", "path": str(docs)}]
    base = {"sources": sources, "llm": {"provider": "extractive"}}

    # In-process: `lore index` in a fresh process (model load included, as a worker's first sync).
    inproc = {**base, "data_dir": str(tmp / "index-inprocess")}
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(BIN / "lore"), "index", "--json"], env=env_for(inproc, tmp), capture_output=True, text=True
    )
    in_wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    in_summary = json.loads(out.stdout)["sources"]["bench"]

    prefix = f"lore-bench-{uuid.uuid4().hex[:8]}:"
    queued = {**base, "data_dir": str(tmp / "index-worker"), "redis": {"url": REDIS_URL, "prefix": prefix}}
    settings = Settings(**queued)
    proc = start_worker(env_for(queued, tmp), "ingest", tmp / "w-sync.log")
    client = CeleryTaskClient(settings)
    try:
        t0 = time.perf_counter()
        handle = client.request_sync("bench")
        last = client.wait(handle.task_id, "bench", timeout=3600, poll=0.1)
        q_wall = time.perf_counter() - t0
        assert last and last["state"] == "done", last
    finally:
        client.close()
        stop([proc])
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"{prefix}*"))
        if keys:
            r.delete(*keys)
    return {
        "docs": n_docs,
        "chunks": in_summary["chunks_embedded"],
        "inprocess_wall_s": in_wall,
        "inprocess_sync_s": in_summary["seconds"],
        "worker_wall_s": q_wall,
        "worker_sync_s": last["seconds"],
        "chunks_per_s_inprocess": in_summary["chunks_embedded"] / in_summary["seconds"],
        "chunks_per_s_worker": last["chunks_embedded"] / last["seconds"],
        "throughput_ratio": (last["chunks_embedded"] / q_wall) / (in_summary["chunks_embedded"] / in_wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", type=int, default=2000)
    parser.add_argument("--docs", type=int, default=150)
    parser.add_argument("--db", default="sqlite,postgres")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    results: dict[str, Any] = {"votes": [], "sync": None}
    with tempfile.TemporaryDirectory(prefix="lore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for kind in args.db.split(","):
            for n in (1, 2):
                r = bench_votes(args.votes, n, kind, tmp)
                rate, sent = r["stored_per_s"], r["send_per_s"]
                print(f"votes {kind} workers={n}: {rate:.0f}/s stored, {sent:.0f}/s sent", flush=True)
                results["votes"].append(r)
        results["sync"] = s = bench_sync(args.docs, tmp)
        print(f"sync: {json.dumps(s)}", flush=True)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "workers.json").write_text(json.dumps(results, indent=2))
    print("\n| database | feedback workers | votes | sent/s (client) | stored/s (end to end) |")
    print("|---|---|---|---|---|")
    for r in results["votes"]:
        print(
            f"| {r['db']} | {r['workers']} | {r['votes']} | {r['send_per_s']:.0f} | {r['stored_per_s']:.0f} |"
        )
    print("\n| path | wall s (incl. model load) | sync s | chunks/s (sync) |")
    print("|---|---|---|---|")
    rows = [
        ("`lore index` in-process", "inprocess_wall_s", "inprocess_sync_s", "chunks_per_s_inprocess"),
        ("`lore sync run` through a worker", "worker_wall_s", "worker_sync_s", "chunks_per_s_worker"),
    ]
    for label, wall, sync, rate in rows:
        print(f"| {label} | {s[wall]:.1f} | {s[sync]:.1f} | {s[rate]:.1f} |")
    ratio = s["throughput_ratio"]
    print(
        f"\nthroughput ratio (worker / in-process, wall): {ratio:.2f}"
        f" on {s['docs']} docs, {s['chunks']} chunks"
    )


if __name__ == "__main__":
    main()
