"""Auth tokens: `--auth-token simple` and `--auth-token jwt,...`, as etcd's auth/simple_token.go and jwt.go.

A `TokenProvider` makes the token when an ``authenticate`` entry is applied (every
member applies it, so every member knows a simple token) and resolves the token a
request carries to the user and auth revision its permission is checked against.

- `SimpleTokens`: ``<16 random letters>.<raft index>``; the letters are chosen by the
  member that proposes the entry.  Held in memory only (gone on restart), each expires
  after `ttl` seconds without use, and a user's tokens go when it is deleted or its
  password changes.  The revision of a simple token is the store's current one.
- `JwtTokens`: PyJWT, signed with ``priv-key`` (RS*, PS*, ES*, or HS* with the key
  file's bytes as secret) and verified with ``pub-key`` (or the private key's public
  half); claims ``username``, ``revision`` and ``exp`` (``ttl``, default 5m) as etcd
  signs them.  A JWT carries the revision it was issued at: once the auth store
  changes, its requests are refused with ``revision of auth store is old``, as etcd's.

`token_provider` parses the flag.  Clocks are injected (tests use fake time).
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import grpc
import jwt
from cryptography.hazmat.primitives import serialization

from etcdpy.api import errors

SIMPLE_TOKEN_LETTERS = string.ascii_lowercase + string.ascii_uppercase
SIMPLE_TOKEN_PREFIX_LENGTH = 16
DEFAULT_JWT_TTL_SECONDS = 300.0

Clock = Callable[[], float]


class AuthOptionError(ValueError):
    """The --auth-token value cannot be used; the message says why."""


class TokenProvider(Protocol):
    """Makes and resolves tokens; member-local state, never replicated."""

    def enable(self) -> None: ...

    def disable(self) -> None: ...

    def new_prefix(self) -> str:
        """What the proposing member puts in the authenticate entry (simple tokens' random part)."""
        ...

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        """The token of an applied authenticate entry (at raft `index`) for `username`."""
        ...

    def info(self, token: str, current_revision: int) -> tuple[str, int] | None:
        """(username, auth revision) of a valid token; None if it is unknown, expired or forged."""
        ...

    def invalidate_user(self, username: str) -> None: ...


class SimpleTokens:
    """etcd's simple tokens: random, in memory, expiring after `ttl` seconds of idleness."""

    def __init__(self, ttl: float, clock: Clock = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, deadline)
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False
        self._tokens.clear()

    def new_prefix(self) -> str:
        return "".join(secrets.choice(SIMPLE_TOKEN_LETTERS) for _ in range(SIMPLE_TOKEN_PREFIX_LENGTH))

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        token = f"{prefix}.{index}"
        self._expire()
        if self._enabled:
            self._tokens[token] = (username, self.clock() + self.ttl)
        return token

    def info(self, token: str, current_revision: int) -> tuple[str, int] | None:
        entry = self._tokens.get(token)
        if entry is None:
            return None
        username, deadline = entry
        now = self.clock()
        if now >= deadline:
            del self._tokens[token]
            return None
        self._tokens[token] = (username, now + self.ttl)  # in use: its TTL starts again
        return username, current_revision

    def invalidate_user(self, username: str) -> None:
        for token in [t for t, (user, _) in self._tokens.items() if user == username]:
            del self._tokens[token]

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, (_, deadline) in self._tokens.items() if now >= deadline]:
            del self._tokens[token]

    def __len__(self) -> int:
        return len(self._tokens)


_HMAC = {"HS256", "HS384", "HS512"}
_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}


