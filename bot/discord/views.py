"""Lore's Discord components: vote, share and "Answer privately" buttons that survive restarts,
and the 👎 form.

The buttons are `DynamicItem`s: discord.py routes a click by matching its custom_id against the
item's template (`fb:up:<answer_id>`, …), so any answer's buttons work in a fresh process, with no
per-message state. They are sent in a `View(timeout=None)`. The form's submission is handled
from its payload by the cog (`on_interaction`), so a restart between opening and submitting it
loses nothing either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol, cast

import discord

from bot.core import actions
from bot.discord import translate
from feedback.schema import VOTE_REASONS

_STYLES = {
    "primary": discord.ButtonStyle.primary,
    "secondary": discord.ButtonStyle.secondary,
    "success": discord.ButtonStyle.success,
    "danger": discord.ButtonStyle.danger,
}


class ButtonHandler(Protocol):
    """What a click is handed to (the adapter's cog)."""

    async def on_vote(
        self, interaction: discord.Interaction[Any], kind: Literal["up", "down"], answer_id: str
    ) -> None: ...

    async def on_share(self, interaction: discord.Interaction[Any], answer_id: str) -> None: ...

    async def on_answer_privately(self, interaction: discord.Interaction[Any], answer_id: str) -> None: ...

    async def on_ask_expert(self, interaction: discord.Interaction[Any], answer_id: str) -> None: ...


def handler_of(interaction: discord.Interaction[Any]) -> ButtonHandler:
    """The bot's button handler (`LoreBot.buttons`), set in `setup_hook`."""
    handler = getattr(interaction.client, "buttons", None)
    if handler is None:
        raise RuntimeError("this client has no Lore button handler")
    return cast(ButtonHandler, handler)


def _button(spec: translate.ButtonSpec) -> discord.ui.Button[discord.ui.View]:
    return discord.ui.Button(
        label=spec.label, emoji=spec.emoji, style=_STYLES[spec.style], custom_id=spec.custom_id
    )


class VoteButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=actions.VOTE_TEMPLATE):
    def __init__(self, kind: Literal["up", "down"], answer_id: str) -> None:
        up, down = translate.answer_buttons(answer_id)
        super().__init__(_button(up if kind == "up" else down))
        self.kind: Literal["up", "down"] = kind
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> VoteButton:
        return cls("up" if match["kind"] == "up" else "down", match["answer_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await handler_of(interaction).on_vote(interaction, self.kind, self.answer_id)


class ShareButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=actions.SHARE_TEMPLATE
):
    def __init__(self, answer_id: str) -> None:
        spec = translate.answer_buttons(answer_id, shareable=True)[-1]
        super().__init__(_button(spec))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ShareButton:
        return cls(match["answer_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await handler_of(interaction).on_share(interaction, self.answer_id)


class PrivateButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=actions.PRIVATE_TEMPLATE
):
    """The "Answer privately" button under a channel answer that left something out."""

    def __init__(self, answer_id: str) -> None:
        super().__init__(_button(translate.private_button(answer_id)))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> PrivateButton:
        return cls(match["answer_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await handler_of(interaction).on_answer_privately(interaction, self.answer_id)


class ExpertButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=actions.EXPERT_TEMPLATE
):
    """The "Ask an expert" button (bot/core/escalation.py)."""

    def __init__(self, answer_id: str) -> None:
        super().__init__(_button(translate.expert_button(answer_id)))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ExpertButton:
        return cls(match["answer_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await handler_of(interaction).on_ask_expert(interaction, self.answer_id)


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    VoteButton,
    ShareButton,
    PrivateButton,
    ExpertButton,
)


def view_for(buttons: Sequence[translate.ButtonSpec]) -> discord.ui.View | None:
    """A persistent view (`timeout=None`) of the rendered buttons; None when there are none."""
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for spec in buttons:
        action = actions.parse_button(spec.custom_id)
        item: discord.ui.Item[Any]
        if action is None:
            item = _button(spec)  # not a Lore action; rendered but routed nowhere
        elif action.kind == "share":
            item = ShareButton(action.answer_id)
        elif action.kind == "private":
            item = PrivateButton(action.answer_id)
        elif action.kind == "expert":
            item = ExpertButton(action.answer_id)
        else:
            item = VoteButton(action.kind, action.answer_id)
        view.add_item(item)
    return view


class FeedbackModal(discord.ui.Modal):
    """The 👎 form: why the answer was wrong (one of `VOTE_REASONS`) and, optionally, the right
    answer. Submissions are handled from the payload (see the module docstring), not here."""

    def __init__(self, answer_id: str, *, timeout: float | None = 900) -> None:
        custom_id = actions.form_id(answer_id)
        super().__init__(title="Answer feedback", custom_id=custom_id, timeout=timeout)
        self.reason: discord.ui.Select[discord.ui.View] = discord.ui.Select(
            custom_id=translate.REASON_ID,
            placeholder="Pick the closest reason",
            options=[discord.SelectOption(label=label, value=value) for value, label in VOTE_REASONS.items()],
            min_values=1,
            max_values=1,
            required=True,
        )
        self.correction: discord.ui.TextInput[discord.ui.View] = discord.ui.TextInput(
            custom_id=translate.CORRECTION_ID,
            style=discord.TextStyle.long,
            required=False,
            max_length=translate.CORRECTION_MAX,
            placeholder="Optional",
        )
        self.add_item(discord.ui.Label(text="What was wrong with the answer?", component=self.reason))
        self.add_item(discord.ui.Label(text="What would the right answer be?", component=self.correction))

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Nothing: `LoreCog.on_interaction` records every Lore form, registered here or not."""
