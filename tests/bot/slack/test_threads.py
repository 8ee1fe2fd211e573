"""Threads Lore never joined, "Summarize this thread", and files with a question: the real Bolt
app over Socket Mode against the emulator, the real Knowledge (extractive, or an LLM served by
the local OpenAI-compatible emulator)."""

from __future__ import annotations

import json
import re

from tests.bot.slack.conftest import USER, block_texts, button_values
from tests.conftest import wait_for
from tests.emulators.slack import BOT_USER_ID, app_mention_event, message_shortcut_payload

VPN_THREAD = [
    ("U2", "How do I set up the VPN on my new laptop?"),
    (USER, "no idea, I've always been in the office"),
    ("U2", "ok, anyone else?"),
]


def preload(lore, thread, channel="C1"):
    """A thread people had before Lore was there: [(user, text)], the first one the parent."""
    stamps = [lore.next_ts() for _ in thread]
    lore.slack.preload_thread(
        channel,
        stamps[0],
        [
            {"user": u, "text": t, "ts": ts, "team": "T0LORE"}
            for (u, t), ts in zip(thread, stamps, strict=True)
        ],
    )
    return stamps


def response_texts(lore, name):
    return [block_texts(c.args) for c in lore.slack.calls_to("response_url") if c.name == name]


async def test_a_mention_mid_thread_answers_the_threads_opening_question(connect_slack):
    lore = await connect_slack()
    stamps = preload(lore, VPN_THREAD)
    ts = await lore.mention("any idea?", thread_ts=stamps[0])
    answer = await lore.wait_answer(stamps[0])
    text = block_texts(answer.args)
    assert "WireGuard" in text and "vpn.md" in text  # the thread's question, not "any idea?"
    answer_id = button_values(answer.args)[0].split(":")[2]
    row = await wait_for(lambda: lore.interaction(answer_id), what="the interaction row")
    assert row.question.startswith("How do I set up the VPN on my new laptop?")
    assert row.thread == stamps[0] and ts != stamps[0]
    # The whole thread was read from its start.
    [replies] = lore.slack.calls_to("conversations.replies")[:1]
    assert replies.args["ts"] == stamps[0]


async def test_a_mention_mid_thread_with_its_own_follow_up_adds_it_to_the_question(connect_slack):
    lore = await connect_slack()
    thread = [("U2", "How many days of paid leave do we get a year?"), (USER, "good question")]
    stamps = preload(lore, thread)
    await lore.mention("and how many of them carry over?", thread_ts=stamps[0])
    answer = await lore.wait_answer(stamps[0])
    assert "carry over" in block_texts(answer.args)
    answer_id = button_values(answer.args)[0].split(":")[2]
    row = await wait_for(lambda: lore.interaction(answer_id), what="the interaction row")
    assert "paid leave" in row.question and "carry over" in row.question


async def summarize(lore, message_ts, channel="C1", name="summary"):
    message = next(m for m in lore.slack.messages[channel] if m["ts"] == message_ts)
    url = lore.slack.new_response_url(name)
    payload = message_shortcut_payload("lore_summarize", message, USER, channel, response_url=url)
    envelope = await lore.slack.send_interactive(payload)
    ack = await lore.slack.wait_for_ack(envelope)
    assert ack.latency < 1.0
    await lore.slack.wait_until(lambda: bool(response_texts(lore, name)), 30, "the summary")
    [call] = [c for c in lore.slack.calls_to("response_url") if c.name == name]
    return call


SUMMARY_THREAD = [
    ("U2", "Deploy question: can I ship the billing fix to production on Friday?"),
    (USER, "Friday deploys need approval from the on-call lead"),
    ("U2", "who is on call this week?"),
    ("U3", "lunch is at noon today"),
    (USER, "Dana is the on-call lead, ask her to approve the Friday deploy"),
    ("U2", "thanks, I asked Dana for approval of the Friday deploy"),
]


async def test_summarize_this_thread_extractive_picks_central_messages_and_links_them(connect_slack):
    lore = await connect_slack()
    stamps = preload(lore, SUMMARY_THREAD)
    call = await summarize(lore, stamps[2])  # clicked on a reply: the whole thread
    assert call.args["response_type"] == "ephemeral"  # only the person who asked sees it
    text = block_texts(call.args)
    assert "from 6 messages" in text
    links = re.findall(r"<(https://loretest\.slack\.com/archives/C1/p\d+[^|>]*)\|#(\d)>", text)
    assert links, text
    linked = {int(n) for _url, n in links}
    assert 1 in linked and "Asked: Deploy question" in text  # the opening, always
    assert 4 not in linked  # lunch is not what the thread is about
    assert "Dana is the on-call lead" in text
    assert len(lore.slack.calls_to("chat.getPermalink")) == len(linked) <= 4