class JwtTokens:
    """etcd's JWT tokens: stateless, signed by every member with the same key."""

    def __init__(
        self, sign_method: str, signing_key: Any, verifying_key: Any, ttl: float, clock: Clock = time.time
    ) -> None:
        self.sign_method = sign_method
        self.signing_key = signing_key  # None: verify only (etcd's verifyOnly: authenticate fails)
        self.verifying_key = verifying_key
        self.ttl = ttl
        self.clock = clock

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def new_prefix(self) -> str:
        return ""

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        if self.signing_key is None:
            # etcd's ErrVerifyOnly, which its error table lacks: clients get it as UNKNOWN.
            raise errors.UnknownEtcdError(
                grpc.StatusCode.UNKNOWN, "auth: token signing attempted with verify-only key"
            )
        claims = {"username": username, "revision": revision, "exp": int(self.clock() + self.ttl)}
        return jwt.encode(claims, self.signing_key, algorithm=self.sign_method)

    def info(self, token: str, current_revision: int) -> tuple[str, int] | None:
        try:
            claims = jwt.decode(
                token,
                self.verifying_key,
                algorithms=[self.sign_method],
                options={"require": ["username", "revision"], "verify_exp": False},
            )
        except jwt.InvalidTokenError:
            return None
        username, revision, exp = claims.get("username"), claims.get("revision"), claims.get("exp")
        if not isinstance(username, str) or not isinstance(revision, int | float):
            return None
        if isinstance(exp, int | float) and self.clock() >= exp:  # expired (by the injected clock)
            return None
        return username, int(revision)

    def invalidate_user(self, username: str) -> None:
        pass  # a JWT cannot be taken back; the revision it carries goes stale instead


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (``5m``, ``1h30m``, ``300ms``), as jwt's ttl option takes."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise AuthOptionError(f"time: invalid duration {text!r}")
    return total


def _options(text: str) -> tuple[str, dict[str, str]]:
    kind, *pairs = text.split(",")
    options: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or "=" in value or name in options:
            raise AuthOptionError(f"invalid auth options: {text!r}")
        options[name] = value
    return kind, options


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AuthOptionError(f"cannot read the JWT {what} {path}: {exc.strerror}") from None


def jwt_tokens(options: dict[str, str], clock: Clock = time.time) -> JwtTokens:
    """The provider ``jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`` describes (etcd's options.go)."""
    method = options.get("sign-method", "")
    ttl = parse_go_duration(options["ttl"]) if options.get("ttl") else DEFAULT_JWT_TTL_SECONDS
    priv = _read(options["priv-key"], "private key") if options.get("priv-key") else b""
    pub = _read(options["pub-key"], "public key") if options.get("pub-key") else b""
    if method in _HMAC:
        if not priv:
            raise AuthOptionError("auth: missing key data")
        try:  # PyJWT refuses a key shorter than the hash (HS512: 64 bytes): say so at start
            jwt.encode({}, priv, algorithm=method)
        except jwt.InvalidKeyError as exc:
            raise AuthOptionError(f"the JWT key {options['priv-key']}: {exc}") from None
        return JwtTokens(method, priv, priv, ttl, clock)
    if method not in _ASYMMETRIC:
        raise AuthOptionError(f"auth: invalid auth signature method {method!r}")
    try:
        private = serialization.load_pem_private_key(priv, password=None) if priv else None
        public = serialization.load_pem_public_key(pub) if pub else None
    except (ValueError, TypeError) as exc:
        raise AuthOptionError(f"cannot load the JWT key: {exc}") from None
    if private is None and public is None:
        raise AuthOptionError("auth: missing key data")
    if private is not None:
        own_public = private.public_key()
        if public is not None and _der(own_public) != _der(public):
            raise AuthOptionError("auth: public and private keys don't match")
        return JwtTokens(method, private, own_public, ttl, clock)
    return JwtTokens(method, None, public, ttl, clock)


def _der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def token_provider(option: str, simple_ttl: float) -> TokenProvider:
    """The provider --auth-token names: ``simple`` (TTL --auth-token-ttl seconds) or ``jwt,...``."""
    kind, options = _options(option)
    if kind == "simple":
        return SimpleTokens(simple_ttl)
    if kind == "jwt":
        return jwt_tokens(options)
    raise AuthOptionError(f"unknown token type: {kind!r} (simple or jwt)")
