"""The metadata store on both of its databases: SQLite (embedded) and a real PostgreSQL server."""

import threading

import pytest

from llamaray.errors import ConflictError, NotFoundError
from llamaray.store.local_disk import filesystem_of, require_local_disk
from llamaray.store.metadata import MetadataStore


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """Where a store lives: a SQLite file, or a fresh database on the session's server."""
    if request.param == "sqlite":
        return tmp_path / "meta.db"
    from tests.servers import fresh_database

    return fresh_database(request.getfixturevalue("postgres_url"))


def test_records_survive_a_new_store_on_the_same_database(location):
    store = MetadataStore(location)
    store.create("bank", "b1", {"name": "docs"})
    store.put("bank", "b2", {"name": "more"})
    store.put("bank", "b2", {"name": "renamed"})
    reopened = MetadataStore(location)
    assert reopened.get("bank", "b1") == {"name": "docs"}
    assert [k for k, _ in reopened.list("bank")] == ["b1", "b2"]
    assert reopened.get("bank", "b2")["name"] == "renamed"


def test_conflicts_and_missing_records_are_errors(location):
    store = MetadataStore(location)
    store.create("job", "j1", {})
    with pytest.raises(ConflictError):
        store.create("job", "j1", {})
    store.delete("job", "j1")
    with pytest.raises(NotFoundError):
        store.get("job", "j1")
    with pytest.raises(NotFoundError):
        store.delete("job", "j1")


def test_any_alphabet_in_keys_values_and_lines(location):
    store = MetadataStore(location)
    keys = ["résumé", "nul\x00inside", "back\\slash\\0", "日本語", "a/b c"]
    for i, key in enumerate(keys):
        store.put("doc", key, {"text": key, "i": i})
    assert [k for k, _ in store.list("doc")] == keys
    assert all(store.get("doc", key)["text"] == key for key in keys)
    store.append_lines("log", "nul\x00inside", ["line with \x00 and \\0", "plain"])
    assert store.read_lines("log", "nul\x00inside") == ["line with \x00 and \\0", "plain"]
    store.delete("doc", "nul\x00inside")
    assert len(store.list("doc")) == len(keys) - 1
    # which of some keys exist, by key (a bank insert's check), across the 500-key batches
    assert store.existing("doc", ["日本語", "nul\x00inside", "missing", *map(str, range(600))]) == {"日本語"}


def test_many_writes_commit_together_and_lines_append_in_order(location):
    store = MetadataStore(location)
    store.put("bank", "b", {"version": 1})
    store.append_lines("log", "b", ["old"])
    store.write_many(
        puts=[("bank", "b", {"version": 2}), ("doc", "b/1", {"v": 2})],
        deletes=[("doc", "missing-is-fine")],
        deleted_lines=[("log", "b")],
    )
    assert store.get("bank", "b") == {"version": 2} and store.read_lines("log", "b") == []
    with pytest.raises(TypeError):  # a value that is not JSON: nothing of the batch is written
        store.write_many(puts=[("bank", "b", {"version": 3}), ("doc", "b/2", {"v": object()})])
    assert store.get("bank", "b") == {"version": 2}
    store.append_lines("log", "b", ["first", "second"])
    assert store.read_lines("log", "b", start=1) == ["second"]
    assert store.rename_kind("log", "journal") == 0 and store.read_lines("journal", "b") == ["first", "second"]


def test_appenders_at_once_never_lose_or_reorder_a_line(location):
    """Several writers append to one log at once (the tracker's threads, drivers on other nodes)."""
    MetadataStore(location)  # the tables exist before the writers race

    def write(writer: int) -> None:
        store = MetadataStore(location)
        for i in range(20):
            store.append_lines("log", "job", [f"{writer}:{i}"])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = MetadataStore(location).read_lines("log", "job")
    assert len(lines) == 80
    for writer in range(4):
        assert [line for line in lines if line.startswith(f"{writer}:")] == [f"{writer}:{i}" for i in range(20)]


def test_sqlite_and_milvus_lite_refuse_a_network_filesystem(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {tmp_path / 'shared'} nfs4 rw,relatime 0 0\n")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert filesystem_of(tmp_path / "shared" / "data", str(mounts)) == "nfs4"
    assert filesystem_of(tmp_path / "local", str(mounts)) == "ext4"
    with pytest.raises(ValueError, match="network filesystem .nfs4.*metadata_url"):
        require_local_disk(tmp_path / "shared" / "data", "the SQLite metadata store", str(mounts))
    require_local_disk(tmp_path, "the SQLite metadata store", str(mounts))
