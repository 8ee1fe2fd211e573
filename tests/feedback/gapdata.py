"""300 questions for the content-gap tests, stored as real interaction records and votes.

Six planted topics the test handbook (tests/conftest.py `DOCS`: VPN, leave, per diem, deploys)
does not cover, each asked in many phrasings and answered with an abstention or a 👎; mixed with
answerable questions about the handbook, mostly 👍 or unvoted, a few 👎 (noise a report must
keep below the planted topics). Spread over six weeks, two platforms and several channels.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from feedback.schema import InteractionRecord, VoteRecord
from feedback.store import SessionFactory, record_interaction, record_vote
from knowledge.answer import ABSTAIN_TEXT, Answer, RetrievedChunk, Timings

PLANTED: dict[str, list[str]] = {
    "parking": [
        "How do I get a parking permit for the office garage?",
        "Where can employees park their cars at the office?",
        "Is there free parking for staff near the building?",
        "How do I register my car for the company car park?",
        "Can I reserve a parking spot in the garage?",
        "Who hands out the parking passes for the garage?",
        "Do we pay for parking at the head office?",
        "Is there a waiting list for a garage parking space?",
    ],
    "printer": [
        "How do I connect my laptop to the office printer?",
        "The printer on the third floor is jammed, who fixes it?",
        "How can I print in colour on the office printers?",
        "Which driver do I need for the printers?",
        "Why does my print job never come out of the printer?",
        "How do I scan a document to email on the printer?",
        "Where is the nearest printer to the kitchen?",
        "How do I add the office printer on a Mac?",
    ],
    "gym": [
        "Does the company pay for a gym membership?",
        "Is there a fitness or wellness allowance for sports?",
        "Can I expense my yoga classes under the wellness budget?",
        "How much is the yearly gym subsidy?",
        "Do we get discounts at local fitness clubs?",
        "Is there a company gym in the building?",
        "How do I claim my gym membership reimbursement?",
        "Are sports club fees covered by the wellness benefit?",
    ],
    "pets": [
        "Can I bring my dog to the office?",
        "Is the office pet friendly?",
        "Are dogs allowed at work on Fridays?",
        "What are the rules for bringing pets to work?",
        "Can my cat come to the office with me?",
        "Is there a policy on dogs in the office?",
        "Do I need permission to bring my puppy to work?",
        "Which floors allow dogs?",
    ],
    "visa": [
        "Does the company sponsor work visas?",
        "How do I apply for visa sponsorship to relocate?",
        "Will Lore Inc pay for my work permit renewal?",
        "Who handles immigration paperwork for new hires?",
        "Can you sponsor an H-1B visa for me?",
        "What documents do I need for my work visa application?",
        "Do we help with relocation and residence permits?",
        "How long does the visa sponsorship process take?",
    ],
    "retirement": [
        "Does the company match 401k contributions?",
        "How do I enrol in the retirement savings plan?",
        "What is the pension contribution percentage?",
        "When does the 401k match vest?",
        "How do I change my retirement plan contribution?",
        "Who manages our pension fund?",
        "Can I roll over my old 401k into the company plan?",
        "Is there an employer contribution to the pension?",
    ],
}
ANSWERABLE = [
    "How do I install the VPN?",
    "Which app do I use for the VPN on my laptop?",
    "Is split tunnelling allowed on the VPN?",
    "How many days of paid leave do I get?",
    "Can unused leave days carry over to next year?",
    "What is the per diem in New York?",
    "How much is the per diem in other US cities?",
    "When do production deploys happen?",
    "Can I deploy on a Friday?",
    "Who approves Friday deploys?",
]
PREFIXES = ["", "Hi, ", "Quick question: ", "Does anyone know: ", "Hey Lore, ", "Sorry if asked before, "]
PLANTED_PER_TOPIC = 35  # 6 x 35 = 210 gap questions
ANSWERABLE_COUNT = 90  # 300 questions in all
ANSWERABLE_DOWN = 8  # answerable questions that still got a 👎 (noise)
CHANNELS = {"slack": ["C0HELP", "C0ENG"], "discord": ["111111111", "222222222"]}
WORKSPACES = {"slack": "T0LORE", "discord": "999999999"}


def _chunk(source: str, title: str, path: str, score: float) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=f"{path}#0",
        doc_id=f"{source}:{path}",
        source=source,
        path=path,
        title=title,
        url=f"https://wiki.example/hb/{path}",
        text=f"{title}.",
        score=score,
        dense_score=score,
        doc_hash="h0",
    )


def seed(sessions: SessionFactory, *, now: datetime | None = None, seed: int = 21) -> dict[str, Any]:
    """Store the 300 questions; return {"planted": {topic: [answer ids]}, "answerable": [...],
    "down_answerable": [...]} for the assertions."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {"planted": {}, "answerable": [], "down_answerable": []}

    def store(question: str, *, abstained: bool, vote: str | None, chunk: RetrievedChunk) -> str:
        platform = rng.choice(["slack", "discord"])
        created = now - timedelta(days=rng.uniform(0, 41), minutes=rng.uniform(0, 600))
        answer = Answer(
            question=question,
            text=ABSTAIN_TEXT if abstained else "Here is what the handbook says [1].",
            abstained=abstained,
            chunks=[chunk],
            model="extractive",
            prompt_version="v1",
            timings=Timings(retrieve_ms=20, generate_ms=5, total_ms=rng.uniform(40, 900)),
        )
        record_interaction(
            sessions,
            InteractionRecord(
                answer=answer,
                correlation_id=answer.answer_id,
                platform=platform,
                workspace=WORKSPACES[platform],
                channel=rng.choice(CHANNELS[platform]),
                thread=f"{created.timestamp():.6f}",  # asked in the channel, answered in a thread
                user_hash=f"user{rng.randrange(40)}",
                created_at=created,
            ),
        )
        if vote:
            record_vote(
                sessions,
                VoteRecord(
                    answer_id=answer.answer_id,
                    user_hash="voter",
                    platform=platform,
                    value=vote,  # type: ignore[arg-type]
                    created_at=created + timedelta(minutes=1),
                ),
            )
        return answer.answer_id

    far = _chunk("handbook", "Leave", "hr/leave.md", 0.12)
    for topic, phrasings in PLANTED.items():
        ids = []
        for i in range(PLANTED_PER_TOPIC):
            question = rng.choice(PREFIXES) + phrasings[i % len(phrasings)]
            abstained = rng.random() < 0.7
            ids.append(store(question, abstained=abstained, vote=None if abstained else "down", chunk=far))
        out["planted"][topic] = ids
    for i in range(ANSWERABLE_COUNT):
        question = rng.choice(PREFIXES) + ANSWERABLE[i % len(ANSWERABLE)]
        near = _chunk("handbook", "VPN", "it/vpn.md", 0.7)
        if i < ANSWERABLE_DOWN:
            out["down_answerable"].append(store(question, abstained=False, vote="down", chunk=near))
        else:
            vote = "up" if rng.random() < 0.6 else None
            out["answerable"].append(store(question, abstained=False, vote=vote, chunk=near))
    return out


def topic_of(question: str) -> str | None:
    for topic, phrasings in PLANTED.items():
        if any(question.endswith(p) for p in phrasings):
            return topic
    return None
