"""The text of a memory bank document, by its MIME type.

Plain text and Markdown are indexed as written; HTML loses its tags, scripts and styles; PDF
text comes out of pypdf page by page; JSON is indexed as its pretty-printed form, so keys and
values are both searchable. Anything else, or bytes that do not decode, is a 4xx naming the
document, so a batch is refused before any of it is written.
"""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser

from llamaray.errors import InvalidRequestError

SUPPORTED = ("text/plain", "text/markdown", "text/html", "application/pdf", "application/json")


def document_text(content: bytes, mime_type: str, param: str) -> str:
    kind = mime_type.split(";", 1)[0].strip().lower()
    if kind not in SUPPORTED:
        raise InvalidRequestError(
            f"unsupported mime_type {mime_type!r}; supported: {', '.join(SUPPORTED)}", f"{param}.mime_type"
        )
    if kind == "application/pdf":
        return _pdf_text(content, param)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            f"content is not UTF-8 text ({exc.reason} at byte {exc.start})", f"{param}.content"
        ) from None
    if kind == "text/html":
        return _html_text(text)
    if kind == "application/json":
        try:
            return json.dumps(json.loads(text), indent=1, ensure_ascii=False)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"content is not JSON: {exc}", f"{param}.content") from None
    return text


def _pdf_text(content: bytes, param: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(content))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise InvalidRequestError(f"content is not a readable PDF: {exc}", f"{param}.content") from None


class _TextOfHTML(HTMLParser):
    SKIP = {"script", "style", "head", "noscript", "template"}
    BLOCKS = {
        "p",
        "div",
        "br",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "pre",
        "blockquote",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data) -> None:
        if not self.skipping:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _TextOfHTML()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)
