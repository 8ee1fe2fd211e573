"""`[escalation]` in lore.toml: routes and the default, and errors that name the line."""

from __future__ import annotations

import textwrap

import pytest

from bot.core.escalation import ExpertRouter
from config.loader import ConfigError, load_settings

SOURCES = """
[[sources]]
name = "handbook"
type = "directory"
path = "docs"

[[sources]]
name = "hr"
type = "directory"
path = "docs"
"""


def _load(tmp_path, body: str):
    path = tmp_path / "lore.toml"
    path.write_text(SOURCES + textwrap.dedent(body), encoding="utf-8")
    (tmp_path / "docs").mkdir(exist_ok=True)
    return load_settings(path)


def test_routes_by_cited_source_then_channel_then_default(tmp_path):
    settings = _load(
        tmp_path,
        """
        [escalation]
        default = { slack = "slack:channel:C0HELP", discord = "discord:role:140000000000000020" }

        [[escalation.routes]]
        sources = ["hr"]
        slack = "slack:group:S0HR"

        [[escalation.routes]]
        channels = ["slack:C0ENG", "discord:140000000000000002"]
        slack = "slack:channel:C0ENGHELP"
        discord = "discord:channel:140000000000000022"
        """,
    )
    router = ExpertRouter(settings.escalation)
    assert router.enabled("slack") and router.enabled("discord") and not router.enabled("web")
    assert router.route("slack", "C0ENG", ["handbook", "hr"]).routed_by == "source:hr"
    assert router.route("slack", "C0ENG", ["hr"]).target == "slack:group:S0HR"
    assert router.route("slack", "C0ENG", ["handbook"]).target == "slack:channel:C0ENGHELP"
    assert router.route("discord", "140000000000000002", ["hr"]).routed_by == "channel"  # no Discord HR route
    assert router.route("slack", "C9", []).routed_by == "default"


def test_without_a_default_an_unrouted_question_has_no_experts(tmp_path):
    settings = _load(tmp_path, '[[escalation.routes]]\nsources = ["hr"]\nslack = "slack:group:S0HR"\n')
    router = ExpertRouter(settings.escalation)
    assert router.route("slack", "C1", ["handbook"]) is None and not router.enabled("discord")


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ('[escalation]\ndefault = { slack = "discord:role:1234567" }\n', 12, "is not a slack expert target"),
        ('[escalation.default]\ndiscord = "discord:user:1234567"\n', 12, "is not a discord expert target"),
        ('[[escalation.routes]]\nslack = "slack:group:S0HR"\n', 11, "needs sources = [...] or channels"),
        ('[[escalation.routes]]\nsources = ["hr"]\n', 11, "needs an expert target"),
        (
            '[[escalation.routes]]\nsources = ["hr"]\nslack = "slack:group:S0HR"\n\n'
            '[[escalation.routes]]\nsources = ["wiki"]\nslack = "slack:group:S0HR"\n',
            16,
            "unknown source 'wiki' (sources: handbook, hr)",
        ),
        (
            '[[escalation.routes]]\nchannels = ["C0ENG"]\nslack = "slack:group:S0X"\n',
            12,
            "should match pattern",
        ),
    ],
)
def test_mistakes_name_the_setting_and_its_line(tmp_path, body, line, message):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, body)
    text = str(caught.value)
    assert message in text and f"lore.toml, line {line})" in text, text
