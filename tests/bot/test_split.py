"""`split_text`: examples, and property checks over a few thousand generated Markdown texts
(seeded, so a failure reproduces; the seed and max_len are in the assertion message)."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from bot.core.split import MIN_LEN, split_text

FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def test_short_text_is_one_part_and_blank_is_none():
    assert split_text("  hello  ", 100) == ["hello"]
    assert split_text(" \n\n ", 100) == []
    with pytest.raises(ValueError, match="at least"):
        split_text("x", MIN_LEN - 1)


def test_paragraphs_then_sentences_then_words():
    text = "First paragraph here.\n\nSecond paragraph, a bit longer than the first one.\n\nThird."
    assert split_text(text, 60) == [
        "First paragraph here.",
        "Second paragraph, a bit longer than the first one.\n\nThird.",
    ]
    long_para = "One sentence is here. Another sentence follows it. And a third one ends it."
    assert split_text(long_para, 50) == [
        "One sentence is here. Another sentence follows it.",
        "And a third one ends it.",
    ]
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    assert all(len(p) <= 32 and not p.startswith(" ") for p in split_text(words, 32))
    assert split_text("x" * 70, 32) == ["x" * 32, "x" * 32, "x" * 6]


def test_list_items_keep_their_lines():
    items = "\n".join(f"- item number {i} with some words" for i in range(10))
    parts = split_text(items, 120)
    assert all(line.startswith("- item") for part in parts for line in part.split("\n"))


def test_a_code_block_that_fits_is_never_cut():
    code = "```python\n" + "\n".join(f"print({i})" for i in range(8)) + "\n```"
    text = "Intro sentence that is long enough to matter.\n\n" + code + "\n\nOutro."
    parts = split_text(text, len(code) + 5)
    assert code in parts
    assert len(parts) == 3


def test_an_oversized_code_block_is_cut_between_lines_and_each_piece_is_fenced():
    code = "```bash\n" + "\n".join(f"echo line {i}" for i in range(40)) + "\n```"
    parts = split_text(code, 100)
    assert len(parts) > 1
    for part in parts:
        lines = part.split("\n")
        assert lines[0] == "```bash" and lines[-1] == "```" and len(part) <= 100
    body = [line for part in parts for line in part.split("\n")[1:-1]]
    assert body == [f"echo line {i}" for i in range(40)]


# ---- properties --------------------------------------------------------------------------------

WORDS = "the a VPN config leave days deploy pipeline Okta WireGuard approval kitchen printer é 😀 x".split()  # noqa: SIM905


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 25))]
    if rng.random() < 0.05:
        words.append("y" * rng.randint(40, 400))  # an unbreakable run
    return " ".join(words) + rng.choice([".", "!", "?", ":", ""])


def _code(rng: random.Random) -> str:
    marker = rng.choice(["```", "````", "~~~"])
    lang = rng.choice(["", "python", "bash"])
    lines = [
        " " * rng.randint(0, 8) + " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12)))
        for _ in range(rng.randint(0, 30))
    ]
    if rng.random() < 0.1:
        lines.append("z" * rng.randint(50, 300))
    return "\n".join([marker + lang, *lines, marker])


def _text(rng: random.Random) -> str:
    blocks = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.25:
            blocks.append(_code(rng))
        elif kind < 0.4:
            blocks.append("\n".join("- " + _sentence(rng) for _ in range(rng.randint(1, 8))))
        else:
            blocks.append(" ".join(_sentence(rng) for _ in range(rng.randint(1, 10))))
    text = "\n\n".join(blocks)
    if rng.random() < 0.05:
        text += "\n\n```\nunclosed " + _sentence(rng)
    return text


def _fence_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if FENCE_LINE.match(line)]


def _content(text: str) -> str:
    """Everything but whitespace and fence lines (which splitting may add)."""
    return re.sub(r"\s", "", "\n".join(line for line in text.split("\n") if not FENCE_LINE.match(line)))


def _code_blocks(text: str) -> list[str]:
    blocks, current = [], None
    for line in text.split("\n"):
        if current is None:
            if FENCE_LINE.match(line):
                current = [line]
        else:
            current.append(line)
            if FENCE_LINE.match(line) and line.strip() == FENCE_LINE.match(current[0]).group(1):
                blocks.append("\n".join(current))
                current = None
    return blocks


@pytest.mark.parametrize("seed", range(8))
def test_properties_on_generated_markdown(seed):
    rng = random.Random(seed)
    for case in range(250):
        text = _text(rng)
        max_len = rng.choice([MIN_LEN, 50, 80, 200, 500, 1500, 3000])
        where = f"seed={seed} case={case} max_len={max_len}"
        parts = split_text(text, max_len)
        assert parts, where
        # 1. every part fits, and none is blank or padded
        assert all(0 < len(p) <= max_len and p == p.strip() for p in parts), where
        # 2. nothing lost, nothing duplicated, order kept
        assert _content("\n".join(parts)) == _content(text), where
        # 3. every part is valid on its own: its fences pair up (an unclosed input may stay open at the end)
        unclosed_input = len(_fence_lines(text)) % 2 == 1
        for i, part in enumerate(parts):
            if not (unclosed_input and i == len(parts) - 1):
                assert len(_fence_lines(part)) % 2 == 0, (where, part)
        # 4. a code block that fits in a part is never cut
        for block in _code_blocks(text):
            if len(block) <= max_len:
                assert any(block in p for p in parts), (where, block)
        # 5. a paragraph that fits is never cut (paragraph boundaries come first)
        for para in _prose_paragraphs(text):
            if len(para) <= max_len:
                assert any(para in p for p in parts), (where, para)


def _prose_paragraphs(text: str) -> list[str]:
    """Paragraphs outside code blocks."""
    paragraphs, current, fence = [], [], None
    for line in [*text.split("\n"), ""]:
        opened = FENCE_LINE.match(line)
        if fence is not None:
            if opened and line.strip() == fence:
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            line = ""
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current).strip())
            current = []
    return paragraphs


def test_parts_are_not_needlessly_many():
    rng = random.Random(99)
    for _ in range(200):
        text = " ".join(_sentence(rng).replace("y", "w") for _ in range(rng.randint(5, 60)))
        parts = split_text(text, 300)
        # Greedy packing by sentences: the next part's first sentence did not fit into this one.
        for a, b in itertools.pairwise(parts):
            first = re.split(r"(?<=[.!?…:;])\s+", b)[0]
            assert len(a) + 1 + len(first) > 300 or len(first) > 300, (a, b)
