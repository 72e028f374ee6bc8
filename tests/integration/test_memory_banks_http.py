"""Memory banks through the HTTP API on real Milvus Lite and real all-MiniLM-L6-v2 embeddings."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import openai
import pytest

TOPICS = {
    "volcano": "Volcanoes erupt when magma rises through the crust and lava flows down the slopes.",
    "photosynthesis": "Plants turn sunlight, water and carbon dioxide into sugar and oxygen by photosynthesis.",
    "chess": "In chess the knight moves in an L shape and the bishop slides along diagonals.",
    "espresso": "Espresso is brewed by forcing hot water through finely ground coffee beans under pressure.",
    "tides": "Ocean tides rise and fall twice a day because of the gravitational pull of the moon.",
    "vaccines": "Vaccines train the immune system to recognise a pathogen before an infection happens.",
    "bitcoin": "Bitcoin is a cryptocurrency whose transactions are recorded on a public blockchain ledger.",
    "marathon": "A marathon is a long-distance running race of a little over forty-two kilometres.",
    "origami": "Origami is the Japanese art of folding a single sheet of paper into shapes like cranes.",
    "glaciers": "Glaciers are slow rivers of ice that carve valleys as they creep downhill over centuries.",
    "sourdough": "Sourdough bread rises thanks to a starter of wild yeast and lactic acid bacteria.",
    "jazz": "Jazz musicians improvise melodies over swing rhythms and rich seventh chords.",
    "bees": "Honey bees collect nectar from flowers and dance to tell the hive where food is.",
    "rust": "Iron rusts when it reacts with oxygen and moisture, forming reddish iron oxide.",
    "telescope": "Telescopes gather light with lenses or mirrors so astronomers can see distant galaxies.",
    "pyramids": "The ancient Egyptians built the pyramids of Giza as tombs for their pharaohs.",
    "penguins": "Penguins are flightless birds that swim with flipper-like wings in cold southern seas.",
    "sushi": "Sushi combines vinegared rice with raw fish, seaweed and a touch of wasabi.",
    "earthquake": "Earthquakes happen when tectonic plates slip suddenly along a fault line.",
    "recycling": "Recycling sorts used glass, paper and plastic so the materials can be made into new products.",
    "guitar": "An acoustic guitar has six strings that vibrate over a hollow wooden body.",
    "insulin": "Insulin is a hormone from the pancreas that lets cells absorb glucose from the blood.",
    "wifi": "Wi-Fi routers send data to laptops and phones over radio waves.",
    "tennis": "Tennis players hit a felt ball over a net with rackets on grass or clay courts.",
    "compost": "Compost is decomposed kitchen scraps and leaves that enrich garden soil.",
    "lighthouse": "Lighthouses warn ships at night with a rotating beam of light from a tall tower.",
    "saturn": "Saturn is the gas giant planet famous for its bright rings of ice and rock.",
    "cheese": "Cheese is made by curdling milk with rennet and ageing the curds.",
    "password": "A strong password is long, unique and kept in a password manager.",
    "kayak": "A kayak is a narrow boat paddled with a double-bladed paddle.",
}
QUERIES = {
    "How does lava come out of a mountain?": "volcano",
    "How do plants make food from light?": "photosynthesis",
    "Which chess piece moves in an L?": "chess",
    "How is strong coffee made?": "espresso",
    "Why does the sea level change during the day?": "tides",
    "How do shots protect against disease?": "vaccines",
    "What is a decentralised digital currency?": "bitcoin",
    "How long is the classic running race?": "marathon",
    "Folding paper cranes": "origami",
    "rivers of ice in mountains": "glaciers",
    "bread made with wild yeast": "sourdough",
    "improvised music with swing": "jazz",
    "insects that make honey": "bees",
    "why does iron turn red and flaky": "rust",
    "instrument for looking at stars": "telescope",
    "tombs of Egyptian kings": "pyramids",
    "birds that cannot fly and swim in Antarctica": "penguins",
    "Japanese dish of rice and raw fish": "sushi",
    "what causes the ground to shake": "earthquake",
    "hormone that controls blood sugar": "insulin",
}


def doc(uuid: str, text: str | bytes, mime_type: str = "text/plain", **metadata) -> dict:
    raw = text if isinstance(text, bytes) else text.encode()
    return {"uuid": uuid, "content": base64.b64encode(raw).decode(), "metadata": metadata, "mime_type": mime_type}


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF with one line of text, written by hand (the objects and their offsets)."""
    stream = f"BT /F1 18 Tf 40 700 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf_file(objects)


