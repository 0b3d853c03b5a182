"""From files to text to chunks: each format, the files that are refused, and chunk sizes with overlap."""

from __future__ import annotations

import io
import itertools

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from core.errors import DomainError
from knowledge import ingest


def pdf_bytes(*pages: str, password: str | None = None) -> bytes:
    document = FPDF()
    document.set_font("helvetica", size=11)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 6, text)
    data = bytes(document.output())
    if password is None:
        return data
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=password, owner_password=password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def read(data: bytes, filename: str) -> str:
    return ingest.extract_text(data, ingest.detect_mime(filename, data))


def test_plain_text_is_read_and_tidied():
    assert read(b"Line  one\r\n\r\n\r\nLine\ttwo ", "notes.txt") == "Line one\n\nLine two"


def test_markdown_loses_its_markup_but_keeps_its_text():
    markdown = b"# Alpine jacket\n\nWeighs **310 g**. See [the sheet](https://example.test/x).\n\n- Hood\n- Two pockets"
    text = read(markdown, "jacket.md")
    assert "Alpine jacket" in text and "Weighs 310 g. See the sheet." in text and "Two pockets" in text
    assert "**" not in text and "#" not in text and "example.test" not in text


def test_html_keeps_visible_text_only():
    html = (b"<html><head><title>t</title><style>p{color:red}</style></head><body><h1>Stove</h1>"
            b"<p>Boils 1 l in 3&nbsp;min &amp; weighs 90 g.</p><script>steal()</script></body></html>")
    text = read(html, "stove.html")
    assert text == "Stove\n\nBoils 1 l in 3 min & weighs 90 g."


def test_pdf_text_is_extracted_from_every_page():
    text = read(pdf_bytes("The tent sleeps two.", "It packs to 1.2 kg."), "tent.pdf")
    assert "The tent sleeps two." in text and "It packs to 1.2 kg." in text


def test_a_pdf_is_known_by_its_content_whatever_its_name():
    assert ingest.detect_mime("renamed.txt", pdf_bytes("x")) == "application/pdf"


@pytest.mark.parametrize(
    ("data", "filename", "code"),
    [
        (b"\x00\x01\x02\xff\xfe binary", "junk.txt", "not_text"),
        (bytes(range(1, 32)) * 50, "junk.md", "not_text"),
        (b"%PDF-1.4 this is not really a pdf", "broken.pdf", "invalid_pdf"),
        (b"   \n\n  ", "empty.txt", "empty_file"),
        (b"MZ\x90\x00", "tool.exe", "unsupported_file"),
    ],
)
def test_files_that_give_no_text_are_refused_with_the_reason(data, filename, code):
    with pytest.raises(DomainError) as refused:
        read(data, filename)
    assert refused.value.code == code and 400 <= refused.value.status_code < 500


def test_an_encrypted_pdf_is_refused():
    with pytest.raises(DomainError) as refused:
        read(pdf_bytes("secret", password="pw"), "locked.pdf")
    assert refused.value.code == "encrypted_pdf" and refused.value.status_code == 400


def test_a_scanned_pdf_without_text_is_refused():
    document = FPDF()
    document.add_page()
    with pytest.raises(DomainError) as refused:
        read(bytes(document.output()), "scan.pdf")
    assert refused.value.code == "empty_file"


def test_chunks_hold_whole_sentences_near_the_target_and_overlap():
    sentences = [f"Fact {i} is that the jacket number {i} has {i} pockets and a hood." for i in range(120)]
    text = " ".join(sentences)  # one long paragraph
    chunks = ingest.chunk_text(text)
    assert len(chunks) > 3
    assert all(tokens <= ingest.CHUNK_MAX_TOKENS for _, tokens in chunks)
    assert all(tokens >= ingest.CHUNK_TARGET_TOKENS // 2 for _, tokens in chunks[:-1])
    for chunk, _ in chunks:  # every cut is between sentences
        assert chunk.startswith("Fact ") and chunk.endswith("hood.")
    for (first, _), (second, _) in itertools.pairwise(chunks):  # the next repeats the last sentences
        assert first.split("\n")[-1] in second.split("\n")
        assert second.split("\n")[0] in first.split("\n")
    covered = "\n".join(chunk for chunk, _ in chunks)
    assert all(sentence in covered for sentence in sentences)


def test_short_paragraphs_are_packed_together():
    text = "\n\n".join(f"Paragraph {i} is short." for i in range(10))
    chunks = ingest.chunk_text(text)
    assert len(chunks) == 1 and chunks[0][0].count("Paragraph") == 10


def test_a_sentence_longer_than_a_chunk_is_cut_into_word_windows():
    text = " ".join(f"word{i}" for i in range(1000))
    chunks = ingest.chunk_text(text)
    assert len(chunks) > 3 and all(tokens <= ingest.CHUNK_MAX_TOKENS for _, tokens in chunks)
