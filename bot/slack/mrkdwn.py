"""Markdown (what the answer engine writes) to Slack mrkdwn. Pure; no dependencies.

Slack's mrkdwn is not Markdown: bold is `*x*`, italic `_x_`, strike `~x~`, links `<url|text>`,
there are no headings or language tags on code fences, and `&`, `<`, `>` must be escaped
everywhere (inside code too). Code is copied verbatim apart from that escaping.

Everything converted here comes from documents or a model, so nothing in it may mention anyone:
Slack's control sequences (`<!here>`, `<!channel>`, `<!everyone>`, `<@U…>`, `<#C…>`,
`<!subteam^…>`) are escaped like any other `<`, and the bare words `@here`, `@channel` and
`@everyone` get an invisible word joiner after the `@`, so they stay inert even where Slack would
link names. Lore's own templates that do mention ("Shared by <@U…>") are built from ids, in
`bot.slack.translate`, never from this text.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:\s*\1){2,}\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(?=\S)")
_QUOTE = re.compile(r"^ {0,3}(?:>\s?)+")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(
    r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^()\s<>]+(?:\([^()\s]*\)[^()\s<>]*)*)>?(?:\s+\"[^\"]*\")?\s*\)"
)
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]+)>")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!~|>])")
_BOLD_ITALIC = re.compile(r"(\*\*\*|___)(?=\S)(.+?)(?<=\S)\1", re.S)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.S)
_ITALIC_STAR = re.compile(r"(?<![*\w])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HOLE = re.compile(r"\x00(\d+)\x00")
_BOLD_MARK = "\x01"

_BROADCAST = re.compile(r"(?<![\w@])@(?=(?:here|channel|everyone)\b)", re.I)
WORD_JOINER = "\u2060"  # zero-width: "@\u2060here" looks like "@here" but is no keyword

RULE = "──────────"


def escape(text: str) -> str:
    """Slack's three control characters, and the broadcast words made inert."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@" + WORD_JOINER, text)


def link_url(url: str) -> str:
    """A URL that cannot break out of `<url|text>` (Slack unescapes `&amp;` in it)."""
    url = url.strip().replace(" ", "%20").replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return url.replace("&", "&amp;")


def link(url: str, text: str) -> str:
    label = escape(text.strip()) or escape(url)
    return f"<{link_url(url)}|{label}>"


def to_mrkdwn(markdown: str) -> str:
    out: list[str] = []
    fence: str | None = None
    for line in markdown.replace("\r\n", "\n").split("\n"):
        opened = _FENCE.match(line)
        if fence is not None:
            if (
                opened
                and opened.group(1)[0] == fence[0]
                and len(opened.group(1)) >= len(fence)
                and not opened.group(2).strip()
            ):
                out.append("```")
                fence = None
            else:
                out.append(escape(line))
            continue
        if opened:
            fence = opened.group(1)
            out.append("```")  # Slack shows a language tag as code, so it is dropped
            continue
        out.append(_line(line))
    if fence is not None:
        out.append("```")  # an unclosed fence would swallow everything after it in Slack
    return "\n".join(out)


def _line(line: str) -> str:
    if _RULE.match(line):
        return RULE
    heading = _HEADING.match(line)
    if heading:
        text = _BOLD.sub(r"\2", heading.group(1))
        return f"*{_inline(text)}*" if text.strip() else ""
    quote = _QUOTE.match(line)
    if quote:
        return "> " + _inline(line[quote.end() :])
    bullet = _BULLET.match(line)
    if bullet:
        return f"{bullet.group(1)}• {_inline(line[bullet.end() :])}"
    return _inline(line)


def _inline(text: str) -> str:
    holes: list[str] = []  # rendered pieces, put back after the rest is converted and escaped
    plain: list[str] = []  # the same pieces as plain text, for link labels

    def hole(rendered: str, raw: str) -> str:
        holes.append(rendered)
        plain.append(raw)
        return f"\x00{len(holes) - 1}\x00"

    def code(m: re.Match[str]) -> str:
        body = m.group(2).strip() or m.group(2)
        return hole(f"`{escape(body)}`", body)

    def label(m: re.Match[str]) -> str:
        text = _HOLE.sub(lambda h: plain[int(h.group(1))], m.group(1))
        return hole(link(m.group(2), _plain_label(text) or m.group(2)), text)

    text = _ESCAPED.sub(lambda m: hole(escape(m.group(1)), m.group(1)), text)
    text = _CODE_SPAN.sub(code, text)
    text = _LINK.sub(label, text)
    text = _AUTOLINK.sub(lambda m: hole(f"<{link_url(m.group(1))}>", m.group(1)), text)
    text = _BOLD_ITALIC.sub(lambda m: f"{_BOLD_MARK}_{m.group(2)}_{_BOLD_MARK}", text)
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(2)}{_BOLD_MARK}", text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = escape(text).replace(_BOLD_MARK, "*")
    return _HOLE.sub(lambda m: holes[int(m.group(1))], text)


def _plain_label(label: str) -> str:
    """Link text without Markdown emphasis (Slack cannot format inside a link label)."""
    label = _CODE_SPAN.sub(lambda m: m.group(2), label)
    label = _BOLD.sub(r"\2", label)
    return re.sub(r"(?<!\w)[*_~]+|[*_~]+(?!\w)", "", label).strip()
