"""Reading a Protocol's methods, for the code that serves one by name and the test that checks
implementations against it."""

from __future__ import annotations

import inspect


def protocol_methods(protocol: type) -> list[str]:
    """The public methods a Protocol declares, its bases' included, in a stable order."""
    names: list[str] = []
    for cls in reversed(protocol.__mro__):
        if cls is object or not getattr(cls, "_is_protocol", False):
            continue
        for name, member in vars(cls).items():
            if not name.startswith("_") and inspect.isfunction(member) and name not in names:
                names.append(name)
    return names
