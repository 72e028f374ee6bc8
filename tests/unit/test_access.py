"""Who may call the platform: the checks `AccessMiddleware` asks before any route runs."""

from __future__ import annotations

import os

import pytest

from llamaray.config import SecuritySettings
from llamaray.security.access import AccessPolicy

LOCAL = {"host": "127.0.0.1:8000"}


def check(policy: AccessPolicy, path: str = "/v1/models", client: str = "127.0.0.1", **headers: str):
    refusal = policy.check(path, client, {**LOCAL, **headers})
    return refusal[0] if refusal else None


def test_with_keys_every_route_but_health_needs_one():
    policy = AccessPolicy(SecuritySettings(api_keys=["k1", "k2"]))
    assert check(policy) == 401
    assert check(policy, authorization="Bearer wrong") == 401
    assert check(policy, authorization="k1") == 401  # not a bearer token
    assert check(policy, authorization="Bearer k1") is None
    assert check(policy, authorization="bearer k2", client="10.1.2.3", host="llamaray.internal") is None
    assert check(policy, "/health") is None and check(policy, "/ready") is None
    assert check(policy, "/openapi.json") is None  # the schema is no secret ...
    assert check(AccessPolicy(SecuritySettings(api_keys=["k1"], docs=False)), "/openapi.json") == 401  # ... unless


def test_keys_from_the_environment_and_a_file_that_rotates(tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    policy = AccessPolicy(SecuritySettings(api_keys_file=str(keys)))
    assert policy.keys() == frozenset()
    monkeypatch.setenv("LLAMARAY_API_KEY", "env-a, env-b")
    keys.write_text("# the team's keys\nfile-1\n")
    assert policy.keys() == {"env-a", "env-b", "file-1"}
    keys.write_text("file-2\n")
    os.utime(keys, (1, 1))  # a new mtime, whatever the clock's resolution
    assert policy.keys() == {"env-a", "env-b", "file-2"}
    assert check(policy, authorization="Bearer file-1") == 401


def test_without_keys_only_loopback_clients_and_names_and_own_origin():
    policy = AccessPolicy(SecuritySettings())
    assert check(policy) is None
    assert check(policy, client="::1", host="[::1]:8000") is None
    assert check(policy, host="localhost:8000") is None
    assert check(policy, client="192.168.1.20") == 403  # bound wider without keys: refused
    assert check(policy, host="evil.example:8000") == 400  # DNS rebinding
    assert check(policy, origin="https://evil.example") == 403  # a cross-site form or fetch
    assert check(policy, origin="http://127.0.0.1:8000") is None  # the platform's own /docs
    assert check(AccessPolicy(SecuritySettings(allow_unauthenticated_remote=True)), client="10.0.0.2") is None


@pytest.mark.parametrize("origin", ["https://app.example", "https://other.example"])
def test_cors_origins_are_the_only_foreign_ones_allowed(origin):
    policy = AccessPolicy(SecuritySettings(api_keys=["k"], cors_origins=["https://app.example"]))
    allowed = check(policy, origin=origin, authorization="Bearer k") is None
    assert allowed is (origin == "https://app.example")
    assert policy.origin_allowed(origin, "127.0.0.1:8000") is allowed


def test_an_open_binding_without_keys_is_refused_unless_said_explicitly(monkeypatch):
    monkeypatch.delenv("LLAMARAY_API_KEY", raising=False)
    for host in ("127.0.0.1", "localhost", "::1", None):
        AccessPolicy(SecuritySettings()).check_binding(host)
    with pytest.raises(ValueError, match="without API keys"):
        AccessPolicy(SecuritySettings()).check_binding("0.0.0.0")
    AccessPolicy(SecuritySettings(api_keys=["k"])).check_binding("0.0.0.0")
    AccessPolicy(SecuritySettings(allow_unauthenticated_remote=True)).check_binding("0.0.0.0")
    monkeypatch.setenv("LLAMARAY_API_KEY", "from-env")
    AccessPolicy(SecuritySettings()).check_binding("10.0.0.5")


def test_model_cards_show_no_host_paths(tmp_path):
    from llamaray.inference.openai_service import shown_path

    assert shown_path("meta-llama/Llama-3.1-8B-Instruct", tmp_path) == "meta-llama/Llama-3.1-8B-Instruct"
    assert (
        shown_path(str(tmp_path / "jobs" / "sft" / "checkpoints" / "final"), tmp_path) == "jobs/sft/checkpoints/final"
    )
    assert shown_path("/srv/secret/place/tiny-llama-chat", tmp_path) == "tiny-llama-chat"


def test_a_key_owns_what_it_creates_and_an_admin_key_sees_everything(tmp_path):
    from llamaray.security.ownership import EVERYONE, NOBODY, Owners, acting_as, current, stop_acting
    from llamaray.store.metadata import MetadataStore

    policy = AccessPolicy(SecuritySettings(api_keys=["alice", "bob"], admin_api_keys=["root"]))
    alice, bob, root = (policy.principal({"authorization": f"Bearer {k}"}) for k in ("alice", "bob", "root"))
    assert alice.owner != bob.owner and not alice.admin and root.admin
    assert "alice" not in alice.owner  # a fingerprint, never the key
    assert AccessPolicy(SecuritySettings()).principal({}) == EVERYONE  # keyless: everyone
    assert policy.principal({}) == policy.principal({"authorization": "Bearer nope"}) == NOBODY

    owners = Owners(MetadataStore(tmp_path / "metadata.db"))
    token = acting_as(alice)
    owners.claim("bank", "b1")
    stop_acting(token)
    owners.claim("bank", "old")  # outside a request: nobody's
    assert current() == EVERYONE
    for principal, seen in ((alice, {"b1"}), (bob, set()), (root, {"b1", "old"})):
        token = acting_as(principal)
        try:
            assert set(owners.only_visible("bank", ["b1", "old"], str)) == seen
            if "b1" not in seen:
                with pytest.raises(LookupError):
                    owners.check("bank", "b1", lambda: LookupError("bank 'b1' does not exist"))
        finally:
            stop_acting(token)
