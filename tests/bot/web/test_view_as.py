"""Permissions in the web chat: each person's own rights, and the admins' "view as" switch.

Real console, real conversation core and Knowledge. The role check is the console's own (the
session's user, server-side), whatever the page shows; the answers' filtering is the engine's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.bot.web.conftest import ADMIN, ADMIN_PW, REVIEWER, REVIEWER2, REVIEWER2_PW, REVIEWER_PW
from tests.conftest import write

MARKER = "CANARY-WEB-4F7"


@pytest.fixture
async def hr_lore(make_lore, tmp_path: Path):
    """The console with an extra source only group:hr (rita) may read, synced."""
    private = tmp_path / "hr-private"
    write(private, "salaries.md", f"# Salary bands\n\nThe L5 salary band is {MARKER} per year.\n")
    lore = make_lore(
        extra_sources=[
            {"name": "hr-private", "type": "directory", "path": str(private), "access": ["group:hr"]}
        ],
        groups={"hr": [f"web:{REVIEWER2}"]},
    )
    assert (await asyncio.to_thread(lore.services.knowledge.sync, "hr-private")).error is None
    lore.add_user(ADMIN, ADMIN_PW, "admin")
    lore.add_user(REVIEWER, REVIEWER_PW, "reviewer")
    lore.add_user(REVIEWER2, REVIEWER2_PW, "reviewer")
    return lore


async def test_only_admins_get_the_switch_on_the_chat_page(hr_lore):
    admin = await hr_lore.signed_in(ADMIN, ADMIN_PW)
    page = (await admin.page("/chat")).text
    assert 'id="view-as"' in page and 'list="view-as-choices"' in page
    for choice in ("public", "group:hr", f"web:{REVIEWER2}"):
        assert f'<option value="{choice}">' in page
    reviewer = await hr_lore.signed_in(REVIEWER, REVIEWER_PW)
    assert 'id="view-as"' not in (await reviewer.page("/chat")).text
    assert 'id="view-as"' not in (await hr_lore.client().page("/chat")).text


async def test_a_reviewer_or_anonymous_user_sending_view_as_is_refused_by_the_server(hr_lore):
    reviewer = await hr_lore.signed_in(REVIEWER, REVIEWER_PW)
    await reviewer.page("/chat")
    refused = await reviewer.json(
        "/api/ask", {"question": "what is the L5 salary band?", "view_as": "group:hr"}
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "status": "refused",
        "error": "Only admins can view answers as someone else. Sign in as an admin, or ask without it.",
    }
    anonymous = hr_lore.client()
    await anonymous.page("/chat")
    refused = await anonymous.json("/api/ask", {"question": "salary bands?", "view_as": f"web:{REVIEWER2}"})
    assert refused.status_code == 403 and MARKER not in refused.text
    # Without the field they are answered as usual.
    assert (await reviewer.ask("how do I set up the VPN?"))["status"] == "answered"


@pytest.mark.parametrize(
    ("view_as", "says"),
    [
        ("alice", "'alice': use slack:U…"),
        ("slack:alice", "is not a principal"),
        ("group:legal", "unknown group 'legal' (groups: hr)"),
        ("channel:slack:general", "use channel:slack:C… or channel:discord:<id>"),
    ],
)
async def test_an_invalid_principal_is_a_clear_error(hr_lore, view_as, says):
    admin = await hr_lore.signed_in(ADMIN, ADMIN_PW)
    await admin.page("/chat")
    response = await admin.json("/api/ask", {"question": "salary bands?", "view_as": view_as})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Can't view as that: ") and says in response.json()["error"]


async def test_a_view_as_answer_says_whose_view_it_is_and_never_shares_a_conversation(hr_lore):
    admin = await hr_lore.signed_in(ADMIN, ADMIN_PW)
    own = await admin.ask("how do I set up the VPN?")
    assert "view" not in own  # an admin's own view carries no note
    response = await admin.json(
        "/api/ask",
        {
            "question": "and split tunnelling?",
            "conversation": own["conversation"],
            "view_as": f"web:{REVIEWER}",
        },
    )
    assert response.status_code == 200, response.text
    viewed = response.json()
    assert viewed["view"]["as"] == f"web:{REVIEWER}" and set(viewed["view"]["audience"]) == {
        "public",
        f"web:{REVIEWER}",
    }
    assert viewed["view"]["text"].startswith(f"Viewing as web:{REVIEWER} (reads ")
    assert viewed["conversation"] != own["conversation"]  # another view: another conversation
    again = await admin.json(
        "/api/ask",
        {"question": "is it allowed?", "conversation": viewed["conversation"], "view_as": f"web:{REVIEWER}"},
    )
    assert again.json()["conversation"] == viewed["conversation"]  # the same view continues


async def test_each_person_gets_their_own_rights_and_an_admin_sees_exactly_what_they_would(hr_lore):
    question = "what is the L5 salary band?"
    rex = await hr_lore.signed_in(REVIEWER, REVIEWER_PW)
    assert MARKER not in str(await rex.ask(question))
    rita = await hr_lore.signed_in(REVIEWER2, REVIEWER2_PW)  # web:rita is in group:hr
    answered = await rita.ask(question)
    assert MARKER in answered["text"] and "Salary bands" in [s["title"] for s in answered["sources"]]
    assert MARKER not in str(await hr_lore.client().ask(question))  # anonymous: public only

    admin = await hr_lore.signed_in(ADMIN, ADMIN_PW)
    await admin.page("/chat")
    as_rex = (await admin.json("/api/ask", {"question": question, "view_as": f"web:{REVIEWER}"})).json()
    assert MARKER not in str(as_rex)
    assert as_rex["view"]["withheld"] >= 1 and "left out" in as_rex["view"]["text"]
    as_rita = (await admin.json("/api/ask", {"question": question, "view_as": f"web:{REVIEWER2}"})).json()
    assert MARKER in as_rita["text"] and "group:hr" in as_rita["view"]["audience"]
    as_group = (await admin.json("/api/ask", {"question": question, "view_as": "group:hr"})).json()
    assert MARKER in as_group["text"]
    as_channel = (
        await admin.json("/api/ask", {"question": question, "view_as": "channel:slack:C0GEN"})
    ).json()
    assert MARKER not in str(as_channel)
