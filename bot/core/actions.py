"""The ids Lore puts in its buttons, the same on every platform: the answer id travels in the
button (`fb:up:<answer_id>`, `fb:down:<answer_id>`, `share:<answer_id>`, `private:<answer_id>`
for "Answer privately", `expert:<answer_id>` for "Ask an expert", and `fb:form:<answer_id>` for
the 👎 form), so a click is handled after a
restart from the id alone (Share and "Answer privately" find their answer or question in the
state store, for `chat.answer_ttl`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_ID = r"(?P<answer_id>[A-Za-z0-9_-]{1,64})"
# Regex templates (Discord's DynamicItem routes clicks by them).
VOTE_TEMPLATE = rf"fb:(?P<kind>up|down):{_ID}"
SHARE_TEMPLATE = rf"share:{_ID}"
FORM_TEMPLATE = rf"fb:form:{_ID}"
PRIVATE_TEMPLATE = rf"private:{_ID}"
EXPERT_TEMPLATE = rf"expert:{_ID}"


@dataclass(frozen=True)
class ButtonAction:
    kind: Literal["up", "down", "share", "private", "expert"]
    answer_id: str


def vote_id(kind: Literal["up", "down"], answer_id: str) -> str:
    return f"fb:{kind}:{answer_id}"


def share_id(answer_id: str) -> str:
    return f"share:{answer_id}"


def private_id(answer_id: str) -> str:
    """The "Answer privately" button: the same question, answered to the clicker with their rights."""
    return f"private:{answer_id}"


def expert_id(answer_id: str) -> str:
    """The "Ask an expert" button (bot/core/escalation.py)."""
    return f"expert:{answer_id}"


def form_id(answer_id: str) -> str:
    return f"fb:form:{answer_id}"


def parse_button(value: str) -> ButtonAction | None:
    """A vote, share or "Answer privately" button's id; None for anything else (other apps'
    buttons, junk)."""
    if vote := re.fullmatch(VOTE_TEMPLATE, value or ""):
        return ButtonAction("up" if vote["kind"] == "up" else "down", vote["answer_id"])
    if share := re.fullmatch(SHARE_TEMPLATE, value or ""):
        return ButtonAction("share", share["answer_id"])
    if private := re.fullmatch(PRIVATE_TEMPLATE, value or ""):
        return ButtonAction("private", private["answer_id"])
    if expert := re.fullmatch(EXPERT_TEMPLATE, value or ""):
        return ButtonAction("expert", expert["answer_id"])
    return None
