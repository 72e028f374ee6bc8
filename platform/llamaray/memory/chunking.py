"""Chunks of a document, counted in tokens of the embedding model's own tokenizer.

Counting in the embedder's tokens means a chunk never exceeds what the model reads (MiniLM
truncates at 256 word pieces); overlapping chunks keep a sentence cut at a boundary findable
from either side. Chunks are cut from the original text by character offsets, so what a query
returns is the document's own text, accents and all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str


def chunk_text(text: str, tokenizer, chunk_tokens: int, overlap_tokens: int) -> list[Chunk]:
    if not text.strip():
        return []
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    if len(offsets) <= chunk_tokens:
        return [Chunk(0, text.strip())]
    step = chunk_tokens - overlap_tokens
    chunks = []
    for start in range(0, len(offsets), step):
        window = offsets[start : start + chunk_tokens]
        chunks.append(Chunk(len(chunks), text[window[0][0] : window[-1][1]].strip()))
        if start + chunk_tokens >= len(offsets):
            break
    return chunks
