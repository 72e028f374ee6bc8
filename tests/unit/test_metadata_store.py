import pytest

from llamaray.errors import ConflictError, NotFoundError
from llamaray.store.metadata import MetadataStore


def test_records_survive_a_new_store_on_the_same_file(tmp_path):
    store = MetadataStore(tmp_path / "meta.db")
    store.create("bank", "b1", {"name": "docs"})
    store.put("bank", "b2", {"name": "more"})
    store.put("bank", "b2", {"name": "renamed"})
    reopened = MetadataStore(tmp_path / "meta.db")
    assert reopened.get("bank", "b1") == {"name": "docs"}
    assert [k for k, _ in reopened.list("bank")] == ["b1", "b2"]
    assert reopened.get("bank", "b2")["name"] == "renamed"


def test_conflicts_and_missing_records_are_errors(tmp_path):
    store = MetadataStore(tmp_path / "meta.db")
    store.create("job", "j1", {})
    with pytest.raises(ConflictError):
        store.create("job", "j1", {})
    store.delete("job", "j1")
    with pytest.raises(NotFoundError):
        store.get("job", "j1")
    with pytest.raises(NotFoundError):
        store.delete("job", "j1")
