"""HTML to Markdown that keeps a manual's own structure, for the Markdown-aware chunker.

Reference manuals put their sections in headings, definition lists (one `<dt>` per option,
parameter or function), tables and code blocks. A main-text extractor built for news pages
(trafilatura) dropped most of those headings, so chunks lost the heading path that
`chunking.embed_headings` puts in front of the embedded text. Here the page is cleaned with
BeautifulSoup and converted with markdownify:

- navigation chrome goes: scripts and styles, `<nav>`, `<aside>`, site headers and footers,
  menus, breadcrumbs, tables of contents and sidebars (by tag, ARIA role, or class/id name),
  and heading permalinks (the "¶" after a Sphinx heading);
- the main element (`<main>`, `role="main"`, a single `<article>`) is kept if there is one;
- headings become ATX headings (`## …`);
- definition lists: where a page's definitions are long (a parameter reference: one section
  each), each term becomes a heading one level below the section it is in; otherwise the term
  is a bold lead-in of its definition (`**-a, --all**: Tell the command …`);
- data tables become GFM tables; tables used for layout (code or lists in cells) are unwrapped;
- `<pre>` becomes a fenced block, and a manual page rendered into one `<pre>` (man2html)
  becomes headings and paragraphs again;
- links and images keep their text only, and nothing is Markdown-escaped (`message_size_limit`
  stays searchable as written).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from bs4 import BeautifulSoup
from bs4.element import NavigableString, Tag
from markdownify import MarkdownConverter

# A definition list whose definitions average at least this many characters is a reference
# (postconf(5): one parameter per entry): its terms become headings. Shorter ones (command
# options) stay bold lead-ins, so a page isn't cut into one tiny chunk per option.
DT_HEADING_CHARS = 400

_DROP_TAGS = [
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed",
    "nav", "aside", "form", "button", "select", "input", "textarea", "link", "meta",
]  # fmt: skip
_CHROME_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}
# A class or id naming chrome: whole words, so "menu" matches "mainmenu" and "fancy_toc"
# but "tocsin" or "navigate-the-api" do not.
_CHROME_NAME = re.compile(
    r"(?:^|[-_\s])(?:nav|navbar|navigation|main-?menu|sub-?menu|menu|breadcrumbs?|sidebar|"
    r"sphinxsidebar|toc|skip-?link|footer|related|pagination|cookie-?banner|banner|masthead|"
    r"logo|tagline|no-?search)(?:$|[-_\s])",
    re.IGNORECASE,
)
_PERMALINKS = {"¶", "#", "§", "🔗", "\uf0c1"}
_HEADINGS = ["h1", "h2", "h3", "h4", "h5", "h6"]
_BLOCKS_IN_CELLS = ["table", "pre", "ul", "ol", "dl", "blockquote", *_HEADINGS]
_MAN_HEADING = re.compile(r"[A-Z][A-Z0-9 ,/&()'.-]*[A-Z0-9)]")
_MAN_TITLE = re.compile(r"\S+\(\w+\)(?:\s+.*)?\s+\S+\(\w+\)")  # "POSTCAT(1)   …   POSTCAT(1)"
_MAN_FOOTER = re.compile(r"\S+\(\w+\)")  # the page name again, alone on the last line
_MAN_TERM_SAME_LINE = re.compile(r"(\s*)(-\S+(?: \S+)?)\s{3,}(\S.*)")
_SOFT_HYPHEN = re.compile(r"(\w)-\n(?=[a-z])")


def html_to_markdown(html: str) -> str:
    """The page's main content as Markdown ("" when there is none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bs4 warns on XHTML ("looks like XML"); lxml reads it fine
        soup = BeautifulSoup(html, "lxml")
    _drop_chrome(soup)
    root = _main_element(soup)
    _man_pages(root, soup)
    _definition_lists(root, soup)
    _layout_tables(root)
    for quote in root.find_all("blockquote"):
        if all(isinstance(c, Tag) and c.name == "pre" for c in _children(quote)):
            quote.unwrap()  # indentation for a code example (Postfix), not a quotation
    text = _Converter().convert_soup(root)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class _Converter(MarkdownConverter):
    def __init__(self) -> None:
        super().__init__(
            heading_style="atx",
            bullets="-",
            escape_asterisks=False,
            escape_underscores=False,
            escape_misc=False,
            table_infer_header=True,
            strip_document="strip",
        )

    def convert_a(self, el: Any, text: str, parent_tags: Any) -> str:
        return text

    def convert_img(self, el: Any, text: str, parent_tags: Any) -> str:
        return ""

    def convert_hN(self, n: int, el: Any, text: str, parent_tags: Any) -> str:
        # A heading's text on one line, without emphasis markers ("## **Options**" is noise).
        text = " ".join(text.replace("**", "").split())
        return super().convert_hN(n, el, text, parent_tags)  # type: ignore[misc,no-any-return]  # not in the stubs


