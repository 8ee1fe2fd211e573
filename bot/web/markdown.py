"""A tiny, safe Markdown renderer for answers: escape everything first, then add a few tags.

Answers and retrieved text are data. The input is HTML-escaped before any markup is added, and
the only tags produced are fixed ones (p, ul/ol/li, pre/code, strong, em, a for citation
markers), so nothing in an answer can inject markup, scripts or attributes.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_CITE = re.compile(r"\[(\d{1,3})\]")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_BULLET = re.compile(r"^\s*[-*•]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_HEADING = re.compile(r"^\s*#{1,6}\s+(.*)$")


def _link(match: re.Match[str]) -> str:
    # Both parts are already escaped; only web links become anchors, the rest stays as its text.
    text, url = match.group(1), match.group(2)
    if url.lower().startswith(("http://", "https://")):
        return f'<a href="{url}" rel="noopener noreferrer">{text}</a>'
    return text


def _inline(text: str, cite_prefix: str) -> str:
    """Inline markup on already-escaped text."""
    parts = re.split(r"(`[^`\n]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{part[1:-1]}</code>")
            continue
        part = _LINK.sub(_link, part)
        part = _BOLD.sub(r"<strong>\1</strong>", part)
        part = _ITALIC.sub(r"<em>\1</em>", part)
        if cite_prefix:
            part = _CITE.sub(rf'<a class="cite" href="#{cite_prefix}\1">[\1]</a>', part)
        out.append(part)
    return "".join(out)


def render_markdown(text: str, *, cite_prefix: str = "") -> Markup:
    """Markdown -> safe HTML. `[n]` markers link to `#<cite_prefix>n` when a prefix is given
    (the prefix must be made of safe characters: letters, digits, '-', '_')."""
    if cite_prefix and not re.fullmatch(r"[A-Za-z0-9_-]+", cite_prefix):
        raise ValueError("unsafe citation prefix")
    lines = str(escape(text.replace("\r\n", "\n"))).split("\n")
    html: list[str] = []
    para: list[str] = []
    list_kind: str | None = None
    in_code = False
    code: list[str] = []

    def flush_para() -> None:
        if para:
            html.append("<p>" + "<br>".join(_inline(p, cite_prefix) for p in para) + "</p>")
            para.clear()

    def close_list() -> None:
        nonlocal list_kind
        if list_kind:
            html.append(f"</{list_kind}>")
            list_kind = None

    for line in lines:
        if line.strip().startswith("```"):
            if in_code:
                html.append("<pre><code>" + "\n".join(code) + "</code></pre>")
                code.clear()
                in_code = False
            else:
                flush_para()
                close_list()
                in_code = True
            continue
        if in_code:
            code.append(line)
            continue
        if not line.strip():
            flush_para()
            close_list()
            continue
        bullet, numbered, heading = _BULLET.match(line), _NUMBERED.match(line), _HEADING.match(line)
        if bullet or numbered:
            flush_para()
            kind = "ul" if bullet else "ol"
            if list_kind != kind:
                close_list()
                html.append(f"<{kind}>")
                list_kind = kind
            item = (bullet or numbered).group(1)  # type: ignore[union-attr]
            html.append(f"<li>{_inline(item, cite_prefix)}</li>")
            continue
        close_list()
        if heading:
            flush_para()
            html.append(f"<p><strong>{_inline(heading.group(1), cite_prefix)}</strong></p>")
            continue
        para.append(line.strip())
    if in_code:
        html.append("<pre><code>" + "\n".join(code) + "</code></pre>")
    flush_para()
    close_list()
    return Markup("\n".join(html))  # noqa: S704 - built only from escaped text and fixed tags


_SAFE_SCHEMES = ("http://", "https://", "file://")


def safe_href(url: str) -> str | None:
    """A citation link if it is http(s) or file, else None (rendered as plain text)."""
    return url if url.lower().startswith(_SAFE_SCHEMES) else None
