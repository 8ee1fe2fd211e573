"""The access policy: document labels from rules, and the audiences people and channels get."""

from __future__ import annotations

import pytest

from config.settings import Settings
from knowledge.access import PUBLIC, PUBLIC_AUDIENCE, AccessPolicy, Audience


def _policy() -> AccessPolicy:
    return AccessPolicy(
        Settings(
            sources=[
                {"name": "wiki", "type": "directory", "path": "/tmp/wiki"},
                {
                    "name": "people",
                    "type": "directory",
                    "path": "/tmp/people",
                    "access": ["group:hr"],
                    "access_rules": [
                        {"glob": "handbook/**", "access": ["public"]},
                        {"glob": "*.md", "access": ["group:finance", "channel:slack:C0FIN"]},
                        {"glob": "payroll/**", "access": ["group:hr"]},
                    ],
                },
            ],
            groups={
                "hr": ["slack:U0HR1", "slack:group:S0HR", "email:*@hr.acme.com"],
                "finance": ["discord:111111", "discord:role:222222", "web:carol"],
            },
        )
    )


def test_a_source_without_rules_is_public():
    assert _policy().document_access("wiki", "anything/at/all.md") == [PUBLIC]


def test_the_first_matching_rule_wins_and_the_source_default_covers_the_rest():
    policy = _policy()
    assert policy.document_access("people", "handbook/leave.md") == [PUBLIC]
    # gitignore-style: "*.md" matches at any depth, so it wins over the later payroll rule
    assert policy.document_access("people", "payroll/2026.md") == ["channel:slack:C0FIN", "group:finance"]
    assert policy.document_access("people", "payroll/2026.csv") == ["group:hr"]
    assert policy.document_access("people", "reviews/bob.pdf") == ["group:hr"]


def test_rules_that_match_nothing_are_reported():
    assert _policy().unmatched_rules("people", ["handbook/a.md", "x.pdf"]) == ["payroll/**"]
    assert _policy().unmatched_rules("wiki", ["a.md"]) == []


def test_a_person_gets_their_principals_and_their_groups():
    policy = _policy()
    alice = policy.person(["slack:U0ALICE", "slack:group:S0HR"])
    assert alice.grants == {PUBLIC, "slack:U0ALICE", "slack:group:S0HR", "group:hr"}
    by_email = policy.person(["slack:U0BOB", "email:Bob@HR.acme.com"])
    assert "group:hr" in by_email.grants
    outsider = policy.person(["slack:U0EVE", "email:eve@acme.com.evil.example"])
    assert outsider.grants == {PUBLIC, "slack:U0EVE", "email:eve@acme.com.evil.example"}
    assert "group:finance" in policy.person(["discord:999999", "discord:role:222222"]).grants


def test_a_channel_audience_ignores_the_asker():
    channel = _policy().channel("slack", "C0FIN")
    assert channel.grants == {PUBLIC, "channel:slack:C0FIN"}
    assert channel.can_read(["channel:slack:C0FIN", "group:finance"])
    assert not channel.can_read(["group:finance"])


def test_audience_keys_depend_on_grants_only():
    a = Audience(frozenset({"public", "group:hr"}), "one")
    b = Audience(frozenset({"group:hr", "public"}), "two")
    assert a.key == b.key and a == b
    assert a.key != PUBLIC_AUDIENCE.key


def test_as_principal_for_admins():
    policy = _policy()
    assert policy.principal("group:hr").grants == {PUBLIC, "group:hr"}
    assert policy.principal("channel:slack:C0FIN").grants == {PUBLIC, "channel:slack:C0FIN"}
    assert "group:finance" in policy.principal("web:carol").grants
    assert policy.principal("public") == PUBLIC_AUDIENCE
    with pytest.raises(ValueError, match="unknown group 'legal'"):
        policy.principal("group:legal")
    with pytest.raises(ValueError, match="use slack:U"):
        policy.principal("alice")


def test_the_summary_says_what_lore_sources_shows():
    policy = _policy()
    assert policy.summary("wiki") == "public"
    assert policy.summary("people") == "group:hr; 3 rules"
    assert policy.restricted
