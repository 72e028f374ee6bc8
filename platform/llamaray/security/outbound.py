"""Fetching what a request names, only from the public internet.

A URL in a request (a dataset's `content_url`, later a tool's) is fetched by the platform from
inside the cluster, where loopback, the private network and the cloud's metadata service are
reachable: a server-side request forgery away from the dashboard's Jobs API. So the host is
resolved once, every address it resolves to must be public, and the connection goes to that
pinned address (the name kept for `Host` and TLS), so a second lookup cannot answer otherwise.
Redirects are followed here, each one checked again; the body is capped in bytes and the whole
fetch in time; errors say what was refused, never what the remote sent.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.parse

import httpx

from llamaray.config import OutboundSettings
from llamaray.errors import InvalidRequestError

REDIRECTS = (301, 302, 303, 307, 308)


def check_public_address(address: str) -> str | None:
    """Why `address` may not be contacted, or None when it is a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped or ip.sixtofour):
        ip = ip.ipv4_mapped or ip.sixtofour
    for reason, hit in (
        ("a loopback", ip.is_loopback),
        ("a link-local (or cloud metadata)", ip.is_link_local),
        ("a private", ip.is_private),
        ("a multicast", ip.is_multicast),
        ("an unspecified", ip.is_unspecified),
        ("a reserved", ip.is_reserved),
    ):
        if hit:
            return f"{reason} address"
    return None if ip.is_global else "a non-public address"


def resolve_pinned(url: urllib.parse.SplitResult, policy: OutboundSettings, param: str) -> str:
    """The one address this fetch may connect to, every address of the host checked."""
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    if not host:
        raise InvalidRequestError("the URL names no host", param)
    allowed = policy.allow_private or host in policy.allow_hosts or f"{host}:{port}" in policy.allow_hosts
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidRequestError(f"the host {host!r} does not resolve", param) from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allowed:
        for address in addresses:
            if reason := check_public_address(address):
                raise InvalidRequestError(
                    f"refused to fetch from {host!r}: it resolves to {reason}; only public hosts may be named "
                    "(outbound.allow_hosts lists exceptions)",
                    param,
                )
    return addresses[0]


def fetch_public(url: str, policy: OutboundSettings, param: str, headers: dict[str, str] | None = None) -> bytes:
    """The body at `url`, fetched under `policy`: public addresses only, `https` unless
    `allow_http`, every redirect checked again, at most `max_bytes` within `timeout_s`.
    `headers` (an API key, say) go to the first host only, never to where it redirects."""
    deadline = time.monotonic() + policy.timeout_s
    first_host = _split(url, param).netloc
    for _ in range(policy.max_redirects + 1):
        parts = _split(url, param)
        if parts.scheme != "https" and not (parts.scheme == "http" and policy.allow_http):
            allowed = "https" + (" or http" if policy.allow_http else "")
            raise InvalidRequestError(f"refused to fetch a {parts.scheme or 'schemeless'} URL; {allowed} only", param)
        if parts.username or parts.password:
            raise InvalidRequestError("a URL with credentials in it is refused", param)
        address = resolve_pinned(parts, policy, param)
        extra = headers if parts.netloc == first_host else None
        status, location, body = _get_pinned(parts, address, deadline, policy, param, extra)
        if status in REDIRECTS and location:
            url = urllib.parse.urljoin(url, location)
            continue
        if status != 200:
            raise InvalidRequestError(f"fetching {_shown(url)} answered HTTP {status}", param)
        return body
    raise InvalidRequestError(f"fetching {_shown(url)}: more than {policy.max_redirects} redirects", param)


def _get_pinned(
    parts: urllib.parse.SplitResult,
    address: str,
    deadline: float,
    policy: OutboundSettings,
    param: str,
    extra_headers: dict[str, str] | None = None,
) -> tuple[int, str | None, bytes]:
    """One GET to the pinned `address`, the URL's name kept for `Host` and TLS (SNI and the
    certificate check); a redirect's status and location come back unfollowed."""
    host = parts.hostname
    netloc = f"[{address}]" if ":" in address else address
    if parts.port:
        netloc += f":{parts.port}"
    pinned = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers = {**(extra_headers or {}), "Host": parts.netloc.rsplit("@", 1)[-1], "Accept-Encoding": "identity"}
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    shown = _shown(urllib.parse.urlunsplit(parts))
    remaining = deadline - time.monotonic()
    try:
        with httpx.Client(timeout=max(remaining, 0.1), follow_redirects=False, trust_env=False) as client:
            with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                if response.status_code != 200:
                    return response.status_code, response.headers.get("location"), b""
                body = bytearray()
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > policy.max_bytes:
                        raise InvalidRequestError(f"{shown} is larger than {policy.max_bytes} bytes", param)
                    if time.monotonic() > deadline:
                        raise InvalidRequestError(f"fetching {shown} took longer than {policy.timeout_s:g} s", param)
                return 200, None, bytes(body)
    except httpx.TimeoutException:
        raise InvalidRequestError(f"fetching {shown} took longer than {policy.timeout_s:g} s", param) from None
    except httpx.HTTPError as exc:
        raise InvalidRequestError(f"cannot fetch {shown}: {type(exc).__name__}", param) from None


def _split(url: str, param: str) -> urllib.parse.SplitResult:
    """The URL's parts, or a 400: control characters and spaces (which HTTP would carry as they
    are, or refuse), a malformed IPv6 host or port."""
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise InvalidRequestError("a URL with spaces or control characters in it is refused", param)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is what raises)
    except ValueError as exc:
        raise InvalidRequestError(f"malformed URL: {exc}", param) from None
    return parts


def _shown(url: str) -> str:
    """The URL as an error may name it: no query (it may carry a token), at most 200 characters."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))[:200]