async def test_summarize_this_thread_with_an_llm_cites_messages_as_links(connect_slack, fixed_llm):
    fixed_llm.reply = "- Friday deploys need the on-call lead's approval [2]\n- Dana is on call [5]"
    lore = await connect_slack(llm=fixed_llm.settings())
    stamps = preload(lore, SUMMARY_THREAD)
    call = await summarize(lore, stamps[0])
    text = block_texts(call.args)
    assert "summary*, from 6 messages" in text
    assert f"<https://loretest.slack.com/archives/C1/p{stamps[1].replace('.', '')}" in text
    assert f"<https://loretest.slack.com/archives/C1/p{stamps[4].replace('.', '')}" in text
    [prompt] = fixed_llm.prompts
    messages = json.loads(prompt)
    assert "untrusted data" in messages[0]["content"]
    assert "<thread>\n[1] Deploy question" in messages[1]["content"]


async def test_a_summary_quoting_a_broadcast_mentions_nobody(connect_slack):
    lore = await connect_slack()
    thread = [("U2", "<!channel> the VPN is down, how do I set up WireGuard again?"), (USER, "same here")]
    stamps = preload(lore, thread)
    call = await summarize(lore, stamps[0])
    assert "<!channel>" not in json.dumps(call.args)


# ---- files --------------------------------------------------------------------------------------


async def mention_with(lore, text, files):
    ts = lore.next_ts()
    event = app_mention_event(f"<@{BOT_USER_ID}> {text}", USER, "C1", ts, files=files)
    await lore.slack.send_event(event)
    return block_texts((await lore.wait_answer(ts)).args)


async def test_a_text_file_with_the_question_is_read_for_that_answer(connect_slack):
    lore = await connect_slack()
    runbook = b"# Backups\n\nThe nightly backup window is 02:00 to 04:00 UTC; nothing else runs then.\n"
    f = lore.slack.add_file("runbook.txt", runbook, "text/plain")
    text = await mention_with(lore, "when is the backup window in this runbook?", [f])
    assert "02:00 to 04:00 UTC" in text and "runbook.txt" in text
    [download] = lore.slack.calls_to("files-pri")
    assert download.headers["Authorization"].startswith("Bearer xoxb-")
    # Never indexed: the next question doesn't know it.
    ts = await lore.mention("when is the nightly backup window?")
    assert "02:00" not in block_texts((await lore.wait_answer(ts)).args)


async def test_a_pdf_with_the_question_is_read(connect_slack):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, "Parking policy. The staff car park opens at 06:30 and closes at 22:00.")
    lore = await connect_slack()
    f = lore.slack.add_file("parking.pdf", bytes(pdf.output()), "application/pdf")
    text = await mention_with(lore, "when does the staff car park open?", [f])
    assert "06:30" in text and "parking.pdf" in text


async def test_an_image_is_refused_politely_and_the_question_still_answered(connect_slack):
    lore = await connect_slack()
    f = lore.slack.add_file("screenshot.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")
    text = await mention_with(lore, "how do I set up the VPN?", [f])
    assert "WireGuard" in text
    assert "I can't read images, so I didn't look at screenshot.png." in text
    assert not lore.slack.calls_to("files-pri")  # not even downloaded


async def test_an_oversize_file_is_refused_with_the_limit(connect_slack):
    lore = await connect_slack(chat={"attachment_max_bytes": 1000})
    f = lore.slack.add_file("huge.log", b"x" * 10, "text/plain", size=5_000_000)
    text = await mention_with(lore, "how do I set up the VPN?", [f])
    assert "huge.log (5.0 MB) is over the 1 KB I read" in text and "WireGuard" in text
    assert not lore.slack.calls_to("files-pri")


async def test_a_file_that_cannot_be_downloaded_is_said_not_a_crash(connect_slack):
    lore = await connect_slack()
    f = lore.slack.add_file("notes.txt", b"hello", "text/plain")
    lore.slack.files.clear()  # deleted before Lore got to it
    text = await mention_with(lore, "how do I set up the VPN?", [f])
    assert "I couldn't download notes.txt" in text and "WireGuard" in text