def _drop_chrome(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    total = len(soup.get_text(" ", strip=True)) or 1
    for tag in soup.find_all(True):
        if tag.decomposed or tag.name in ("html", "body", "main", "article"):
            continue
        attrs = tag.attrs or {}
        named = " ".join([*_as_list(attrs.get("class")), str(attrs.get("id", ""))])
        style = str(attrs.get("style", "")).replace(" ", "").lower()
        if "hidden" in attrs or attrs.get("aria-hidden") == "true" or "display:none" in style:
            tag.decompose()  # not shown to a reader (collapsed diagrams, screen-reader duplicates)
            continue
        chrome = (
            tag.name in ("header", "footer")
            or attrs.get("role") in _CHROME_ROLES
            or bool(named.strip() and _CHROME_NAME.search(named))
        )
        # A misnamed wrapper ("has-sidebar" around the content) or a header that holds the
        # page's title is not chrome.
        if chrome and not tag.find(["h1", "h2"]) and len(tag.get_text(" ", strip=True)) < total / 2:
            tag.decompose()
    for a in soup.find_all("a"):
        if a.get_text(strip=True) in _PERMALINKS:
            a.decompose()


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _main_element(soup: BeautifulSoup) -> Tag:
    body = soup.body or soup
    for candidate in (soup.find("main"), soup.find(True, attrs={"role": "main"})):
        if isinstance(candidate, Tag) and _has_most_text(candidate, body):
            return candidate
    articles = soup.find_all("article")
    if len(articles) == 1 and _has_most_text(articles[0], body):
        return articles[0]
    return body


def _has_most_text(tag: Tag, body: Tag) -> bool:
    return len(tag.get_text(" ", strip=True)) >= 0.3 * len(body.get_text(" ", strip=True))


# -- manual pages in one <pre> ------------------------------------------------------------


def _man_pages(root: Tag, soup: BeautifulSoup) -> None:
    """A man page rendered into a `<pre>` (man2html): section titles ("NAME", "DESCRIPTION")
    at column 0, text indented below them. It becomes headings and paragraphs, so the page
    chunks by section and its prose reads as sentences, not as one code block."""
    for pre in root.find_all("pre"):
        lines = pre.get_text().split("\n")
        if not any(line == "NAME" for line in lines[:12]):
            continue
        replacement = soup.new_tag("div")
        paragraph: list[str] = []
        for i, line in enumerate([*lines, ""]):
            if (i < 3 and _MAN_TITLE.fullmatch(line.strip())) or (
                i >= len(lines) - 3 and _MAN_FOOTER.fullmatch(line.strip())
            ):
                continue
            title = line[:1].strip() and _MAN_HEADING.fullmatch(line.strip())
            if (title or not line.strip()) and paragraph:
                replacement.append(_man_paragraph(paragraph, soup))
                paragraph = []
            if title:
                heading = soup.new_tag("h2")
                heading.string = line.strip()
                replacement.append(heading)
            elif line.strip():
                paragraph.append(line)
        pre.replace_with(replacement)


def _man_paragraph(lines: list[str], soup: BeautifulSoup) -> Tag:
    """One blank-line separated block of a man page; an option term that leads it
    ("-c config_dir" above its indented description, or "-b     Show …" on one line)
    becomes a bold lead-in."""
    p = soup.new_tag("p")
    term = ""
    first = lines[0]
    indent = len(first) - len(first.lstrip())
    deeper = len(lines) > 1 and len(lines[1]) - len(lines[1].lstrip()) > indent
    same_line = _MAN_TERM_SAME_LINE.fullmatch(first)
    if same_line and (len(lines) == 1 or deeper):
        term, rest = same_line.group(2), [same_line.group(3), *lines[1:]]
    elif deeper and len(first.strip()) <= 60 and not first.rstrip().endswith((".", ":", ",")):
        term, rest = first.strip(), lines[1:]
    else:
        rest = lines
    text = _SOFT_HYPHEN.sub(r"\1", "\n".join(line.strip() for line in rest))
    if term:
        strong = soup.new_tag("strong")
        strong.string = term
        p.append(strong)
        p.append(NavigableString(": "))
    p.append(NavigableString(text))
    return p


# -- definition lists ---------------------------------------------------------------------


def _definition_lists(root: Tag, soup: BeautifulSoup) -> None:
    outer = [dl for dl in root.find_all("dl") if not dl.find_parent(["dl", "li", "table"])]
    lengths = [len(dd.get_text(" ", strip=True)) for dl in outer for dd in dl.find_all("dd", recursive=False)]
    as_headings = bool(lengths) and sum(lengths) / len(lengths) >= DT_HEADING_CHARS
    top = {id(dl) for dl in outer}
    for dl in root.find_all("dl"):
        if as_headings and id(dl) in top:
            level = min(_section_level(dl) + 1, 6)
            for terms, definition in _entries(dl):
                heading = soup.new_tag(f"h{level}", attrs={"data-lore-term": ""})
                heading.string = ", ".join(terms)
                if definition is None:
                    dl.append(heading)
                else:
                    definition.insert_before(heading)
        else:
            for terms, definition in _entries(dl):
                _lead_in(", ".join(terms), definition, dl, soup)
        for child in dl.find_all(["dt", "dd"], recursive=False):
            if child.name == "dt":
                child.decompose()
            else:
                child.name = "div"
        dl.name = "div"


def _entries(dl: Tag) -> list[tuple[list[str], Tag | None]]:
    """(terms, definition) pairs: consecutive `<dt>`s (an option's aliases) share one `<dd>`."""
    entries: list[tuple[list[str], Tag | None]] = []
    terms: list[str] = []
    for child in dl.find_all(["dt", "dd"], recursive=False):
        if child.name == "dt":
            text = " ".join(child.get_text().split())
            if text:
                terms.append(text)
        elif terms:
            entries.append((terms, child))
            terms = []
    if terms:
        entries.append((terms, None))
    return entries


def _section_level(tag: Tag) -> int:
    """The level of the heading a tag sits under (its page's own headings, not terms)."""
    for heading in tag.find_all_previous(_HEADINGS):
        if "data-lore-term" not in heading.attrs:
            return int(heading.name[1])
    return 1


def _lead_in(term: str, definition: Tag | None, dl: Tag, soup: BeautifulSoup) -> None:
    strong = soup.new_tag("strong")
    strong.string = term
    if definition is None:
        p = soup.new_tag("p")
        p.append(strong)
        dl.append(p)
        return
    first = next(iter(_children(definition)), None)
    if isinstance(first, Tag) and first.name == "p":
        first.insert(0, NavigableString(": "))
        first.insert(0, strong)
    elif isinstance(first, NavigableString) or (isinstance(first, Tag) and not _is_block(first)):
        definition.insert(0, NavigableString(": "))
        definition.insert(0, strong)
    else:  # a definition that opens with a list, a table or code: the term on a line of its own
        p = soup.new_tag("p")
        p.append(strong)
        definition.insert(0, p)


def _children(tag: Tag) -> list[Any]:
    """Child elements and text, without whitespace-only text."""
    return [c for c in tag.children if not (isinstance(c, NavigableString) and not c.strip())]


def _is_block(tag: Tag) -> bool:
    return tag.name in {"p", "div", "pre", "ul", "ol", "dl", "table", "blockquote", "section", *_HEADINGS}


# -- tables --------------------------------------------------------------------------------


def _layout_tables(root: Tag) -> None:
    """Tables whose cells hold code, lists or other tables are layout: a GFM table can't hold
    them (cells are one line), so the rows and cells become plain blocks."""
    for table in reversed(root.find_all("table")):
        cells = table.find_all(["td", "th"])
        rows = table.find_all("tr")
        columns = max((len(tr.find_all(["td", "th"], recursive=False)) for tr in rows), default=0)
        blocks = any(cell.find(_BLOCKS_IN_CELLS) or len(cell.find_all("p")) > 1 for cell in cells)
        layout = columns <= 1 or blocks
        if not layout:
            continue
        for tag in [table, *table.find_all(["thead", "tbody", "tfoot", "tr", "td", "th", "caption"])]:
            tag.name = "div"
