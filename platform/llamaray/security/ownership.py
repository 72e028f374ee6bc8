"""Whose a resource is: each key sees and changes only what it created, an admin key all.

The key a request came with becomes the request's `Principal` (set by the gateway's access
middleware, read here through a context variable), so the services need no extra argument: a
job, bank, dataset, agent or adapter is claimed for the principal when it is created, and a
principal that does not own one is told it does not exist (a 404, which says no more). Owners
are records of their own in the metadata store, one per resource, whatever holds the resource
(the job tracker, Milvus, the store itself). Without keys, and outside a request (a job's
driver, the platform's own work), the principal is everyone.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from llamaray.store.metadata import MetadataStore

OWNER_KIND = "owner"
T = TypeVar("T")


@dataclass(frozen=True)
class Principal:
    owner: str | None  # a key's fingerprint; None: nobody in particular
    admin: bool

    @classmethod
    def of_key(cls, key: str, admin: bool) -> "Principal":
        return cls("key-" + hashlib.sha256(key.encode()).hexdigest()[:16], admin)


EVERYONE = Principal(None, admin=True)  # no keys, or the platform's own work
NOBODY = Principal(None, admin=False)  # no valid key where keys exist (public routes only)
_current: ContextVar[Principal] = ContextVar("llamaray_principal", default=EVERYONE)


def acting_as(principal: Principal) -> Token:
    return _current.set(principal)


def stop_acting(token: Token) -> None:
    _current.reset(token)


def current() -> Principal:
    return _current.get()


class Owners:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def claim(self, kind: str, resource_id: str) -> None:
        """Records the current principal as the owner (a keyless platform's: nobody)."""
        self.store.put(OWNER_KIND, f"{kind}/{resource_id}", {"owner": current().owner})

    def visible(self, kind: str, resource_id: str) -> bool:
        principal = current()
        if principal.admin:
            return True
        try:
            return self.store.get(OWNER_KIND, f"{kind}/{resource_id}")["owner"] == principal.owner
        except Exception:  # no owner on record: made before keys, or by the platform itself
            return False

    def check(self, kind: str, resource_id: str, missing: Callable[[], Exception]) -> None:
        """Raises `missing()` (the caller's 404) when the current principal may not see it."""
        if not self.visible(kind, resource_id):
            raise missing()

    def only_visible(self, kind: str, items: Iterable[T], resource_id: Callable[[T], str]) -> list[T]:
        items = list(items)
        if current().admin:
            return items
        return [item for item in items if self.visible(kind, resource_id(item))]
