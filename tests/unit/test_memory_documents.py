"""Document text by MIME type, token chunking and metadata filters: no Milvus, no Ray."""

from __future__ import annotations

import pytest

from llamaray.errors import InvalidRequestError
from llamaray.memory.chunking import chunk_text
from llamaray.memory.extract import document_text
from llamaray.memory.index import collection_name, metadata_filter


class WordTokenizer:
    """One token per whitespace-separated word, with offsets, like a fast tokenizer's."""

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=True, verbose=False):
        offsets, start = [], None
        for i, ch in enumerate(text + " "):
            if not ch.isspace() and start is None:
                start = i
            elif ch.isspace() and start is not None:
                offsets.append((start, i))
                start = None
        return {"offset_mapping": offsets}


def test_text_of_each_type():
    assert document_text("héllo".encode(), "text/plain; charset=utf-8", "d") == "héllo"
    html = (
        b"<html><head><title>t</title><style>x{}</style></head>"
        b"<body><p>One &amp; two</p><script>evil()</script><p>three</p></body></html>"
    )
    assert document_text(html, "text/html", "d") == "One & two\nthree"
    assert '"k": "v"' in document_text(b'{"k":"v"}', "application/json", "d")


@pytest.mark.parametrize(
    ("content", "mime", "field"),
    [
        (b"x", "image/png", "d.mime_type"),
        (b"\xff\xfe", "text/plain", "d.content"),
        (b"{bad", "application/json", "d.content"),
        (b"%PDF-", "application/pdf", "d.content"),
    ],
)
def test_undecodable_documents_name_the_field(content, mime, field):
    with pytest.raises(InvalidRequestError) as error:
        document_text(content, mime, "d")
    assert error.value.param == field


def test_chunks_overlap_and_keep_the_original_text():
    text = " ".join(f"w{i}" for i in range(10))
    chunks = chunk_text(text, WordTokenizer(), chunk_tokens=4, overlap_tokens=1)
    assert [c.text for c in chunks] == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert chunk_text("short text", WordTokenizer(), 4, 1)[0].text == "short text"
    assert chunk_text("  \n", WordTokenizer(), 4, 1) == []


def test_metadata_filters_and_collection_names():
    assert (
        metadata_filter({"lang": "en", "year": 2024, "draft": False})
        == 'metadata["lang"] == "en" and metadata["year"] == 2024 and metadata["draft"] == false'
    )
    assert metadata_filter({"q": 'say "hi"'}) == 'metadata["q"] == "say \\"hi\\""'
    with pytest.raises(InvalidRequestError):
        metadata_filter({'x"] or true or metadata["y': 1})
    with pytest.raises(InvalidRequestError):
        metadata_filter({"nested": {"a": 1}})
    assert collection_name("any uuid/with spaces").startswith("bank_") and collection_name("a") != collection_name("b")
