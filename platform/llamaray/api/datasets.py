"""Datasets API: named pointers to data that training and batch jobs read."""

from __future__ import annotations

from enum import Enum
from typing import Any, Protocol

from pydantic import Field

from llamaray.api.common import ApiModel, StoredURL


class DatasetColumnType(str, Enum):
    dialog = "dialog"
    text = "text"
    media = "media"
    number = "number"
    json = "json"


class Dataset(ApiModel):
    columns: dict[str, DatasetColumnType]
    content_url: StoredURL
    metadata: dict[str, Any] = Field(default_factory=dict)


class CreateDatasetRequest(ApiModel):
    uuid: str = Field(min_length=1)
    dataset: Dataset


class Datasets(Protocol):
    async def create_dataset(self, request: CreateDatasetRequest) -> None: ...

    async def get_dataset(self, dataset_id: str) -> Dataset: ...

    async def delete_dataset(self, dataset_id: str) -> None: ...