def pdf_file(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1, the first the catalog), its xref table written."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def query(client, bank: str, text: str, top_k: int = 5, **extra) -> list[dict]:
    response = client.post("/memory_bank/query", json={"bank_uuid": bank, "query": text, "top_k": top_k, **extra})
    assert response.status_code == 200, response.text
    return response.json()["chunks"]


@pytest.fixture(scope="module")
def topics_bank(platform_url) -> str:
    documents = [doc(name, text, topic=name, index=i) for i, (name, text) in enumerate(TOPICS.items())]
    response = httpx.post(
        f"{platform_url}/memory_banks/create",
        timeout=120,
        params={"bank_uuid": "topics", "bank_name": "Topics"},
        json=documents,
    )
    assert response.status_code == 200, response.text
    return "topics"


def test_retrieval_recall_at_5(client, topics_bank):
    hits = [
        expected in [c["document_uuid"] for c in query(client, topics_bank, question)]
        for question, expected in QUERIES.items()
    ]
    recall = sum(hits) / len(hits)
    assert recall >= 0.9, recall
    chunks = query(client, topics_bank, "Which chess piece moves in an L?", top_k=3)
    assert chunks[0]["document_uuid"] == "chess" and chunks[0]["metadata"]["topic"] == "chess"
    assert chunks[0]["score"] >= chunks[1]["score"] >= chunks[2]["score"]


def test_bm25_hybrid_and_metadata_filter(client, topics_bank):
    assert query(client, topics_bank, "pharaohs Giza", mode="bm25")[0]["document_uuid"] == "pyramids"
    assert query(client, topics_bank, "tombs of Egyptian kings", mode="hybrid")[0]["document_uuid"] == "pyramids"
    only = query(client, topics_bank, "tombs of Egyptian kings", filter={"topic": "sushi"})
    assert [c["document_uuid"] for c in only] == ["sushi"]


def test_bank_listing_get_update_delete_and_drop(client):
    bank = {"bank_uuid": "notes", "bank_name": "Notes"}
    assert (
        client.post("/memory_banks/create", params=bank, json=[doc("a", "The launch code is 4711.")]).status_code == 200
    )
    assert client.post("/memory_banks/create", params=bank, json=[]).status_code == 409
    assert {"uuid": "notes", "name": "Notes"} in client.get("/memory_banks/get").json()

    unicode = "Ünïcödé: 東京は日本の首都です。 🚀"
    inserted = client.post("/memory_bank/insert", params={"bank_uuid": "notes"}, json=[doc("b", unicode, lang="ja")])
    assert inserted.status_code == 200, inserted.text
    assert (
        client.post("/memory_bank/insert", params={"bank_uuid": "notes"}, json=[doc("b", "again")]).status_code == 409
    )
    got = client.post("/memory_bank/get", params={"bank_uuid": "notes"}, json=["b"]).json()
    assert base64.b64decode(got[0]["content"]).decode() == unicode and got[0]["metadata"] == {"lang": "ja"}
    assert query(client, "notes", "capital of Japan", top_k=1)[0]["text"] == unicode

    updated = client.post(
        "/memory_bank/update", params={"bank_uuid": "notes"}, json=[doc("a", "The launch code changed to 1234.")]
    )
    assert updated.status_code == 200, updated.text
    texts = [c["text"] for c in query(client, "notes", "launch code", top_k=10)]
    assert "The launch code changed to 1234." in texts and "The launch code is 4711." not in texts

    assert client.post("/memory_bank/delete", params={"bank_uuid": "notes"}, json=["a"]).status_code == 200
    assert all(c["document_uuid"] != "a" for c in query(client, "notes", "launch code", top_k=10))
    missing = client.post("/memory_bank/get", params={"bank_uuid": "notes"}, json=["a"])
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "document_uuids[0]"
    assert client.post("/memory_bank/update", params={"bank_uuid": "notes"}, json=[doc("zzz", "x")]).status_code == 404

    assert client.delete("/memory_banks/drop", params={"bank_uuid": "notes"}).json() == "notes"
    assert client.delete("/memory_banks/drop", params={"bank_uuid": "notes"}).status_code == 404
    assert client.post("/memory_bank/query", json={"bank_uuid": "notes", "query": "x"}).status_code == 404


