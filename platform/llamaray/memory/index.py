"""The vector index of memory banks: one Milvus collection per bank.

Each row is a chunk: its vector (cosine), its text (analysed for BM25 where the Milvus in use
has full-text search), the document it came from, that document's metadata, and the write
`version` that produced it. An update inserts the new version first and only then deletes the
old one, so a failure midway leaves the old chunks, never a mix or nothing.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from llamaray.errors import InvalidRequestError
from llamaray.store.local_disk import require_local_disk

TEXT_MAX = 65535
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def collection_name(bank_uuid: str) -> str:
    """Milvus names allow letters, digits and `_` only; a bank's uuid may hold anything."""
    return "bank_" + hashlib.sha1(bank_uuid.encode()).hexdigest()[:20]


def quote(value: str) -> str:
    """`value` as a string literal of Milvus' filter expressions. Not JSON: Milvus' parser knows
    no `\\uXXXX` escape (a `json.dumps` of `résumé` matches nothing), so every character goes in
    as it is, but for the four its grammar escapes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


class MilvusIndex:
    def __init__(self, uri: str, token: str | None = None) -> None:
        from pymilvus import MilvusClient

        self.lite = "://" not in uri
        if self.lite:  # Milvus Lite: a file, which only a local disk keeps safe
            require_local_disk(Path(uri).parent, "Milvus Lite's database")
        self.client = MilvusClient(uri=uri, token=token or "")
        self.full_text = has_full_text(self.client.get_server_version())  # else tried on first create
        self._loaded: set[str] = set()

    def _ready(self, name: str) -> None:
        """Milvus serves a collection once it is loaded; after a restart none is."""
        if name not in self._loaded:
            if str(self.client.get_load_state(name)["state"]) != "Loaded":
                self.client.load_collection(name)
            self._loaded.add(name)

    def create(self, name: str, dimension: int, full_text: bool = True) -> None:
        """Makes the collection (if missing), with the BM25 function if asked for and this Milvus
        has full-text search."""
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        def schema(full_text: bool):
            s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=1024)
            s.add_field("document_uuid", DataType.VARCHAR, max_length=1024)
            s.add_field("version", DataType.INT64)
            s.add_field("chunk_index", DataType.INT64)
            s.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX, enable_analyzer=full_text)
            s.add_field("metadata", DataType.JSON)
            s.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
            index = self.client.prepare_index_params()
            index.add_index("vector", index_type="FLAT", metric_type="COSINE")
            if full_text:
                s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
                s.add_function(
                    Function(
                        name="bm25",
                        function_type=FunctionType.BM25,
                        input_field_names=["text"],
                        output_field_names=["sparse"],
                    )
                )
                index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
            return s, index

        if self.client.has_collection(name):
            return
        if full_text and self.full_text:
            try:
                s, index = schema(True)
                self.client.create_collection(name, schema=s, index_params=index, consistency_level="Strong")
                if self.client.describe_collection(name).get("functions"):
                    return
            except Exception:  # noqa: BLE001 - any refusal of the schema means no full-text search
                pass
            # A Milvus before 2.5 has no BM25: it refuses the schema, or (2.3) keeps the collection
            # without the function and fails its index. Either way: dense only, from a clean slate.
            self.full_text = False
            if self.client.has_collection(name):
                self.client.drop_collection(name)
        s, index = schema(False)
        self.client.create_collection(name, schema=s, index_params=index, consistency_level="Strong")

    def collections(self) -> list[str]:
        """The collections of memory banks in this Milvus (`bank_...`), whoever made them."""
        return [name for name in self.client.list_collections() if name.startswith("bank_")]

    def drop(self, name: str) -> None:
        self._loaded.discard(name)
        if self.client.has_collection(name):
            self.client.drop_collection(name)

    def insert(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Milvus Lite searches rows not yet flushed one by one (~40 us a row: 400 ms a query at 10k
        chunks) and flushed ones through the index (~25 ms), and never flushes by itself; a flush
        costs ~0.1 ms a row, so each write is flushed. A Milvus server seals and indexes its
        growing segments itself, and rate-limits flushes: left to it."""
        self._ready(name)
        for start in range(0, len(rows), 1000):
            self.client.insert(name, rows[start : start + 1000])
        if self.lite and rows:
            self.client.flush(name)

    def delete_documents(self, name: str, document_uuids: list[str], versions: str = "") -> None:
        """Deletes the documents' chunks; `versions` narrows it (`== 7`: one write, `!= 7`: all others)."""
        if not document_uuids:
            return
        expression = f"document_uuid in [{', '.join(map(quote, document_uuids))}]"
        if versions:
            expression += f" and version {versions}"
        self._ready(name)
        self.client.delete(name, filter=expression)

    def search(
        self,
        name: str,
        vector: list[float],
        text: str,
        top_k: int,
        mode: str,
        where: dict[str, Any],
        hidden: str = "",
    ) -> list[dict[str, Any]]:
        """The top chunks for the query; `hidden`, a filter expression, names chunks left out."""
        from pymilvus import AnnSearchRequest, RRFRanker

        fields = ["document_uuid", "chunk_index", "text", "metadata"]
        expression = " and ".join(filter(None, [metadata_filter(where), hidden and f"not ({hidden})"]))
        self._ready(name)
        if mode != "dense" and not self.full_text:
            raise InvalidRequestError(f"mode {mode!r} needs full-text search, which this Milvus does not have", "mode")
        if mode == "dense":
            hits = self.client.search(
                name,
                data=[vector],
                anns_field="vector",
                limit=top_k,
                filter=expression,
                output_fields=fields,
                search_params={"metric_type": "COSINE"},
            )
        elif mode == "bm25":
            hits = self.client.search(
                name,
                data=[text],
                anns_field="sparse",
                limit=top_k,
                filter=expression,
                output_fields=fields,
                search_params={"metric_type": "BM25"},
            )
        else:
            requests = [
                AnnSearchRequest(
                    data=[vector],
                    anns_field="vector",
                    param={"metric_type": "COSINE"},
                    limit=top_k * 4,
                    expr=expression or None,
                ),
                AnnSearchRequest(
                    data=[text],
                    anns_field="sparse",
                    param={"metric_type": "BM25"},
                    limit=top_k * 4,
                    expr=expression or None,
                ),
            ]
            hits = self.client.hybrid_search(name, requests, ranker=RRFRanker(60), limit=top_k, output_fields=fields)
        return [{**hit["entity"], "score": abs(float(hit["distance"]))} for hit in hits[0]]


def has_full_text(server_version: str) -> bool:
    """BM25 came in Milvus 2.5 (`v2.3.5`, `v2.3.5-lite`: no); Milvus Lite's own versions
    (`milvus_lite-3.2.2`) and anything unrecognised are tried, and fall back on refusal."""
    found = re.match(r"v?(\d+)\.(\d+)\.", server_version)
    return not found or (int(found[1]), int(found[2])) >= (2, 5)


def metadata_filter(where: dict[str, Any]) -> str:
    """`{"lang": "en", "year": 2024}` → `metadata["lang"] == "en" and metadata["year"] == 2024`."""
    terms = []
    for key, value in where.items():
        if not KEY.match(key):
            raise InvalidRequestError(f"filter key {key!r} must be a plain name (letters, digits, _)", "filter")
        if isinstance(value, bool):
            literal = "true" if value else "false"
        elif isinstance(value, (int, float)):
            literal = repr(value)
        elif isinstance(value, str):
            literal = quote(value)
        else:
            raise InvalidRequestError(f"filter value for {key!r} must be a string, number or boolean", f"filter.{key}")
        terms.append(f'metadata["{key}"] == {literal}')
    return " and ".join(terms)