async def test_a_redelivered_shortcut_is_summarized_once_and_summaries_are_rate_limited(connect_slack):
    lore = await connect_slack(chat={"user_per_minute": 1})
    stamps = preload(lore, SUMMARY_THREAD)
    message = next(m for m in lore.slack.messages["C1"] if m["ts"] == stamps[0])
    url = lore.slack.new_response_url("once")
    payload = message_shortcut_payload("lore_summarize", message, USER, "C1", response_url=url)
    await lore.slack.send_interactive(payload)
    await lore.slack.send_interactive(payload)  # the same click again (same trigger_id)
    await lore.slack.wait_until(lambda: bool(response_texts(lore, "once")), 30, "the summary")
    await lore.settle()
    assert len(response_texts(lore, "once")) == 1
    call = await summarize(lore, stamps[0], name="again")  # a new click, over the limit
    assert "asking faster than I can keep up" in block_texts(call.args)


async def test_with_an_llm_a_mid_thread_mention_asks_the_threads_question_with_the_thread(
    connect_slack, fixed_llm
):
    fixed_llm.reply = "Install WireGuard from Self Service [1]."
    lore = await connect_slack(llm=fixed_llm.settings())
    stamps = preload(lore, VPN_THREAD)
    await lore.mention("can you help?", thread_ts=stamps[0])
    await lore.wait_answer(stamps[0])
    user = json.loads(fixed_llm.prompts[-1])[1]["content"]
    assert user.endswith("Question: How do I set up the VPN on my new laptop?")
    assert "Earlier in this conversation (context only):" in user and "no idea, I've always" in user


async def test_a_summary_where_lore_cannot_read_the_thread_says_how_to_fix_it(connect_slack):
    lore = await connect_slack()
    stamps = preload(lore, SUMMARY_THREAD)
    lore.slack.fail_next("conversations.replies", 200, error="not_in_channel")
    call = await summarize(lore, stamps[0])
    assert block_texts(call.args) == "I can't read this thread: add Lore to the channel, then try again."


async def test_an_answer_that_read_an_attachment_is_exported_only_when_asked_and_redacted(connect_slack):
    """The attachment's passages are stored with the interaction (the review shows what the answer
    used), but a dataset leaves that example out unless `--include-attachments` is given; the card
    counts it either way, and redaction still applies when it goes in."""
    from feedback.datasets.export import export_dataset
    from feedback.reviews import save_review

    lore = await connect_slack()
    runbook = (
        b"# Backups\n\nThe nightly backup window is 02:00 to 04:00 UTC; nothing else runs then.\n"
        b"Questions to ops-oncall@acme.com or +1 415 555 0134.\n"
    )
    f = lore.slack.add_file("runbook.txt", runbook, "text/plain")
    ts = lore.next_ts()
    event = app_mention_event(
        f"<@{BOT_USER_ID}> when is the backup window in this runbook?", USER, "C1", ts, files=[f]
    )
    await lore.slack.send_event(event)
    answer_id = button_values((await lore.wait_answer(ts)).args)[0].split(":")[2]
    row = await wait_for(lambda: lore.interaction(answer_id), what="the interaction row")
    assert any(c["source"] == "attachment" and "02:00" in c["text"] for c in row.chunks)
    save_review(lore.db.sessions, answer_id, action="approve", reviewer="rita", expected_version=0)

    default = export_dataset(lore.db.sessions, "sft", lore.settings)
    assert default.counts["examples"] == 0
    assert default.counts["attachments"] == {"left_out": 1, "included": 0}
    card = (default.directory / "dataset_card.md").read_text()
    assert "| attachment passages: left out (never indexed) | 1 |" in card
    assert "| include_attachments | False |" in card
    assert "02:00" not in "".join(p.read_text() for p in default.directory.glob("*.jsonl"))

    kept = export_dataset(lore.db.sessions, "sft", lore.settings, include_attachments=True)
    assert kept.counts["examples"] == 1
    assert kept.counts["attachments"] == {"left_out": 0, "included": 1}
    card = (kept.directory / "dataset_card.md").read_text()
    assert "| attachment passages: included (`--include-attachments`) | 1 |" in card
    written = "".join(p.read_text() for p in kept.directory.glob("*.jsonl"))
    assert "02:00 to 04:00 UTC" in written  # the passage is the example's context
    assert "ops-oncall@acme.com" not in written and "555 0134" not in written  # redacted
    assert kept.redactions.get("email") and kept.redactions.get("phone")
