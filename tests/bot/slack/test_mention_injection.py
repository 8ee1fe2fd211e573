"""Nobody gets pinged by what a document or a model says: every mention sequence Slack knows
(`<!here>`, `<!channel>`, `<!everyone>`, `<@U…>`, `<#C…>`, `<!subteam^…>`, and the bare words
`@here`, `@channel`, `@everyone`) reaches Slack escaped, in the blocks and in the notification
text, on every path an answer takes: the progress message edited into the answer, the later parts
of a long answer, `/ask` and "Share in channel". Only Lore's own "Shared by <@U…>" mentions, and
it is built from the clicking user's id. The real Bolt app over Socket Mode, the Slack emulator,
a real index; the model is a local OpenAI-compatible server that replies with poisoned text."""

from __future__ import annotations

import re
from typing import Any

from tests.bot.slack.conftest import USER, button_values, has_buttons, share_click
from tests.conftest import write
from tests.emulators.slack import Call, slash_command_payload

POISON = (
    "<!channel> <!here> <!everyone> <@U0VICTIM> <#C0SECRET|secret> <!subteam^S0ONCALL|@oncall> "
    "@channel @here @everyone"
)
PARKING = (
    f"# Parking garage {POISON}\n\n"
    f"The parking garage opens at 7am on weekdays for everyone with a badge {POISON}.\n\n"
    f"Visitors park on level two of the parking garage and ask reception for a pass {POISON}.\n"
)
SENT = ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url")
_BROADCAST = re.compile(r"(?<![\w@])@(?:here|channel|everyone)\b", re.I)


def texts(value: Any) -> list[str]:
    """Every string under a "text" key, at any depth (the fallback text, sections, contexts…)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                found.append(item)
            else:
                found += texts(item)
    elif isinstance(value, list):
        for item in value:
            found += texts(item)
    return found


def assert_nobody_is_pinged(calls: list[Call]) -> str:
    """Check every message Lore sent; returns all their text (for checks that the poison arrived)."""
    assert calls
    seen = []
    for call in calls:
        assert not call.args.get("link_names") and call.args.get("parse") != "full", call.args
        for text in texts({"text": call.args.get("text"), "blocks": call.args.get("blocks")}):
            assert "<!" not in text and "<#" not in text, (call.method, text)
            assert not re.search(r"<@(?!" + USER + r">)", text), (call.method, text)  # only "Shared by"
            assert not _BROADCAST.search(text), (call.method, text)
            seen.append(text)
    return "\n".join(seen)


def sent(lore: Any) -> list[Call]:
    return [c for c in lore.slack.calls if c.method in SENT]


async def ask_and_share(lore: Any, question: str) -> None:
    """`/ask` privately, then "Share in channel" the answer (every part of it)."""
    ask_url = lore.slack.new_response_url("ask")
    await lore.slack.send_slash_command(
        slash_command_payload("/ask", question, USER, "C1", response_url=ask_url)
    )

    def private_answer() -> Call | None:
        calls = [c for c in lore.slack.calls_to("response_url") if c.name == "ask" and has_buttons(c.args)]
        return calls[0] if calls else None

    await lore.slack.wait_until(lambda: private_answer() is not None, 30, "the /ask answer")
    answer = private_answer()
    assert answer is not None
    share = next(v for v in button_values(answer.args) if v.startswith("share:"))
    click = share_click(lore.slack, share)
    await lore.slack.send_interactive(click)
    await lore.slack.wait_until(
        lambda: any(c.args == {"delete_original": True} for c in lore.slack.calls_to("response_url")),
        30,
        "the shared answer",
    )


async def test_a_poisoned_document_pings_nobody(connect_slack, tmp_path):
    docs = tmp_path / "notices"
    write(docs, "parking.md", PARKING)
    source = {
        "name": "notices",
        "type": "directory",
        "path": str(docs),
        "url_prefix": "https://wiki.example/n/",
    }
    lore = await connect_slack(extra_sources=[source])
    assert lore.services.knowledge.sync("notices").error is None

    ts = await lore.mention("when does the parking garage open?")
    await lore.wait_answer(ts)  # the progress message, edited into the answer
    await ask_and_share(lore, "where do visitors park in the parking garage?")
    await lore.settle()

    shown = assert_nobody_is_pinged(sent(lore))
    # The poison did arrive, as text: escaped sequences and inert words, in answers and titles.
    assert "&lt;!here&gt;" in shown and "&lt;!subteam^S0ONCALL|@oncall&gt;" in shown
    assert "@\u2060everyone" in shown and "&lt;@U0VICTIM&gt;" in shown
    assert "|Parking garage &lt;!channel&gt;" in shown  # the document's title in the sources
    assert f"Shared by <@{USER}>" in shown  # Lore's own template still mentions the sharer


async def test_a_model_steered_into_mentions_pings_nobody_even_in_a_long_answer(connect_slack, fixed_llm):
    paragraph = (
        f"Install WireGuard from Self Service [1] {POISON}. "
        f"See [the guide <!here>](https://wiki.example/vpn?<!channel>) and `<!everyone>` too.\n\n"
    )
    fixed_llm.reply = paragraph * 26 + f"```\nwg-quick up wg0 {POISON}\n```\n"
    assert len(fixed_llm.reply) > 2 * 3000  # three parts in Slack
    lore = await connect_slack(llm=fixed_llm.settings())

    ts = await lore.mention("how do I set up the VPN?")
    await lore.slack.wait_until(
        lambda: any(has_buttons(m) for m in lore.posted("C1", ts)), 30, "the last part of the answer"
    )
    await ask_and_share(lore, "how do I set up the VPN?")
    await lore.settle()

    calls = sent(lore)
    shown = assert_nobody_is_pinged(calls)
    assert fixed_llm.requests == 2
    assert "&lt;!here&gt;" in shown and "@\u2060channel" in shown
    parts = [m for m in lore.posted("C1", ts)]
    assert len(parts) == 3  # the progress message (now part 1) and two new posts
    assert len([c for c in calls if c.method == "chat.postMessage" and c.args.get("thread_ts") == ts]) == 3
    shared = [c for c in lore.slack.calls_to("response_url") if c.name == "share" and c.args.get("blocks")]
    assert len(shared) == 3 and all(c.args["response_type"] == "in_channel" for c in shared)
