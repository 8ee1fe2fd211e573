#!/usr/bin/env python3
"""Check an eval set under bench/evalsets/NAME against its installed corpus.

Every set is a folder with `install_corpus.sh` (installs a Debian documentation package and
prints the corpus root), `lore.toml` (one directory source over that root) and
`questions.jsonl`, one question per line:

    {"id": "git-001", "question": "...", "sources": ["path/rel/to/root.html"],
     "facts": ["literal string"], "kind": "lookup"}

Kinds are those of the held-out sets: lookup, how-to, troubleshooting, multi-hop and
not-in-corpus. A not-in-corpus question takes no sources and no facts, and names in `absent` the
salient terms it asks about (a neighbouring tool, a feature the manual lacks, the company's own
setup); each must occur in no file of the corpus. Checks:

  * keys, unique ids (`<prefix>-NNN`), known kinds;
  * answerable questions list 1-3 sources (multi-hop: at least 2) and 1-3 facts; every source
    exists and is selected by the source's include/exclude globs; every fact occurs
    (case-insensitive, whitespace-normalised) in the visible text of at least one listed source;
  * every `absent` term occurs nowhere in the corpus (whole words, case-insensitive);
  * at least 60 questions, 8 of them not-in-corpus, and every kind present.

    python bench/evalsets/check_questions.py git            # validate bench/evalsets/git
    python bench/evalsets/check_questions.py git --stats    # + size of the selection

Exits 1 when anything is wrong, 2 when the corpus is missing. Needs beautifulsoup4.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

from bs4 import BeautifulSoup
from pathspec import GitIgnoreSpec

HERE = Path(__file__).resolve().parent
KEYS = {"id", "question", "sources", "facts", "kind"}
OPTIONAL = {"absent"}
KINDS = ("lookup", "how-to", "troubleshooting", "multi-hop", "not-in-corpus")
MIN_QUESTIONS = 60
MIN_NOT_IN_CORPUS = 8


def load_source(config: Path) -> dict:
    with config.open("rb") as fh:
        sources = tomllib.load(fh).get("sources") or []
    for src in sources:
        if src.get("type") == "directory":
            return src
    raise SystemExit(f'{config}: no [[sources]] entry with type = "directory"')


def selection(root: Path, include: list[str], exclude: list[str]) -> list[str]:
    """The files Lore's directory source reads: gitignore-style include and exclude globs."""
    inc, exc = GitIgnoreSpec.from_lines(include or ["**/*"]), GitIgnoreSpec.from_lines(exclude)
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if inc.match_file(rel) and not exc.match_file(rel):
                out.append(rel)
    return out


