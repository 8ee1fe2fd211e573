"""Answers as safe HTML: markdown-it-py (CommonMark, plus tables and strikethrough) with raw HTML
off, and citation markers linked after parsing.

Answers and retrieved text are data. So: raw HTML is escaped, never passed through; a link keeps
its target only for http, https, mailto or a relative URL (anything else, `javascript:` included,
stays literal text); images are off (no remote image can load from an answer) and so are
reference definitions (an answer cannot define `[1]: …` and turn its own citation markers into
links). `[n]` markers become `<a class="cite" href="#<prefix>n">` on text nodes only, after
parsing, so a marker inside a link's URL or text, or inside code, is left alone.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

_CITE = re.compile(r"\[(\d{1,3})\]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_LINK_SCHEMES = {"http", "https", "mailto"}
_PREFIX = re.compile(r"[A-Za-z0-9_-]+")


def allowed_link(url: str) -> bool:
    """http, https and mailto links, and relative ones; nothing else (javascript:, data:, file:…)."""
    scheme = _SCHEME.match(url.strip())
    return scheme is None or scheme.group(1).lower() in _LINK_SCHEMES


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _cite(number: str, prefix: str) -> list[Token]:
    opening = Token("link_open", "a", 1)
    opening.attrs = {"class": "cite", "href": f"#{prefix}{number}"}
    return [opening, _text(f"[{number}]"), Token("link_close", "a", -1)]


def _links_and_citations(state: StateCore) -> None:
    """Give links `rel="noopener noreferrer"`, and link `[n]` in text outside links."""
    prefix = state.env.get("cite_prefix", "")
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children: list[Token] = []
        in_link = 0
        for token in block.children:
            if token.type == "link_open":
                in_link += 1
                token.attrSet("rel", "noopener noreferrer")
            elif token.type == "link_close":
                in_link -= 1
            if token.type != "text" or in_link or not prefix or not _CITE.search(token.content):
                children.append(token)
                continue
            at = 0
            for marker in _CITE.finditer(token.content):
                if marker.start() > at:
                    children.append(_text(token.content[at : marker.start()]))
                children.extend(_cite(marker.group(1), prefix))
                at = marker.end()
            if at < len(token.content):
                children.append(_text(token.content[at:]))
        block.children = children


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable(["image", "reference"])
    md.validateLink = allowed_link  # type: ignore[method-assign]
    md.core.ruler.after("text_join", "lore_links_and_citations", _links_and_citations)
    # A heading inside an answer is emphasis, not a title bigger than the page's own.
    md.add_render_rule("heading_open", lambda *_args: "<p><strong>")
    md.add_render_rule("heading_close", lambda *_args: "</strong></p>\n")
    return md


_MD = _parser()


def render_markdown(text: str, *, cite_prefix: str = "") -> Markup:
    """Markdown -> safe HTML. `[n]` markers link to `#<cite_prefix>n` when a prefix is given
    (the prefix must be made of safe characters: letters, digits, '-', '_')."""
    if cite_prefix and not _PREFIX.fullmatch(cite_prefix):
        raise ValueError("unsafe citation prefix")
    html = _MD.render(text, {"cite_prefix": cite_prefix})
    return Markup(html)  # noqa: S704 - markdown-it escapes all text and attributes; raw HTML is off


_SAFE_SCHEMES = ("http://", "https://", "file://")


def safe_href(url: str) -> str | None:
    """A citation link if it is http(s) or file, else None (rendered as plain text)."""
    return url if url.lower().startswith(_SAFE_SCHEMES) else None