def test_html_pdf_json_and_markdown_documents(client):
    html = (
        "<html><head><style>p {color: red}</style><script>var secret = 1;</script></head>"
        "<body><h1>Routers</h1><p>Packets are forwarded by routers &amp; switches.</p></body></html>"
    )
    documents = [
        doc("page", html, "text/html"),
        doc("paper", tiny_pdf("Quantum entanglement links particles over distance."), "application/pdf"),
        doc("record", json.dumps({"city": "Lisbon", "famous_for": "custard tarts"}), "application/json"),
        doc("readme", "# Install\n\nRun `make serve` to start.", "text/markdown"),
    ]
    response = client.post(
        "/memory_banks/create", params={"bank_uuid": "formats", "bank_name": "Formats"}, json=documents
    )
    assert response.status_code == 200, response.text
    page = query(client, "formats", "network packet forwarding", top_k=1)[0]
    assert (
        page["document_uuid"] == "page"
        and "secret" not in page["text"]
        and "color" not in page["text"]
        and "&" in page["text"]
    )
    assert query(client, "formats", "entangled particles physics", top_k=1)[0]["document_uuid"] == "paper"
    assert query(client, "formats", "Portuguese pastries", top_k=1)[0]["document_uuid"] == "record"


@pytest.mark.parametrize(
    ("document", "status", "param"),
    [
        ({"uuid": "x", "content": "not base64!!", "mime_type": "text/plain"}, 422, "content"),
        (doc("x", b""), 400, "documents[1].content"),
        (doc("x", "   \n "), 400, "documents[1].content"),
        (doc("x", "hello", "image/png"), 400, "documents[1].mime_type"),
        (doc("x", b"\xff\xfe\x00bad", "text/plain"), 400, "documents[1].content"),
        (doc("x", b"%PDF-1.4 broken", "application/pdf"), 400, "documents[1].content"),
        (doc("x", "x" * 12_000_001), 400, "documents[1].content"),
    ],
)
def test_bad_documents_are_refused_and_nothing_is_written(client, document, status, param):
    good = doc("fine", "A perfectly good document.")
    response = client.post(
        "/memory_banks/create", params={"bank_uuid": "bad-batch", "bank_name": "b"}, json=[good, document]
    )
    assert response.status_code == status, response.text
    assert param in response.json()["error"]["param"], response.json()
    assert "bad-batch" not in [b["uuid"] for b in client.get("/memory_banks/get").json()]


def test_openai_embeddings(platform_url):
    client = openai.OpenAI(base_url=f"{platform_url}/v1", api_key="unused")
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat", "a kitten", "a tax return"])
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384) and result.usage.prompt_tokens > 0
    similar, different = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > different
    plain = client.embeddings.create(model="all-MiniLM-L6-v2", input="a cat", encoding_format="float")
    assert np.allclose(plain.data[0].embedding, vectors[0], atol=1e-5)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-embedder", input="x")
    # Token ids of the model's own tokenizer (all-MiniLM-L6-v2's: "a" 1037, "cat" 4937), one list or several.
    ids = client.embeddings.create(model="all-MiniLM-L6-v2", input=[[1037, 4937], [1037, 4937]])
    assert np.allclose(ids.data[1].embedding, vectors[0], atol=1e-5) and ids.usage.prompt_tokens == 4
    one = client.embeddings.create(model="all-MiniLM-L6-v2", input=[1037, 4937])
    assert len(one.data) == 1 and np.allclose(one.data[0].embedding, vectors[0], atol=1e-5)
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[[1037], [10**9]])
    assert bad.value.body["param"] == "input[1]"


