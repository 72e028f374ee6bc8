"""Shared test set-up: GPU tests are skipped where there is no CUDA."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords or "/gpu/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """One real PostgreSQL server for the session; each test takes a fresh database on it."""
    from tests.servers import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def milvus_url() -> str:
    """One real Milvus server for the session (memory banks beyond Milvus Lite)."""
    from tests.servers import milvus_server

    with milvus_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """An S3 endpoint for the session (moto's server): `storage_path` on an object store."""
    from tests.servers import s3_server

    with s3_server() as endpoint:
        yield endpoint
