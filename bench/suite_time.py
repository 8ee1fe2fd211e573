"""Issue 16's suite-time check: the same tests, before and after the move that made `tests/`
mirror the packages, timed side by side.

fdba11f is the last commit before the move; f131453 finished it (tests/web -> tests/bot/web,
tests/knowledge/test_cli.py -> tests/bot, one corpus and index per run, one SIGTERM test, one
contract fixture). Between them only tests changed, so the two commands run the same tests at the
same code: the "before" set names the files by their old paths. Each commit is checked out in a
throwaway worktree (this checkout's .venv linked in) and `farm-bench` runs the two pytest
commands in turn (A B A B ...), so a slower stretch of the machine weighs on both.

Run: .venv/bin/python bench/suite_time.py [--runs 2] [--nice -20]
(a negative nice needs root; it keeps other work on the machine from weighing on the figures)
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE, AFTER = "fdba11f", "f131453"
MOVED = "tests/ops/test_shutdown.py tests/workers/test_feedback_queue.py"  # changed by the move
BEFORE_TESTS = f"tests/bot tests/web tests/knowledge/test_cli.py {MOVED}"
AFTER_TESTS = f"tests/bot {MOVED}"


def pytest_command(tree: Path, tests: str, log: Path) -> str:
    run = f"exec .venv/bin/pytest -q -p no:cacheprovider {tests} >>{log} 2>&1"
    return f"sh -c {shlex.quote(f'cd {tree} && PYTHONPATH={tree} {run}')}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2, help="runs of each command")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the timed commands")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lore-suite-time-") as tmp:
        trees = {}
        for name, commit in (("before", BEFORE), ("after", AFTER)):
            tree = Path(tmp) / name
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True
            )
            os.symlink(REPO / ".venv", tree / ".venv")
            trees[name] = tree
        try:
            logs = {name: Path(tmp) / f"{name}.log" for name in trees}
            after = pytest_command(trees["after"], AFTER_TESTS, logs["after"])
            before = pytest_command(trees["before"], BEFORE_TESTS, logs["before"])
            command = [
                "farm-bench",
                "-n",
                str(args.runs),
                "--warmup",
                "0",
                "--timeout",
                "3600",
                "--vs",
                before,
            ]
            command += ["--", *shlex.split(after)]
            subprocess.run(["nice", "-n", str(args.nice), *command], check=False)
            for name, log in logs.items():  # each run's pytest summary line
                lines = [
                    x
                    for x in log.read_text().splitlines()
                    if " in " in x and ("passed" in x or "failed" in x)
                ]
                print(f"{name}: " + " | ".join(lines))
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
                )


if __name__ == "__main__":
    main()