def test_chunk_sizes_per_bank(client):
    text = " ".join(f"sentence number {i} talks about topic {i % 7}." for i in range(60))
    params = {"bank_uuid": "small-chunks", "bank_name": "s", "chunk_size_tokens": 32, "chunk_overlap_tokens": 8}
    assert client.post("/memory_banks/create", params=params, json=[doc("long", text)]).status_code == 200
    chunks = query(client, "small-chunks", "topic 3", top_k=50)
    assert len(chunks) > 10 and all(len(c["text"]) < len(text) / 5 for c in chunks)
    bad = client.post(
        "/memory_banks/create", params={**params, "bank_uuid": "bad-chunks", "chunk_overlap_tokens": 32}, json=[]
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "chunk_overlap_tokens"


def test_a_bank_without_full_text_answers_dense_queries_and_refuses_bm25(client):
    params = {"bank_uuid": "dense-only", "bank_name": "d", "full_text": "false"}
    created = client.post("/memory_banks/create", params=params, json=[doc("egypt", TOPICS["pyramids"])])
    assert created.status_code == 200, created.text
    assert query(client, "dense-only", "tombs of Egyptian kings")[0]["document_uuid"] == "egypt"
    for mode in ("bm25", "hybrid"):
        refused = client.post("/memory_bank/query", json={"bank_uuid": "dense-only", "query": "Giza", "mode": mode})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "mode", refused.text
        assert "full_text=false" in refused.json()["error"]["message"]
    assert client.delete("/memory_banks/drop", params={"bank_uuid": "dense-only"}).status_code == 200


ODD_IDS = ["résumé", 'say "hi"\\', "line\nbreak\ttab", "東京🚀", "nul\x00byte", "\u2028sep"]


def test_ids_and_metadata_of_any_alphabet_are_deleted_updated_and_filtered_for_real(client):
    """Every chunk of a document goes with it, whatever its id is made of; an update leaves only
    the new text; a metadata filter matches exactly (Milvus' filter, not JSON, escapes them)."""
    bank = {"bank_uuid": "alphabets", "bank_name": "a"}
    docs = [doc(uuid, f"Document {i} tells about the lighthouse keeper.", tag=uuid) for i, uuid in enumerate(ODD_IDS)]
    assert client.post("/memory_banks/create", params=bank, json=docs).status_code == 200

    def ids() -> set[str]:
        return {c["document_uuid"] for c in query(client, "alphabets", "lighthouse keeper", top_k=50)}

    assert ids() == set(ODD_IDS)
    for uuid in ODD_IDS:
        assert [c["document_uuid"] for c in query(client, "alphabets", "keeper", filter={"tag": uuid})] == [uuid]
    updated = client.post(
        "/memory_bank/update",
        params={"bank_uuid": "alphabets"},
        json=[doc(uuid, "Now about tulips.") for uuid in ODD_IDS[:3]],
    )
    assert updated.status_code == 200, updated.text
    chunks = query(client, "alphabets", "lighthouse keeper", top_k=50)
    assert {c["document_uuid"] for c in chunks if "lighthouse" in c["text"]} == set(ODD_IDS[3:])
    assert client.post("/memory_bank/delete", params={"bank_uuid": "alphabets"}, json=ODD_IDS).status_code == 200
    assert ids() == set()


def test_limits_are_4xx_naming_the_field(client):
    bank = {"bank_uuid": "limits", "bank_name": "l"}
    too_long = client.post("/memory_banks/create", params=bank, json=[doc("é" * 300, "x")])
    assert too_long.status_code == 422 and too_long.json()["error"]["param"] == "0.uuid"
    metadata = client.post("/memory_banks/create", params=bank, json=[doc("m", "x", blob="y" * 70_000)])
    assert metadata.status_code == 422 and metadata.json()["error"]["param"] == "0.metadata"
    overlap = client.post("/memory_banks/create", params={**bank, "chunk_size_tokens": 64, "chunk_overlap_tokens": 63})
    assert overlap.status_code == 400 and overlap.json()["error"]["param"] == "chunk_overlap_tokens"
    many = client.post("/memory_bank/get", params={"bank_uuid": "topics"}, json=[str(i) for i in range(1025)])
    assert many.status_code == 422 and "limits.max_documents" in many.json()["error"]["message"]
    top_k = client.post("/memory_bank/query", json={"bank_uuid": "topics", "query": "x", "top_k": 10**6})
    assert top_k.status_code == 422 and top_k.json()["error"]["param"] == "top_k"
