"""API keys, the admin token and per-key limits.

Keys are never stored: the gateway keeps `sha256(key)` (hex) and compares digests in constant time.
Each key belongs to a tenant; the tenant id is the KV cache salt, so two tenants never share KV blocks.

Limits per key, both token buckets refilled continuously over a minute:
- `requests_per_minute`: one token per request (0 = unlimited);
- `tokens_per_minute`: prompt tokens + max_tokens of each request (0 = unlimited);
- `max_tokens_per_request`: an upper bound on max_tokens (0 = the gateway's own bound).
A request over a bucket gets 429 (`RateLimitedError`, retryable). A missing or unknown key gets 401,
a valid key asking for another tenant 403, an admin call without the admin token 403.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from common.errors import AuthenticationError, PermissionDeniedError, RateLimitedError

ANONYMOUS_TENANT = ""


def hash_key(key: str) -> str:
    """The stored form of an API key or token: sha256 hex digest."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeySpec:
    """One API key as configured: `sha256` of the key (hex), never the key itself."""

    name: str
    sha256: str
    tenant: str
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    max_tokens_per_request: int = 0

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"api_keys[{self.name}].sha256 must be 64 lowercase hex characters")
        if not self.tenant or any(c in self.tenant for c in " :/"):
            raise ValueError(f"api_keys[{self.name}].tenant must be non-empty without ' ', ':' or '/'")
        for field in ("requests_per_minute", "tokens_per_minute", "max_tokens_per_request"):
            if getattr(self, field) < 0:
                raise ValueError(f"api_keys[{self.name}].{field} must be >= 0")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (for logs, never the key) and tenant. `key_sha256` names the
    key's rate-limit buckets ("" = anonymous: no limits)."""

    key_name: str
    tenant: str
    max_tokens_per_request: int = 0
    key_sha256: str = ""


class _Bucket:
    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.updated = time.monotonic()

    def take(self, amount: float) -> float:
        """Take `amount`; returns 0 on success, else the seconds until it would fit."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60.0)
        self.updated = now
        if amount <= self.level or (amount > self.capacity and self.level >= self.capacity):
            self.level -= amount
            return 0.0
        return (min(amount, self.capacity) - self.level) * 60.0 / self.capacity


class Authenticator:
    """Checks credentials and limits. Used from the event loop only (not thread-safe)."""

    def __init__(self, keys: tuple[ApiKeySpec, ...], admin_token_sha256: str | None,
                 allow_anonymous: bool = False) -> None:
        self._keys = {k.sha256: k for k in keys}
        self._admin = admin_token_sha256
        self._allow_anonymous = allow_anonymous
        self._requests = {k.sha256: _Bucket(k.requests_per_minute) for k in keys if k.requests_per_minute}
        self._tokens = {k.sha256: _Bucket(k.tokens_per_minute) for k in keys if k.tokens_per_minute}

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of an `Authorization: Bearer <key>` header. Raises `AuthenticationError` (401)."""
        key = _bearer(authorization)
        if key is None:
            if self._allow_anonymous:
                return Principal("anonymous", ANONYMOUS_TENANT)
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'",
                                      field="authorization")
        digest = hash_key(key)
        spec = next((s for h, s in self._keys.items() if hmac.compare_digest(h, digest)), None)
        if spec is None:
            if self._allow_anonymous and not self._keys:
                return Principal("anonymous", ANONYMOUS_TENANT)
            raise AuthenticationError("invalid API key", field="authorization")
        return Principal(spec.name, spec.tenant, spec.max_tokens_per_request, spec.sha256)

    def check_tenant(self, principal: Principal, requested_tenant: str) -> str:
        """The tenant to serve as: the key's. A hint naming another tenant is refused (403)."""
        if requested_tenant and requested_tenant != principal.tenant:
            raise PermissionDeniedError(f"this API key belongs to another tenant than {requested_tenant!r}",
                                        field="tenant")
        return principal.tenant

    def admit(self, principal: Principal, num_tokens: int) -> None:
        """Charge one request and `num_tokens` to the caller's buckets; 429 when over a limit."""
        digest = principal.key_sha256
        requests, tokens = self._requests.get(digest), self._tokens.get(digest)
        if requests is not None and (wait := requests.take(1)) > 0:
            raise RateLimitedError(f"request rate limit of this API key exceeded; retry in {wait:.1f}s")
        if tokens is not None and (wait := tokens.take(num_tokens)) > 0:
            if requests is not None:
                requests.level += 1  # give the request back: it was not served
            raise RateLimitedError(f"token rate limit of this API key exceeded; retry in {wait:.1f}s")

    def check_admin(self, authorization: str | None) -> None:
        """Raise `PermissionDeniedError` (403) unless the header carries the admin token."""
        token = _bearer(authorization)
        if self._admin is None or token is None or not hmac.compare_digest(hash_key(token), self._admin):
            raise PermissionDeniedError("admin API needs the admin token", field="authorization")


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
