"""Endpoint strings as etcdctl accepts them, and the gRPC target each one dials.

``127.0.0.1:2379``, ``http://127.0.0.1:2379``, ``https://host:2379`` and
``unix:///path`` are all valid; the scheme only decides plain text vs TLS.  The
original string is kept because etcdctl prints endpoints exactly as given.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One server address: the text the user gave and what gRPC dials."""

    text: str
    target: str
    secure: bool

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``host:port`` or ``scheme://host:port`` (scheme http, https or unix)."""
        stripped = text.strip()
        scheme, sep, rest = stripped.partition("://")
        if not sep:
            return cls(stripped, stripped, secure=False)
        scheme = scheme.lower()
        if scheme in ("http", "https"):
            return cls(stripped, rest.rstrip("/"), secure=scheme == "https")
        if scheme in ("unix", "unixs"):
            return cls(stripped, f"unix://{rest}", secure=scheme == "unixs")
        raise ValueError(f"unknown endpoint scheme {scheme!r} in {text!r}")


def split_endpoints(value: str) -> list[str]:
    """Split etcdctl's comma-separated ``--endpoints`` value, dropping blanks."""
    return [part.strip() for part in value.split(",") if part.strip()]
