"""From an uploaded file to plain text, and from text to chunks of ~200 tokens.

Formats: plain text, Markdown, HTML, PDF. Anything else, a file that says it is one of these and is
not (binary junk renamed ``.txt``), an encrypted PDF and a PDF without a text layer (a scan) are refused
with the reason, before anything is stored.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import PurePath

from django.conf import settings
from django.utils.translation import gettext, gettext_noop

from core.errors import DomainError, InvalidInput
from knowledge import limits

#: Tokens (all-MiniLM-L6-v2 word pieces) a chunk aims at, and the most it may have: the model reads 256,
#: and a chunk should hold a few facts, not a page, so that the prompt's budget buys relevant text.
CHUNK_TARGET_TOKENS = 200
CHUNK_MAX_TOKENS = 250
#: Tokens repeated from the end of one chunk at the start of the next (whole sentences), so a fact cut
#: at a boundary is whole in one of them.
CHUNK_OVERLAP_TOKENS = 40

MIME_BY_SUFFIX = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
FORMATS = gettext_noop("plain text (.txt), Markdown (.md), HTML (.html) or PDF (.pdf)")


class FileTooLarge(DomainError):
    status_code = 413
    code = "file_too_large"


class UnsupportedFile(DomainError):
    status_code = 415
    code = "unsupported_file"


def max_bytes() -> int:
    return int(settings.KNOWLEDGE_MAX_UPLOAD_BYTES)


def too_large(size: int) -> FileTooLarge:
    limit = max_bytes()
    message = gettext("The file is %(size)s MB; knowledge files take at most %(limit)s MB.") % {
        "size": f"{size / 1024 / 1024:.1f}", "limit": f"{limit / 1024 / 1024:.0f}",
    }
    return FileTooLarge(message, fields={"file": [message]})


def _invalid(message: str, code: str) -> InvalidInput:
    return InvalidInput(message, code=code, fields={"file": [message]})


def detect_mime(filename: str, data: bytes, declared: str = "") -> str:
    """The file's format, from its content first (a PDF is a PDF whatever its name), then its name."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    suffix = PurePath(filename).suffix.lower()
    if suffix in MIME_BY_SUFFIX:
        return MIME_BY_SUFFIX[suffix]
    declared = declared.split(";")[0].strip().lower()
    if declared in set(MIME_BY_SUFFIX.values()):
        return declared
    raise UnsupportedFile(
        gettext("Unsupported file type %(type)s: upload %(formats)s.")
        % {"type": suffix or declared or gettext("(none)"), "formats": gettext(FORMATS)}
    )


def extract_text(data: bytes, mime: str) -> str:
    """The file's text, whitespace tidied; a 4xx ``DomainError`` for a file that cannot give any."""
    if mime == "application/pdf":
        text = _pdf_text(data)
    else:
        decoded = _decode(data)
        if mime == "text/html":
            text = html_text(decoded)
        elif mime == "text/markdown":
            text = markdown_text(decoded)
        else:
            text = decoded
    text = tidy(text)
    if not text:
        raise _invalid(gettext("The file has no text."), "empty_file")
    if len(text) > limits.MAX_TEXT_CHARS:
        raise _invalid(
            gettext(
                "The file's text is %(length)s characters; a source takes at most %(limit)s: split it into several."
            ) % {"length": f"{len(text):,}", "limit": f"{limits.MAX_TEXT_CHARS:,}"},
            "text_too_long",
        )
    return text


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid(gettext("The file is not UTF-8 text; save it as UTF-8 or upload a PDF."), "not_text") from None
    # Binary junk that happens to decode (zeros, control bytes) is not text either.
    controls = sum(1 for c in text[:100_000] if ord(c) < 32 and c not in "\n\r\t\f")
    if "\x00" in text or controls > len(text[:100_000]) * 0.01:
        raise _invalid(gettext("The file is binary, not text."), "not_text")
    return text


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader  # parsing PDFs: only an upload of one pays for the import
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise _invalid(gettext("The PDF is encrypted; upload it without a password."), "encrypted_pdf")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DomainError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        # pypdf raises all of these on damaged files: none of them is our fault, all of them are the file's.
        message = gettext("The PDF cannot be read (%(error)s).") % {"error": type(exc).__name__}
        raise _invalid(message, "invalid_pdf") from None
    text = "\n\n".join(pages)
    if not text.strip():
        raise _invalid(
            gettext("The PDF has no text layer (a scan?); upload a PDF with text or the text itself."), "empty_file"
        )
    return text


