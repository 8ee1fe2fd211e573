"""Answers rendered as HTML (`bot.web.markdown`): Markdown that works, and text from documents or
a model that cannot inject markup, scripts or links it shouldn't."""

from __future__ import annotations

import re

import pytest
from bs4 import BeautifulSoup

from bot.web.markdown import allowed_link, render_markdown


def html(text: str, prefix: str = "src-a1-") -> BeautifulSoup:
    return BeautifulSoup(str(render_markdown(text, cite_prefix=prefix)), "html.parser")


def test_a_citation_marker_inside_a_link_url_leaves_the_link_whole():
    soup = html("See [the guide](https://wiki.example/page[1]) for details [1].")
    [guide, cite] = soup.find_all("a")
    assert guide.get_text() == "the guide" and guide["href"] == "https://wiki.example/page%5B1%5D"
    assert guide["rel"] == ["noopener", "noreferrer"]
    assert cite["class"] == ["cite"] and cite["href"] == "#src-a1-1" and cite.get_text() == "[1]"
    assert soup.get_text() == "See the guide for details [1].\n"  # no stray rel=… or markup as text


@pytest.mark.parametrize(
    "link",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](jav&#x61;script:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](vbscript:msgbox(1))",
        "[x](file:///etc/passwd)",
        "<javascript:alert(1)>",
    ],
)
def test_only_web_mail_and_relative_links_become_links(link):
    soup = html(f"Click {link} now")
    assert soup.find("a") is None  # the Markdown stays visible as text, never a live link
    assert soup.get_text().startswith("Click ") and soup.get_text().rstrip().endswith(" now")
    assert soup.get_text().count(")") == link.count(")")  # not "x)": nothing half-parsed


def test_allowed_links():
    for url in (
        "https://a.example/x",
        "http://a.example",
        "mailto:it@example.com",
        "/review",
        "#src-1",
        "page",
    ):
        assert allowed_link(url), url
    for url in ("javascript:alert(1)", " JAVASCRIPT:x", "data:text/html,x", "file:///etc", "ftp://x"):
        assert not allowed_link(url), url
    soup = html("[mail](mailto:it@example.com) and [queue](/review)")
    assert [a["href"] for a in soup.find_all("a")] == ["mailto:it@example.com", "/review"]


def test_raw_html_images_and_reference_definitions_are_text():
    soup = html(
        '<img src=x onerror=alert(1)> <script>alert(1)</script> <a href="javascript:x">y</a>\n\n'
        "![pixel](https://tracker.example/p.png)\n\n[1]: https://evil.example/\n\nAs said [1]."
    )
    assert soup.find(["img", "script"]) is None
    assert [a["href"] for a in soup.find_all("a")] == [
        "https://tracker.example/p.png",
        "#src-a1-1",
        "#src-a1-1",
    ]
    assert "<script>alert(1)</script>" in soup.get_text()  # shown, escaped, never run


def test_citations_are_marked_in_text_only_never_in_code():
    soup = html("Use `list[1]` and:\n\n```\nx = y[2]\n```\n\nDone [1][2].")
    assert [c.get_text() for c in soup.find_all("code")] == ["list[1]", "x = y[2]\n"]
    assert [a["href"] for a in soup.select("a.cite")] == ["#src-a1-1", "#src-a1-2"]
    assert not soup.find("code").find("a")
    assert render_markdown("plain [1]") == "<p>plain [1]</p>\n"  # no prefix: no links


def test_markdown_that_answers_use():
    soup = html(
        "# Leave\n**25 days** a year, *five* carry over [1].\n\n- one\n- two\n\n"
        "1. first\n2. second\n\nline\nbreak"
    )
    assert soup.find("strong").get_text() == "Leave"  # a heading stays modest
    assert [li.get_text() for li in soup.find_all("li")] == ["one", "two", "first", "second"]
    assert soup.find("em").get_text() == "five" and soup.find("br") is not None
    table = html("| city | per diem |\n|---|---|\n| New York | 95 USD [1] |").find("table")
    assert table is not None and table.select_one("td a.cite")["href"] == "#src-a1-1"


def test_an_unsafe_prefix_is_refused():
    with pytest.raises(ValueError):
        render_markdown("x [1]", cite_prefix='"><script>')
    assert re.fullmatch(
        r"<p>x <a class=\"cite\" href=\"#ok_1-1\">\[1\]</a></p>\n",
        str(render_markdown("x [1]", cite_prefix="ok_1-")),
    )
