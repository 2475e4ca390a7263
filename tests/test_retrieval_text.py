"""Text extraction and chunking for vector stores: every supported type read, every unreadable one a
clear reason, chunks of OpenAI's sizes and overlaps."""

import io
import json

import pytest

from ossabus.retrieval.chunking import ChunkingRefused, chunks, encoding, strategy
from ossabus.retrieval.extract import Unreadable, extract_text


def pdf_with_text(text: str) -> bytes:
    """A one-page PDF whose page shows `text` (written by hand: no PDF writer that draws text is needed)."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def docx_with(paragraphs: list[str]) -> bytes:
    from docx import Document

    document = Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "cell one", "cell two"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("notes.txt", b"plain words here", "plain words here"),
        ("README.md", "# Title\n\nSome *markdown* \u00e9".encode(), "# Title\n\nSome *markdown* \u00e9"),
        (
            "page.html",
            b"<html><head><script>evil()</script></head><body><p>Hello</p><p>page</p></body></html>",
            "Hello\npage",
        ),
        ("data.json", b'{"k": [1, 2]}', json.dumps({"k": [1, 2]}, indent=1)),
        ("table.csv", b"a,b\n1,2\n", "a,b\n1,2\n"),
        ("main.py", b"def f():\n    return 1\n", "def f():\n    return 1\n"),
    ],
)
def test_text_files_are_read_as_text(name, data, expected):
    assert extract_text(name, data).strip() == expected.strip()


def test_a_pdf_and_a_docx_are_read():
    assert extract_text("paper.pdf", pdf_with_text("Retrieval for any model")) == "Retrieval for any model"
    text = extract_text("memo.docx", docx_with(["First paragraph.", "Second paragraph."]))
    assert text.splitlines() == ["First paragraph.", "Second paragraph.", "cell one | cell two"]


def encrypted_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "code", "says"),
    [
        ("empty.txt", b"", "invalid_file", "empty"),
        ("empty.pdf", b"", "invalid_file", "empty"),
        ("junk.txt", bytes(range(256)) * 10, "unsupported_file", "binary"),
        ("latin.txt", "caf\u00e9".encode("latin-1"), "unsupported_file", "UTF-8"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "unsupported_file", "PDF"),
        ("locked.pdf", encrypted_pdf(), "unsupported_file", "encrypted"),
        ("blank.pdf", pdf_with_text(""), "invalid_file", "no text"),
        ("broken.docx", b"PK not a zip", "unsupported_file", "DOCX"),
        ("tool.exe", b"MZ\x90\x00", "unsupported_file", ".exe"),
        ("spaces.md", b"   \n\n  ", "invalid_file", "no text"),
    ],
)
def test_unreadable_files_say_why(name, data, code, says):
    with pytest.raises(Unreadable) as refused:
        extract_text(name, data)
    assert refused.value.code == code
    assert says in refused.value.message


def test_auto_chunks_are_800_tokens_overlapping_by_400():
    text = " ".join(f"word{i}" for i in range(3000))
    total = len(encoding().encode(text))
    made = chunks(text, strategy(None))
    assert all(c.tokens == 800 for c in made[:-1])
    assert made[-1].tokens <= 800
    assert [c.index for c in made] == list(range(len(made)))
    first, second = encoding().encode(made[0].text), encoding().encode(made[1].text)
    assert first[400:] == second[:400]  # the overlap
    assert 400 * (len(made) - 1) + made[-1].tokens == total  # every token covered, windows step by 400


def test_static_chunking_and_its_limits():
    chosen = strategy({"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}})
    made = chunks(" ".join(["alpha"] * 250), chosen)
    assert [c.tokens for c in made] == [100, 100, 50]
    assert chunks("", chosen) == []
    for bad, param in [
        ({"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}, "max_chunk_size_tokens"),
        ({"max_chunk_size_tokens": 4097, "chunk_overlap_tokens": 0}, "max_chunk_size_tokens"),
        ({"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101}, "chunk_overlap_tokens"),
    ]:
        with pytest.raises(ChunkingRefused) as refused:
            strategy({"type": "static", "static": bad})
        assert refused.value.param.endswith(param)
    with pytest.raises(ChunkingRefused):
        strategy({"type": "fancy"})


def test_auto_chunks_fit_a_local_models_window_and_a_chosen_size_is_kept():
    from ossabus.contracts.retrieval import LOCAL_AUTO, chunking_strategy, fitted_to

    auto = chunking_strategy(None)
    assert fitted_to("local/all-MiniLM-L6-v2", auto) == {"type": "static", "static": LOCAL_AUTO}
    assert fitted_to("openai/text-embedding-3-small", auto) == auto
    chosen = chunking_strategy({"type": "static", "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 0}})
    assert fitted_to("local/all-MiniLM-L6-v2", chosen) == chosen
    text = " ".join(f"word{i}" for i in range(600))
    pieces = chunks(text, fitted_to("local/all-MiniLM-L6-v2", auto))
    assert max(p.tokens for p in pieces) == 200
