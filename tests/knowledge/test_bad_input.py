"""Bad files never crash a sync: each is skipped with a reason the summary counts."""

from __future__ import annotations

import io

import pytest

from tests.conftest import write


def make_pdf(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("Remote work stipend")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def make_docx(title: str, body: str) -> bytes:
    import docx

    doc = docx.Document()
    doc.add_heading(title, level=1)
    doc.add_paragraph(body)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


SCRIPT_HTML = """<html><head><title>Badge access</title><script>var secretTracker = "TRACKME";</script>
<style>.x{color:red}</style></head><body><nav>Home | IT | HR</nav>
<script>document.write("INJECTED-SCRIPT-TEXT")</script>
<main><h1>Badge access</h1><p>Lost badges are replaced at the front desk within one business day.</p>
<h2>Visitors</h2><p>Visitors sign in at reception and wear a red lanyard at all times.</p></main>
<script>for(;;){}</script><footer>Northwind Labs</footer></body></html>"""


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "messy"
    write(root, "good.md", "# Parking\n\nStaff parking is on level two of the north garage.\n")
    write(root, "empty.md", "")
    write(root, "fake.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    write(root, "broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage without xref or trailer")
    write(root, "latin1.txt", "Le café est servi le vendredi dans la cuisine du bureau.".encode("latin-1"))
    write(root, "scripts.html", SCRIPT_HTML)
    write(root, "huge.md", "# Huge\n\n" + "lorem ipsum dolor sit amet " * 4000)  # ~108 kB
    write(
        root,
        "stipend.pdf",
        make_pdf(
            "Remote work stipend. Each employee may claim 500 euros once for a desk "
            "and chair when they start working from home."
        ),
    )
    write(
        root,
        "onboarding.docx",
        make_docx(
            "Onboarding buddy",
            "Every new hire is paired with an onboarding buddy from another team for their first 90 days.",
        ),
    )
    write(root, "notes.xyz", "not a supported type")
    return root


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_indexed(make_knowledge, messy, caplog):
    kn = make_knowledge([{"name": "m", "type": "directory", "path": str(messy)}], index={"max_file_mb": 0.05})
    result = kn.sync("m")
    reasons = {s["path"]: s["reason"] for s in result.skipped}
    assert set(reasons) == {"empty.md", "fake.md", "broken.pdf", "huge.md", "notes.xyz"}
    assert "empty" in reasons["empty.md"]
    assert "binary" in reasons["fake.md"]
    assert "broken PDF" in reasons["broken.pdf"]
    assert "size limit" in reasons["huge.md"]
    assert "unsupported" in reasons["notes.xyz"]
    assert result.added == 5 and result.error is None
    for path, reason in reasons.items():
        assert any(path in r.getMessage() and reason in r.getMessage() for r in caplog.records), path

    def top(q: str) -> str:
        return kn.engine.search(q, top_k=1)[0].path

    assert top("where can staff park") == "good.md"
    assert top("café servi le vendredi") == "latin1.txt"
    assert top("home office desk and chair stipend") == "stipend.pdf"
    assert top("new hire onboarding buddy") == "onboarding.docx"
    assert top("replacing a lost badge") == "scripts.html"


def test_html_is_cleaned_to_its_main_text(make_knowledge, messy):
    kn = make_knowledge([{"name": "m", "type": "directory", "path": str(messy)}])
    kn.sync("m")
    chunks = [
        c for c in kn.engine.search("badge access visitors lanyard", top_k=5) if c.path == "scripts.html"
    ]
    text = " ".join(c.text for c in chunks)
    assert "red lanyard" in text
    for noise in ("TRACKME", "INJECTED-SCRIPT-TEXT", "color:red", "for(;;)"):
        assert noise not in text
    assert chunks[0].title == "Badge access"
    assert chunks[0].heading.startswith("Badge access")


def test_missing_folder_fails_the_source_without_touching_its_index(make_knowledge, messy, tmp_path):
    kn = make_knowledge([{"name": "m", "type": "directory", "path": str(messy)}])
    kn.sync("m")
    before = kn.store.count_chunks("m")
    messy.rename(tmp_path / "moved")
    result = kn.sync("m")
    assert result.error and "does not exist" in result.error and not result.transient
    assert kn.store.count_chunks("m") == before  # an unlistable source is not an empty one


def test_a_broken_pdf_is_reported_with_the_parsers_own_error(make_knowledge, tmp_path):
    root = tmp_path / "pdfs"
    whole = make_pdf("Remote work stipend. Each employee may claim 500 euros once for a desk. " * 20)
    write(root, "truncated.pdf", whole[: len(whole) // 2])  # a download cut short
    write(root, "stipend.pdf", whole)
    kn = make_knowledge([{"name": "p", "type": "directory", "path": str(root)}])
    first = kn.sync("p")
    second = kn.sync("p")  # skipped files are read again on every sync
    reasons = [{s["path"]: s["reason"] for s in r.skipped} for r in (first, second)]
    # pypdf's own words, not LlamaIndex's retry wrapper ("RetryError[<Future at 0x7f…>]"), so the
    # reason means something and is the same on every run.
    assert reasons[0] == {"truncated.pdf": "broken PDF: PdfStreamError: Stream has ended unexpectedly"}
    assert reasons[1] == reasons[0]
    assert first.added == 1
