"""Text out of uploaded files, for indexing: plain text and markup (txt, md, html, json, csv, code)
as text, PDF through pypdf, DOCX through python-docx. What cannot be read fails that file with a
reason the API shows as its `last_error`, never the batch it came in."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import PurePosixPath

TEXT_SUFFIXES = {
    ".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".xml", ".log",
    ".py", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".go", ".rs",
    ".rb", ".php", ".sh", ".sql", ".swift", ".kt", ".scala", ".r", ".tex", ".css", ".toml", ".ini",
}  # fmt: skip
HTML_SUFFIXES = {".html", ".htm"}


class Unreadable(Exception):
    """The file holds no text ossabus can read; `code` and `message` become its `last_error`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class _Text(HTMLParser):
    SKIP = {"script", "style", "head", "template"}

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in ("p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def html_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()


def _decoded(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise Unreadable("unsupported_file", "the file is binary, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unreadable("unsupported_file", f"the file is not UTF-8 text (byte {exc.start})") from exc


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise Unreadable("unsupported_file", "the PDF is encrypted")
        return "\n\n".join((page.extract_text() or "") for page in reader.pages).strip()
    except Unreadable:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise Unreadable("unsupported_file", f"the PDF cannot be read ({type(exc).__name__})") from exc


def _docx(data: bytes) -> str:
    import zipfile

    from docx import Document

    try:
        document = Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise Unreadable("unsupported_file", "the DOCX file cannot be read") from exc
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text for cell in row.cells))
    return "\n".join(lines).strip()


def extract_text(filename: str, data: bytes) -> str:
    """The file's text; Unreadable when there is none to index."""
    if not data:
        raise Unreadable("invalid_file", "the file is empty")
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix == ".pdf" or data.startswith(b"%PDF"):
        text = _pdf(data)
    elif suffix == ".docx":
        text = _docx(data)
    elif suffix in HTML_SUFFIXES:
        text = html_text(_decoded(data))
    elif suffix in (".json",):
        raw = _decoded(data)
        try:
            text = json.dumps(json.loads(raw), ensure_ascii=False, indent=1)
        except json.JSONDecodeError:
            text = raw
    elif suffix in TEXT_SUFFIXES or not suffix:
        text = _decoded(data)
    else:
        raise Unreadable("unsupported_file", f"files of type {suffix} are not supported for retrieval")
    if not text.strip():
        raise Unreadable("invalid_file", "the file holds no text")
    return text
