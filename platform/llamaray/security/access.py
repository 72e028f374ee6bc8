"""Who may call the platform: API keys, and the checks that keep a keyless laptop platform safe.

With keys (from the config, `LLAMARAY_API_KEY`, or a file re-read when it changes, so keys
rotate without a restart) every route but health, readiness and the docs needs
`Authorization: Bearer <key>`, as vLLM's `--api-key` and OpenAI's clients do. Without keys
(`make serve` on a laptop) only loopback clients are served, and two checks stop a web page the
user visits from reaching the platform through their browser: the `Host` header must name
loopback (DNS rebinding gives a page a name of its own that resolves to 127.0.0.1) and an
`Origin` other than the platform's own or a configured CORS origin is refused (a cross-site form
or fetch). Each check answers a status and a reason, or None to let the request through.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import urllib.parse
from pathlib import Path

from llamaray.config import SecuritySettings
from llamaray.security.ownership import EVERYONE, NOBODY, Principal

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
PUBLIC_PATHS = frozenset({"/health", "/ready"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})

Refusal = tuple[int, str]


class AccessPolicy:
    def __init__(self, settings: SecuritySettings) -> None:
        self.settings = settings
        self._files: dict[Path, tuple[float, frozenset[str]]] = {}

    def keys(self) -> frozenset[str]:
        """Every valid key, admin keys included."""
        s = self.settings
        keys = set(s.api_keys) | self.admin_keys()
        keys.update(_env_keys(s.api_keys_env))
        if s.api_keys_file:
            keys |= self._keys_in_file(Path(s.api_keys_file))
        return frozenset(keys)

    def admin_keys(self) -> frozenset[str]:
        s = self.settings
        keys = frozenset(s.admin_api_keys) | _env_keys(s.admin_api_keys_env)
        return keys | self._keys_in_file(Path(s.admin_api_keys_file)) if s.admin_api_keys_file else keys

    def principal(self, headers: dict[str, str]) -> Principal:
        """Who a request that passed `check` acts as: everyone without keys, else its key (nobody
        on a public route called without one)."""
        keys = self.keys()
        if not keys:
            return EVERYONE
        token = _bearer(headers.get("authorization", ""))
        if token is None or token not in keys:
            return NOBODY
        return Principal.of_key(token, admin=token in self.admin_keys())

    def _keys_in_file(self, path: Path) -> frozenset[str]:
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return frozenset()
        known = self._files.get(path)
        if known is None or known[0] != mtime:
            lines = path.read_text().splitlines()
            known = self._files[path] = (
                mtime,
                frozenset(k.strip() for k in lines if k.strip() and not k.startswith("#")),
            )
        return known[1]

    def check_binding(self, host: str | None) -> None:
        """Refuses (ValueError) to serve on a non-loopback address without keys, unless the
        config says so explicitly: the platform would otherwise be open to the network."""
        if host is None or _is_loopback_name(host) or self.keys() or self.settings.allow_unauthenticated_remote:
            return
        raise ValueError(
            f"the platform listens on {host} without API keys: set security.api_keys, LLAMARAY_API_KEY or "
            "security.api_keys_file, or security.allow_unauthenticated_remote: true to serve it open anyway"
        )

    def docs_served(self) -> bool:
        return self.settings.docs

    def is_public(self, path: str) -> bool:
        return path in PUBLIC_PATHS or (self.settings.docs and path in DOCS_PATHS)

    def check(self, path: str, client_host: str | None, headers: dict[str, str]) -> Refusal | None:
        """Why this request is refused, or None."""
        if self.is_public(path):
            return None
        keys = self.keys()
        host = _hostname(headers.get("host", ""))
        if keys:
            if not _has_key(headers.get("authorization", ""), keys):
                return 401, "a valid API key is required: send it as `Authorization: Bearer <key>`"
            trusted = self.settings.trusted_hosts
        else:
            if not self.settings.allow_unauthenticated_remote and not _is_loopback(client_host):
                return 403, (
                    "this platform has no API keys, so it serves loopback clients only; configure "
                    "security.api_keys (or LLAMARAY_API_KEY) to serve others"
                )
            trusted = self.settings.trusted_hosts or sorted(LOOPBACK_NAMES)
        if trusted and "*" not in trusted and host not in trusted:
            return 400, f"the Host header {host!r} is not one this platform answers to (security.trusted_hosts)"
        origin = headers.get("origin")
        if origin and not self.origin_allowed(origin, headers.get("host", "")):
            return 403, f"cross-origin request from {origin!r} refused (security.cors_origins lists allowed origins)"
        return None

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        if origin in self.settings.cors_origins or "*" in self.settings.cors_origins:
            return True
        return urllib.parse.urlsplit(origin).netloc == host_header  # the platform's own pages (/docs)


def _env_keys(variable: str) -> frozenset[str]:
    return frozenset(k.strip() for k in os.environ.get(variable, "").split(",") if k.strip())


def _bearer(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _has_key(authorization: str, keys: frozenset[str]) -> bool:
    token = _bearer(authorization)
    return token is not None and any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:8000
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _is_loopback_name(host: str) -> bool:
    return host in LOOPBACK_NAMES or _is_loopback(host)


def _is_loopback(client_host: str | None) -> bool:
    if not client_host:
        return False
    try:
        ip = ipaddress.ip_address(client_host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback
