"""The ids Lore puts in its buttons, the same on every platform: the answer id travels in the
button (`fb:up:<answer_id>`, `fb:down:<answer_id>`, `share:<answer_id>`, and `fb:form:<answer_id>`
for the 👎 form), so a click can be handled after any restart without remembering anything."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_ID = r"(?P<answer_id>[A-Za-z0-9_-]{1,64})"
# Regex templates (Discord's DynamicItem routes clicks by them).
VOTE_TEMPLATE = rf"fb:(?P<kind>up|down):{_ID}"
SHARE_TEMPLATE = rf"share:{_ID}"
FORM_TEMPLATE = rf"fb:form:{_ID}"


@dataclass(frozen=True)
class ButtonAction:
    kind: Literal["up", "down", "share"]
    answer_id: str


def vote_id(kind: Literal["up", "down"], answer_id: str) -> str:
    return f"fb:{kind}:{answer_id}"


def share_id(answer_id: str) -> str:
    return f"share:{answer_id}"


def form_id(answer_id: str) -> str:
    return f"fb:form:{answer_id}"


def parse_button(value: str) -> ButtonAction | None:
    """A vote or share button's id; None for anything else (other apps' buttons, junk)."""
    if vote := re.fullmatch(VOTE_TEMPLATE, value or ""):
        return ButtonAction("up" if vote["kind"] == "up" else "down", vote["answer_id"])
    if share := re.fullmatch(SHARE_TEMPLATE, value or ""):
        return ButtonAction("share", share["answer_id"])
    return None
