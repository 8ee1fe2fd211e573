"""`[[slack.auto_answer]]` and `[[discord.auto_answer]]` in lore.toml: valid entries load; a bad
channel id, a bad on_unsure, a channel listed twice or outside the allowlist fail at start-up,
naming the setting and its line."""

from __future__ import annotations

import textwrap

import pytest

from config.loader import ConfigError, load_settings


def _load(tmp_path, body: str):
    path = tmp_path / "lore.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return load_settings(path)


def test_valid_auto_answer_channels_load(tmp_path):
    settings = _load(
        tmp_path,
        """
        [[slack.auto_answer]]
        channel = "C0HELP42"

        [[slack.auto_answer]]
        channel = "G0PRIVATE1"
        on_unsure = "offer"
        user_per_hour = 2
        delay = 30

        [[discord.auto_answer]]
        channel = 1249736999999999999   # a forum: ids may be written as numbers
        min_confidence = 0.6
        """,
    )
    first, second = settings.slack.auto_answer
    assert (first.channel, first.on_unsure, first.channel_per_hour, first.user_per_hour) == (
        "C0HELP42",
        "silent",
        20,
        3,
    )
    assert (second.on_unsure, second.user_per_hour, second.delay) == ("offer", 2, 30)
    [forum] = settings.discord.auto_answer
    assert forum.channel == "1249736999999999999" and forum.min_confidence == 0.6


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        (
            '[[slack.auto_answer]]\nchannel = "#it-help"\n',
            "slack.auto_answer.0.channel",
            "should match pattern",
        ),
        (
            '[[slack.auto_answer]]\nchannel = "C0HELP42"\non_unsure = "shrug"\n',
            "slack.auto_answer.0.on_unsure",
            "'silent' or 'offer'",
        ),
        (
            '[[discord.auto_answer]]\nchannel = "help-forum"\n',
            "discord.auto_answer.0.channel",
            "should match pattern",
        ),
        (
            '[[slack.auto_answer]]\nchannel = "C0HELP42"\nuser_per_hour = 0\n',
            "slack.auto_answer.0.user_per_hour",
            "greater than or equal to 1",
        ),
        (
            '[[slack.auto_answer]]\nchannel = "C0HELP42"\nthrottle = 3\n',
            "slack.auto_answer.0.throttle",
            "Extra inputs",
        ),
    ],
)
def test_a_bad_entry_names_its_setting_and_line(tmp_path, body, where, says):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "# help channels\n\n" + body)
    message = str(err.value)
    assert where in message and says in message, message
    assert "lore.toml, line " in message


def test_a_channel_twice_or_outside_the_allowlist_is_refused_with_its_line(tmp_path):
    body = """
    [slack]
    channels = ["C0HELP42"]

    [[slack.auto_answer]]
    channel = "C0HELP42"

    [[slack.auto_answer]]
    channel = "C0HELP42"

    [[slack.auto_answer]]
    channel = "C0OTHER9"
    """
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, body)
    lines = str(err.value).splitlines()
    [twice] = [line for line in lines if "listed twice" in line]
    assert "slack.auto_answer.1.channel" in twice and "line 9" in twice
    [outside] = [line for line in lines if "not in slack.channels" in line]
    assert "slack.auto_answer.2.channel" in outside and "line 12" in outside
