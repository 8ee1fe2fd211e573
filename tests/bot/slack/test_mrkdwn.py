"""Markdown -> Slack mrkdwn."""

from __future__ import annotations

import pytest

from bot.slack.mrkdwn import escape, link, to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("***both***", "*_both_*"),
        ("~~gone~~", "~gone~"),
        ("5 * 3 * 2 = 30 and snake_case_name", "5 * 3 * 2 = 30 and snake_case_name"),
        ("# Title", "*Title*"),
        ("### Sub **title** ###", "*Sub title*"),
        ("- one\n* two\n  + nested", "• one\n• two\n  • nested"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("> quoted **text**", "> quoted *text*"),
        ("---", "──────────"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("[the docs](https://w.example/a?x=1&y=2)", "<https://w.example/a?x=1&amp;y=2|the docs>"),
        ("[**bold** `label`](https://w.example/x)", "<https://w.example/x|bold label>"),
        ("[wiki](https://w.example/Foo_(bar))", "<https://w.example/Foo_(bar)|wiki>"),
        ("![diagram](https://w.example/d.png)", "<https://w.example/d.png|diagram>"),
        ("<https://auto.example/x>", "<https://auto.example/x>"),
        # Nothing an answer says may mention anyone (the text comes from documents and a model).
        ("ask <@U123> in <#C1|general> <!here>", "ask &lt;@U123&gt; in &lt;#C1|general&gt; &lt;!here&gt;"),
        (
            "<!channel> <!everyone> <!subteam^S1|@ops>",
            "&lt;!channel&gt; &lt;!everyone&gt; &lt;!subteam^S1|@ops&gt;",
        ),
        ("hi @here, @Channel and @everyone!", "hi @\u2060here, @\u2060Channel and @\u2060everyone!"),
        ("mail ops@here.example or @heretic", "mail ops@here.example or @heretic"),
        ("[<!here>](https://x.example/a)", "<https://x.example/a|&lt;!here&gt;>"),
        ("[x](https://x.example/<!channel>)", "[x](https://x.example/&lt;!channel&gt;)"),
        ("**<!here>** and `<!here>`", "*&lt;!here&gt;* and `&lt;!here&gt;`"),
        ("run `make <target> && go`", "run `make &lt;target&gt; &amp;&amp; go`"),
        ("`**not bold**`", "`**not bold**`"),
        ("escaped \\*stars\\* and \\[1\\]", "escaped *stars* and [1]"),
        ("citations [1] and [2, 3]", "citations [1] and [2, 3]"),
        ("", ""),
    ],
)
def test_inline_and_line_conversions(markdown, mrkdwn):
    assert to_mrkdwn(markdown) == mrkdwn


def test_code_fences_lose_the_language_and_keep_their_content():
    md = "Before:\n\n```python\nif a < b and x**2:\n    print('**hi**')\n```\n\nAfter **bold**."
    assert to_mrkdwn(md) == (
        "Before:\n\n```\nif a &lt; b and x**2:\n    print('**hi**')\n```\n\nAfter *bold*."
    )


def test_an_unclosed_fence_is_closed_so_it_cannot_swallow_the_message():
    assert to_mrkdwn("```\ncode") == "```\ncode\n```"
    assert to_mrkdwn("~~~~\n```\nstill code\n~~~~\n**bold**") == "```\n```\nstill code\n```\n*bold*"


def test_code_blocks_cannot_mention_either():
    assert to_mrkdwn("```\n<!here> @everyone\n```") == "```\n&lt;!here&gt; @\u2060everyone\n```"


def test_links_cannot_break_out():
    assert link("https://x.example/a|b>c d", "t > u") == "<https://x.example/a%7Cb%3Ec%20d|t &gt; u>"
    assert link("https://x.example", "  ") == "<https://x.example|https://x.example>"
    assert escape("<&>") == "&lt;&amp;&gt;"


def test_a_typical_answer():
    md = (
        "From the docs:\n\n"
        "- Install **WireGuard** from Self Service [1]\n"
        "- Sign in with [Okta](https://okta.example) [2]"
    )
    assert to_mrkdwn(md) == (
        "From the docs:\n\n• Install *WireGuard* from Self Service [1]\n"
        "• Sign in with <https://okta.example|Okta> [2]"
    )
