"""`llamaray.client` calls every route the gateway's routers serve, so a new route that no client
method reaches fails here (the methods' signatures are checked in test_protocols.py)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import llamaray.client
import llamaray.serve.routers

# Other names for routes the client reaches by their own name: vLLM's and OpenAI's adapter routes
# register and unregister adapters, as /models/adapters/register and /unregister do.
ALIASES = {
    ("POST", "/v1/load_lora_adapter"),
    ("POST", "/v1/unload_lora_adapter"),
    ("DELETE", "/v1/models/"),
}
CALL = re.compile(r'"(GET|POST|DELETE|PUT)",\s*f?"(/[^"{]*)')


def served_routes() -> set[tuple[str, str]]:
    routes = set()
    for module in pkgutil.iter_modules(llamaray.serve.routers.__path__):
        router = getattr(importlib.import_module(f"llamaray.serve.routers.{module.name}"), "router", None)
        for route in getattr(router, "routes", []):
            if not route.include_in_schema:
                continue
            path = route.path.split("{")[0]
            routes |= {(method, path) for method in route.methods - {"HEAD"}}
    return routes


def client_calls() -> set[tuple[str, str]]:
    source = "".join(path.read_text() for path in Path(llamaray.client.__file__).parent.glob("*.py"))
    return set(CALL.findall(source))


def test_the_client_calls_every_route():
    missing = served_routes() - client_calls() - ALIASES
    assert not missing, f"routes no llamaray.client method calls: {sorted(missing)}"


def test_the_client_calls_no_route_that_is_not_served():
    assert not client_calls() - served_routes(), "the client calls routes the gateway does not serve"