class _TextOfHtml(HTMLParser):
    """The visible text of an HTML page, blocks on their own lines.

    The standard library's parser rather than BeautifulSoup or lxml: none is a dependency of the project, and
    turning tags into line breaks and dropping scripts is all a knowledge source needs of a page.
    """

    SKIPPED = frozenset({"script", "style", "noscript", "template", "head", "svg"})
    BLOCKS = frozenset({
        "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
        "article", "header", "footer", "blockquote", "pre", "dt", "dd", "hr",
    })

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self._skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n" if tag in {"p", "div", "section", "article", "table"} else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def markdown_text(markdown: str) -> str:
    """Markdown rendered (markdown-it-py, CommonMark) and reduced to its text: no ``**``, ``#`` or link targets."""
    from markdown_it import MarkdownIt  # only a Markdown upload pays for the import

    return html_text(MarkdownIt("commonmark").render(markdown))


_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")


def tidy(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# --- chunking ----------------------------------------------------------------------------------------

#: A sentence ends at ., ! or ? followed by space and what starts a sentence. A regular expression rather than
#: a sentence tokenizer (nltk's punkt, pysbd): those need a data download or another dependency, and a wrong
#: cut here costs only a chunk boundary, which the overlap repairs.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"\S+")


def approximate_tokens(text: str) -> int:
    """Word pieces, estimated: ~1.3 per word in English for MiniLM's WordPiece vocabulary."""
    return max(1, round(len(_WORD.findall(text)) * 1.3))


def _units(text: str, count: Callable[[str], int]) -> list[tuple[str, int]]:
    """Paragraphs, or their sentences where a paragraph is too long, or word windows of a too-long sentence."""
    units: list[tuple[str, int]] = []
    for paragraph in text.split("\n\n"):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        tokens = count(paragraph)
        if tokens <= CHUNK_TARGET_TOKENS:
            units.append((paragraph, tokens))
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = sentence.strip()
            if not sentence:
                continue
            tokens = count(sentence)
            if tokens <= CHUNK_MAX_TOKENS:
                units.append((sentence, tokens))
                continue
            words = sentence.split()
            step = max(1, int(len(words) * CHUNK_TARGET_TOKENS / tokens))
            for start in range(0, len(words), step):
                piece = " ".join(words[start : start + step])
                units.append((piece, count(piece)))
    return units


def chunk_text(text: str, count: Callable[[str], int] = approximate_tokens) -> list[tuple[str, int]]:
    """``(text, tokens)`` chunks of ~``CHUNK_TARGET_TOKENS``, the last sentences of each repeated in the next."""
    chunks: list[tuple[str, int]] = []
    current: list[tuple[str, int]] = []
    size = 0
    for unit in _units(text, count):
        if current and size + unit[1] > CHUNK_TARGET_TOKENS:
            chunks.append(_joined(current, count))
            overlap: list[tuple[str, int]] = []
            for previous in reversed(current):
                if sum(t for _, t in overlap) + previous[1] > CHUNK_OVERLAP_TOKENS:
                    break
                overlap.insert(0, previous)
            current, size = overlap, sum(t for _, t in overlap)
        current.append(unit)
        size += unit[1]
    if current:  # never overlap alone: a unit was added after every reset
        chunks.append(_joined(current, count))
    return chunks


def _joined(units: list[tuple[str, int]], count: Callable[[str], int]) -> tuple[str, int]:
    text = "\n".join(u for u, _ in units)
    return text, count(text)