@cache
def visible_text(path: Path) -> tuple[str, str]:
    """Lower-cased, whitespace-normalised text: elements joined with a space, and with nothing
    (so text split across inline tags, `git` + `-rebase`, matches too)."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() not in {".html", ".htm", ".xhtml"}:
        text = re.sub(r"\s+", " ", raw).strip().lower()
        return text, text
    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup.find_all(["script", "style"]):
        tag.decompose()
    body = soup.body or soup
    spaced = re.sub(r"\s+", " ", body.get_text(" ")).strip().lower()
    joined = re.sub(r"\s+", " ", body.get_text("")).strip().lower()
    return _quotes(spaced), _quotes(joined)


def _quotes(text: str) -> str:
    return text.translate(str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "\u00a0": " "}))


def fact_in(fact: str, path: Path) -> bool:
    needle = _quotes(re.sub(r"\s+", " ", fact).strip().lower())
    return any(needle in text for text in visible_text(path))


def term_anywhere(term: str, root: Path, files: list[Path]) -> list[str]:
    pattern = re.compile(rf"(?<![\w-]){re.escape(term.lower())}(?![\w-])")
    return [f.relative_to(root).as_posix() for f in files if pattern.search(visible_text(f)[0])]


def check(name: str, stats: bool) -> int:
    folder = HERE / name
    src = load_source(folder / "lore.toml")
    root = Path(src["path"])
    if not root.is_dir():
        print(f"corpus not found at {root}: run bench/evalsets/{name}/install_corpus.sh", file=sys.stderr)
        return 2
    include, exclude = list(src.get("include", ["**/*"])), list(src.get("exclude", []))
    chosen = set(selection(root, include, exclude))
    every_file = [p for p in root.rglob("*") if p.is_file()]

    problems: list[str] = []
    seen: set[str] = set()
    kinds: collections.Counter[str] = collections.Counter()
    prefix = None
    for lineno, line in enumerate((folder / "questions.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        where = f"line {lineno}"
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc})")
            continue
        if not isinstance(q, dict) or not KEYS <= set(q) <= KEYS | OPTIONAL:
            problems.append(f"{where}: keys must be {sorted(KEYS)} (+ optional {sorted(OPTIONAL)})")
            continue
        qid, sources, facts, kind = q["id"], q["sources"], q["facts"], q["kind"]
        where = f"{where} ({qid})"
        match = re.fullmatch(r"([a-z]+)-\d{3}", str(qid))
        if not match or (prefix and match.group(1) != prefix):
            problems.append(f"{where}: ids look like {prefix or 'name'}-001, one prefix per set")
        prefix = prefix or (match.group(1) if match else None)
        if qid in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(qid)
        if not str(q["question"]).strip():
            problems.append(f"{where}: empty question")
        if kind not in KINDS:
            problems.append(f"{where}: unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
        kinds[kind] += 1
        if kind == "not-in-corpus":
            absent = q.get("absent") or []
            if sources or facts:
                problems.append(f"{where}: not-in-corpus questions take no sources and no facts")
            if not absent:
                problems.append(f"{where}: name the salient terms the corpus lacks in `absent`")
            for term in absent:
                if found := term_anywhere(term, root, every_file):
                    problems.append(f"{where}: {term!r} occurs in the corpus, e.g. {found[:3]}")
            continue
        if "absent" in q:
            problems.append(f"{where}: only not-in-corpus questions take `absent`")
        low = 2 if kind == "multi-hop" else 1
        if not low <= len(sources) <= 3:
            problems.append(f"{where}: expected {low}-3 sources, got {len(sources)}")
        if not 1 <= len(facts) <= 3:
            problems.append(f"{where}: expected 1-3 facts, got {len(facts)}")
        existing = []
        for s in sources:
            if not (root / s).is_file():
                problems.append(f"{where}: source {s} does not exist under {root}")
            elif s not in chosen:
                problems.append(f"{where}: source {s} is not selected by the include/exclude globs")
            else:
                existing.append(root / s)
        for fact in facts if existing else []:
            if not any(fact_in(fact, p) for p in existing):
                problems.append(f"{where}: fact {fact!r} not found in {', '.join(sources)}")

    n = sum(kinds.values())
    if n < MIN_QUESTIONS:
        problems.append(f"only {n} questions, expected at least {MIN_QUESTIONS}")
    if kinds["not-in-corpus"] < MIN_NOT_IN_CORPUS:
        outside = kinds["not-in-corpus"]
        problems.append(f"only {outside} not-in-corpus questions, expected {MIN_NOT_IN_CORPUS}")
    problems += [f"no {k} questions" for k in KINDS if not kinds[k]]
    print(f"{name}: {n} questions: " + ", ".join(f"{k} {kinds[k]}" for k in KINDS))
    if stats:
        words = sum(len(visible_text(root / rel)[0].split()) for rel in chosen)
        print(f"selection: {len(chosen)} files, {words:,} words, ~{words // 150:,} chunks at words/150")
    for p in problems:
        print("PROBLEM:", p)
    print(f"{len(problems)} problem(s)" if problems else "ok")
    return 1 if problems else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", help="the set: a folder under bench/evalsets")
    ap.add_argument("--stats", action="store_true", help="also print the size of the selection")
    args = ap.parse_args()
    return check(args.name, args.stats)


if __name__ == "__main__":
    sys.exit(main())
