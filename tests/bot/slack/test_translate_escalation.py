""" "Ask an expert" translation for Slack, pure, on recorded payloads (tests/emulators/payloads/slack/)."""

from __future__ import annotations

from bot.core.messages import AnswerReply, ExpertRequest, ExpertsAsked, Ignored
from bot.slack import translate
from knowledge.answer import Answer, Citation
from tests.emulators.slack import load_payload

ANSWER_ID = "5f0c2a9e7b1d4c3e8a6f9b2d1c0e7a45"


def answer(**kw) -> Answer:
    fields = {
        "answer_id": ANSWER_ID,
        "question": "how do I set up the VPN?",
        "text": "Install **WireGuard** from Self Service [1].",
        "abstained": False,
        "model": "extractive",
        "prompt_version": "v3",
        "citations": [
            Citation(
                n=1,
                title="VPN",
                url="https://wiki.example/vpn",
                source="it",
                path="vpn.md",
                doc_id="d",
                score=1,
            )
        ],
    }
    return Answer(**(fields | kw))


def test_a_recorded_reaction_added_event():
    reaction = translate.reaction_from_event(load_payload("reaction_added"))
    assert reaction == translate.Reaction(
        "U03E8A2KQ5T", "C05RK8T1B9D", "1718031277.118409", "white_check_mark"
    )


def test_skin_tones_and_non_messages():
    body = load_payload("reaction_added")
    body["event"]["reaction"] = "white_check_mark::skin-tone-3"
    assert translate.reaction_from_event(body).emoji == "white_check_mark"
    body["event"]["item"] = {"type": "file", "file": "F1"}
    assert isinstance(translate.reaction_from_event(body), Ignored)
    assert isinstance(translate.reaction_from_event(load_payload("app_mention")), Ignored)


def test_the_button_sits_with_the_others_and_only_when_offered():
    _, blocks = translate.render(AnswerReply(answer(), "x", ask_expert=True))
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [e["value"] for e in actions["elements"]] == [
        f"fb:up:{ANSWER_ID}",
        f"fb:down:{ANSWER_ID}",
        f"expert:{ANSWER_ID}",
    ]
    assert actions["elements"][-1]["action_id"] == translate.ACTION_EXPERT
    _, plain = translate.render(AnswerReply(answer(), "x"))
    assert "expert:" not in str(plain)


def test_targets_render_as_slack_mentions_from_ids_only():
    assert translate.target_mention("slack:group:S0EXP") == "<!subteam^S0EXP>"
    assert translate.target_mention("slack:channel:C0HELP") == "<#C0HELP>"
    assert translate.target_mention("slack:group:<!here>") == "slack:group:&lt;!here&gt;"


def test_the_request_escapes_the_askers_words_and_links_the_thread():
    request = ExpertRequest(
        "slack:group:S0EXP",
        "<!channel> @here how do I <https://evil.example|log in>?",
        asker="U03E8A2KQ5T",
        answer=answer(),
        link="https://acme.slack.com/archives/C1/p1718031203471239",
    )
    fallback, blocks = translate.render(request)
    text = "\n".join(b["text"]["text"] for b in blocks if b.get("text"))
    assert text.startswith("<!subteam^S0EXP>: <@U03E8A2KQ5T> asked for an expert's help")
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text and "@\u2060here" in text
    assert "&lt;https://evil.example|log in&gt;" in text
    assert "*Lore's answer*\nInstall *WireGuard* from Self Service [1]." in text
    assert "<https://acme.slack.com/archives/C1/p1718031203471239|Open the thread>" in text
    assert "<!channel>" not in fallback


def test_a_withheld_answer_and_an_abstention():
    withheld = ExpertRequest("slack:channel:C0HELP", "salary bands?", asker="U1", withheld=True)
    _, blocks = translate.render(withheld)
    assert (
        "not shown here" in str(blocks)
        and "*Lore's answer*" not in str(blocks)
        and "Open the thread" not in str(blocks)
    )
    nothing = ExpertRequest(
        "slack:channel:C0HELP", "q?", asker="U1", answer=answer(abstained=True, citations=[])
    )
    assert "found nothing in the docs" in str(translate.render(nothing)[1])


def test_the_asker_is_told_whom():
    assert translate.render(ExpertsAsked("slack:group:S0EXP"))[0].startswith("I've asked <!subteam^S0EXP>.")
    assert translate.render(ExpertsAsked("slack:group:S0EXP", already=True))[0] == (
        "Experts were already asked about this answer (<!subteam^S0EXP>)."
    )
