#!/usr/bin/env python3
"""Validate bench/pydocs/questions.jsonl against the installed Python 3.11 docs.

Checks, for every line of the questions file:
  * it is a JSON object with exactly the keys id, question, sources, facts, kind;
  * ids are unique; kind is one of the known kinds;
  * answerable questions list 1-2 sources and 1-3 facts; every source exists
    under the corpus path and is selected by the include/exclude globs of the
    config; every fact occurs (case-insensitive, whitespace-normalised) in the
    visible main-content text of at least one listed source;
  * not-in-corpus questions list no sources and no facts;
  * there are at least 50 questions and at least 6 not-in-corpus ones.

Exits 1 when anything is wrong, 2 when the corpus or config is missing.

    python bench/pydocs/check_questions.py                 # validate
    python bench/pydocs/check_questions.py --stats         # + size of the selection
    python bench/pydocs/check_questions.py --config bench/pydocs/lore.full.toml --stats

Needs only the standard library and beautifulsoup4.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import json
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

from bs4 import BeautifulSoup

HERE = Path(__file__).resolve().parent
KEYS = {"id", "question", "sources", "facts", "kind"}
KINDS = ("factual", "procedural", "paraphrase", "multi-doc", "not-in-corpus")
MIN_QUESTIONS = 50
MIN_NOT_IN_CORPUS = 6


# --------------------------------------------------------------------------- globs
def _match_parts(pat: list[str], parts: list[str]) -> bool:
    """Match path segments against glob segments; '**' spans zero or more segments."""
    if not pat:
        return not parts
    head, rest = pat[0], pat[1:]
    if head == "**":
        return any(_match_parts(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match_parts(rest, parts[1:])


def glob_match(rel: str, pattern: str) -> bool:
    return _match_parts(pattern.strip("/").split("/"), rel.split("/"))


def selected(rel: str, include: list[str], exclude: list[str]) -> bool:
    return any(glob_match(rel, p) for p in include) and not any(glob_match(rel, p) for p in exclude)


def selected_plain_fnmatch(rel: str, include: list[str], exclude: list[str]) -> bool:
    """The same selection with plain fnmatch ('*' crosses '/'), as a naive loader would do."""
    return any(fnmatch.fnmatchcase(rel, p) for p in include) and not any(
        fnmatch.fnmatchcase(rel, p) for p in exclude
    )


# --------------------------------------------------------------------------- text
@cache
def visible_text(path: Path) -> tuple[str, str]:
    """Main-content text of a Sphinx page, lower-cased and whitespace-normalised.

    Returns two renderings: elements joined with a space, and joined with nothing
    (so that text split across inline tags, e.g. ``functools.`` + ``lru_cache``,
    also matches). The main content is ``div.body`` (role=main); the navigation
    (mobile menu, sidebar, related bars, footer) sits outside it.
    """
    soup = BeautifulSoup(path.read_text(encoding="utf-8", errors="replace"), "html.parser")
    main = soup.select_one('div.body[role="main"]') or soup.select_one("div.body") or soup.body or soup
    for tag in main.find_all(["script", "style"]):
        tag.decompose()
    for tag in main.select("a.headerlink"):
        tag.decompose()
    spaced = re.sub(r"\s+", " ", main.get_text(" ")).strip().lower()
    joined = re.sub(r"\s+", " ", main.get_text("")).strip().lower()
    return spaced, joined


def fact_in(fact: str, path: Path) -> bool:
    needle = re.sub(r"\s+", " ", fact).strip().lower()
    return any(needle in text for text in visible_text(path))


# --------------------------------------------------------------------------- config
def load_source(config: Path) -> dict:
    with config.open("rb") as fh:
        cfg = tomllib.load(fh)
    sources = cfg.get("sources") or []
    for src in sources:
        if src.get("type") == "directory":
            return src
    raise SystemExit(f'{config}: no [[sources]] entry with type = "directory"')


def selection(root: Path, include: list[str], exclude: list[str]) -> list[str]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if selected(rel, include, exclude):
                out.append(rel)
    return out


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("questions", nargs="?", default=str(HERE / "questions.jsonl"))
    ap.add_argument("--config", default=str(HERE / "lore.toml"))
    ap.add_argument("--stats", action="store_true", help="also print the size of the selected pages")
    args = ap.parse_args()

    src = load_source(Path(args.config))
    root = Path(src["path"])
    include, exclude = list(src.get("include", [])), list(src.get("exclude", []))
    if not (root / "index.html").is_file():
        print(f"corpus not found at {root}: run bench/pydocs/install_corpus.sh first", file=sys.stderr)
        return 2

    problems: list[str] = []
    seen: set[str] = set()
    kinds: collections.Counter[str] = collections.Counter()
    n = 0
    for lineno, line in enumerate(Path(args.questions).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            problems.append(f"line {lineno}: blank line")
            continue
        where = f"line {lineno}"
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc})")
            continue
        if not isinstance(q, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        n += 1
        if set(q) != KEYS:
            problems.append(f"{where}: keys {sorted(q)} != {sorted(KEYS)}")
            continue
        qid, question, sources, facts, kind = (q[k] for k in ("id", "question", "sources", "facts", "kind"))
        where = f"{where} ({qid})"
        if not isinstance(qid, str) or not re.fullmatch(r"py-\d{3}", qid):
            problems.append(f"{where}: id must look like py-001")
        if qid in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(qid)
        if not isinstance(question, str) or not question.strip():
            problems.append(f"{where}: empty question")
        if kind not in KINDS:
            problems.append(f"{where}: unknown kind {kind!r}")
        kinds[kind] += 1
        if not (isinstance(sources, list) and all(isinstance(s, str) for s in sources)):
            problems.append(f"{where}: sources must be a list of strings")
            continue
        if not (isinstance(facts, list) and all(isinstance(f, str) and f.strip() for f in facts)):
            problems.append(f"{where}: facts must be a list of non-empty strings")
            continue

        if kind == "not-in-corpus":
            if sources or facts:
                problems.append(f"{where}: not-in-corpus questions take no sources and no facts")
            continue
        if not 1 <= len(sources) <= 2:
            problems.append(f"{where}: expected 1-2 sources, got {len(sources)}")
        if not 1 <= len(facts) <= 3:
            problems.append(f"{where}: expected 1-3 facts, got {len(facts)}")
        if kind == "multi-doc" and len(sources) != 2:
            problems.append(f"{where}: multi-doc questions list 2 sources")
        if len(set(sources)) != len(sources):
            problems.append(f"{where}: duplicate source")
        existing = []
        for s in sources:
            path = root / s
            if not path.is_file():
                problems.append(f"{where}: source {s} does not exist under {root}")
                continue
            if not selected(s, include, exclude):
                problems.append(f"{where}: source {s} is not selected by the include/exclude globs")
            existing.append(path)
        if existing:
            for fact in facts:
                if not any(fact_in(fact, p) for p in existing):
                    problems.append(f"{where}: fact {fact!r} not found in {', '.join(sources)}")

    if n < MIN_QUESTIONS:
        problems.append(f"only {n} questions, expected at least {MIN_QUESTIONS}")
    if kinds["not-in-corpus"] < MIN_NOT_IN_CORPUS:
        problems.append(
            f"only {kinds['not-in-corpus']} not-in-corpus questions, expected {MIN_NOT_IN_CORPUS}"
        )

    print(f"{n} questions: " + ", ".join(f"{k} {kinds[k]}" for k in KINDS))

    if args.stats:
        files = selection(root, include, exclude)
        plain = [
            p
            for p in (p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file())
            if selected_plain_fnmatch(p, include, exclude)
        ]
        chars = words = 0
        for rel in files:
            spaced, _ = visible_text(root / rel)
            chars += len(spaced)
            words += len(spaced.split())
        non_html = [f for f in files if not f.endswith(".html")]
        print(
            f"selection ({args.config}): {len(files)} files, {chars:,} characters, {words:,} words "
            f"of main-content text; ~{words // 150:,} chunks at words/150, "
            f"~{words / 150 / 45 / 60:.1f} min to embed at 45 chunks/s"
        )
        if non_html:
            print(f"  warning: {len(non_html)} selected files are not .html, e.g. {non_html[:3]}")
        if set(plain) != set(files):
            diff = sorted(set(plain) ^ set(files))
            print(
                f"  note: plain fnmatch ('*' crossing '/') would select {len(plain)} files; "
                f"differs on {diff[:5]}"
            )

    for p in problems:
        print("PROBLEM:", p)
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
