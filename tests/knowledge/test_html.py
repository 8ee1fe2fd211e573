"""HTML manuals keep their structure on the way in: headings, definition lists, tables and code
become Markdown the chunker understands, and navigation chrome is dropped.

trafilatura (built for news pages) kept the main text but dropped most section headings of
reference manuals, so chunks lost their heading path (issue 17). Pages here are small and
built in the tests, in the shapes real manuals use (Postfix, Git's AsciiDoc, SQLite, Sphinx,
man2html).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from knowledge.chunking import StructuredChunker
from knowledge.html import html_to_markdown
from knowledge.readers import read_bytes
from knowledge.sources import make_document

LONG = (
    "The maximal size in bytes of a message, including envelope information. Excessively small "
    "values will result in the loss of non-delivery notifications, when a bounce message size "
    "exceeds the local or remote MTA's message size limit. "
) * 3


def page(body: str, title: str = "Manual") -> str:
    return f"<html><head><title>{title}</title><style>p{{color:red}}</style></head><body>{body}</body></html>"


def chunks(html: str, path: str = "manual.html", size: int = 200) -> list[tuple[str, str]]:
    """(heading path, text) of each chunk, read and chunked as a sync does it."""
    read = read_bytes(html.encode(), PurePosixPath(path), max_bytes=10**7)
    doc = make_document(
        source="s",
        source_type="directory",
        doc_id=f"s:{path}",
        path=path,
        text=read.text,
        title=read.title,
        url=None,
        updated_at=None,
        is_markdown=read.is_markdown,
    )
    nodes = StructuredChunker(chunk_size=size, chunk_overlap=20, tokenizer=str.split)([doc])
    return [(str(n.metadata["heading"]), n.get_content()) for n in nodes]


def test_headings_survive_as_the_heading_path_of_chunks():
    html = page(
        "<h1>Postfix SASL Howto</h1><p>Intro to SASL.</p>"
        '<h2><a name="server_sasl">Configuring SASL authentication in the Postfix SMTP server</a></h2>'
        "<p>Dovecot is a POP/IMAP server that has its own configuration.</p>"
        "<h3>Enabling SASL authentication</h3><p>Set smtpd_sasl_auth_enable = yes in main.cf.</p>"
    )
    found = chunks(html)
    paths = {heading for heading, _ in found}
    assert "Postfix SASL Howto > Configuring SASL authentication in the Postfix SMTP server" in paths
    assert (
        "Postfix SASL Howto > Configuring SASL authentication in the Postfix SMTP server > "
        "Enabling SASL authentication" in paths
    )
    text = "\n".join(t for _, t in found)
    assert "## Configuring SASL authentication in the Postfix SMTP server" in text
    assert "smtpd_sasl_auth_enable" in text  # not escaped to smtpd\_sasl\_auth\_enable


def test_a_reference_definition_list_becomes_one_section_per_term():
    entries = "".join(
        f'<dt><b><a name="{name}">{name}</a> (default: {default})</b></dt><dd><p>{LONG}</p></dd>'
        for name, default in [("message_size_limit", "10240000"), ("maximal_queue_lifetime", "5d")]
    )
    html = page(f"<h1>Postfix Configuration Parameters</h1><h2>Parameters</h2><dl>{entries}</dl>")
    markdown = html_to_markdown(html)
    assert "### message_size_limit (default: 10240000)" in markdown
    paths = [heading for heading, _ in chunks(html)]
    assert "Postfix Configuration Parameters > Parameters > maximal_queue_lifetime (default: 5d)" in paths


def test_short_definitions_keep_their_terms_as_bold_lead_ins():
    html = page(
        "<h1>git-commit(1)</h1><h2>OPTIONS</h2><dl>"
        '<dt class="hdlist1">-a</dt><dt class="hdlist1">--all</dt>'
        "<dd><p>Tell the command to automatically stage files that have been modified.</p></dd>"
        '<dt class="hdlist1">--dry-run</dt><dd>Do not create a commit, but show a list of paths.</dd>'
        '<dt class="hdlist1">-m &lt;msg&gt;</dt><dd><pre>git commit -m "fix"</pre></dd>'
        "</dl>"
    )
    markdown = html_to_markdown(html)
    assert "**-a, --all**: Tell the command to automatically stage files" in markdown
    assert "**--dry-run**: Do not create a commit" in markdown
    assert '**-m <msg>**\n\n```\ngit commit -m "fix"\n```' in markdown
    assert {heading for heading, _ in chunks(html)} == {"git-commit(1) > OPTIONS"}


def test_data_tables_become_markdown_tables_and_layout_tables_are_unwrapped():
    html = page(
        "<h1>Limits</h1><table><tr><th>Limit</th><th>Default</th></tr>"
        "<tr><td>SQLITE_MAX_LENGTH</td><td>1,000,000,000</td></tr></table>"
        "<table><tr><td><p>Run this:</p><pre>sqlite3 test.db\n.tables</pre></td>"
        "<td><ul><li>one</li></ul></td></tr></table>"
    )
    markdown = html_to_markdown(html)
    assert "| Limit | Default |\n| --- | --- |\n| SQLITE_MAX_LENGTH | 1,000,000,000 |" in markdown
    assert "```\nsqlite3 test.db\n.tables\n```" in markdown
    for line in markdown.splitlines():  # no fence inside a table row or mid-line
        assert "```" not in line or line.strip() == "```", line


def test_code_blocks_are_fenced_and_inline_code_stays_inline():
    html = page(
        '<h1>Rebase</h1><div class="listingblock"><pre><code>$ git rebase -i HEAD~3\n'
        "# squash the last three</code></pre></div>"
        "<p>When <code>git rebase\n--autosquash</code> squashes the commit, the message is kept.</p>"
    )
    markdown = html_to_markdown(html)
    assert "```\n$ git rebase -i HEAD~3\n# squash the last three\n```" in markdown
    assert "When `git rebase\n--autosquash` squashes the commit" in markdown
    # The "# squash" comment inside the fence is code, not a heading.
    assert {heading for heading, _ in chunks(html)} == {"Rebase"}


def test_navigation_chrome_is_dropped_and_the_main_text_kept():
    html = page(
        '<div class="nosearch"><img class="logo" src="logo.gif" alt="SQLite">'
        '<div class="tagline">Small. Fast. Reliable.</div>'
        '<div class="menu mainmenu"><ul><li><a href="index.html">Home</a></li>'
        '<li><a href="docs.html">Documentation</a></li></ul></div></div>'
        '<header class="site-header"><nav><a href="/">Top nav link</a></nav></header>'
        '<div class="breadcrumbs"><a href="/">Home</a> &rsaquo; Expenses</div>'
        '<div class="fancy_toc"><a href="#a">1. Overview of the limits</a></div>'
        '<div role="navigation">Previous topic | Next topic</div>'
        '<div id="x1" style="display: none">hidden syntax diagram</div>'
        "<script>track()</script>"
        '<main id="content"><h1>Limits In SQLite<a class="headerlink" href="#l">¶</a></h1>'
        "<p>Limits are set at compile time.</p></main>"
        '<div id="footer">Last updated 2024</div>'
    )
    markdown = html_to_markdown(html)
    assert markdown == "# Limits In SQLite\n\nLimits are set at compile time."


def test_a_header_that_holds_the_title_is_kept():
    # AsciiDoc puts the page title and NAME section in <div id="header">.
    html = page(
        '<div id="header"><h1>git-commit(1) Manual Page</h1><h2>NAME</h2>'
        "<p>git-commit - Record changes to the repository</p></div>"
        '<div id="content"><h2 id="_synopsis">SYNOPSIS</h2><p>git commit [-a]</p></div>'
    )
    markdown = html_to_markdown(html)
    assert markdown.startswith("# git-commit(1) Manual Page\n\n## NAME\n\ngit-commit - Record changes")
    assert "## SYNOPSIS" in markdown


def test_a_man_page_in_one_pre_becomes_sections_and_paragraphs():
    html = page(
        "<pre>\nPOSTCAT(1)                                                  POSTCAT(1)\n\n"
        "<b>NAME</b>\n       postcat - show Postfix queue file contents\n\n"
        "<b>DESCRIPTION</b>\n       The  <b>postcat</b>(1)  command  prints  the  contents  of  the named "
        "<i>files</i> in\n       human-readable form, as the queue man-\n       ager stores them.\n\n"
        "       <b>-c</b> <i>config</i><b>_</b><i>dir</i>\n"
        "              The <b>main.cf</b> configuration file is in the named directory.\n\n"
        "       <b>-q</b>     Search the Postfix queue for the named <i>files</i> instead of\n"
        "              taking the names literally.\n\n"
        "                                                            POSTCAT(1)\n</pre>",
        title="Postfix manual - postcat(1)",
    )
    markdown = html_to_markdown(html)
    assert markdown.startswith("## NAME\n\npostcat - show Postfix queue file contents\n\n## DESCRIPTION")
    assert "as the queue manager stores them." in markdown  # the line-end hyphen joined
    assert "**-c config_dir**: The main.cf configuration file is in the named directory." in markdown
    assert "**-q**: Search the Postfix queue for the named files instead of\ntaking" in markdown
    assert "POSTCAT(1)" not in markdown and "```" not in markdown
    paths = {heading for heading, _ in chunks(html)}
    assert paths == {"NAME", "DESCRIPTION"}


def test_a_wrapper_named_like_chrome_that_holds_the_content_is_kept():
    html = page(
        '<div class="layout has-sidebar"><h1>Backups</h1>'
        "<p>Nightly backups run at 02:00 and are kept for thirty days.</p></div>"
        '<div class="sidebar"><a href="/">Home</a></div>'
    )
    assert html_to_markdown(html) == "# Backups\n\nNightly backups run at 02:00 and are kept for thirty days."
