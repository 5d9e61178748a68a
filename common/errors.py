"""The one domain error hierarchy of heteroserve, with its gRPC and HTTP status mapping.

Every component raises a subclass of `HeteroserveError`. The REST gateway and the gRPC servicers map
them to status codes in one place each, through `http_status()` and `grpc_status_name()`, so an error
means the same thing to a user whichever transport they took. `field` names the offending input field
(dotted path) where there is one, so messages can say exactly what was wrong.
"""

from __future__ import annotations


class HeteroserveError(Exception):
    """Base of every error heteroserve raises on purpose.

    `retryable` says whether the same request may succeed when sent again (to another worker or later).
    """

    http_status: int = 500
    grpc_status: str = "INTERNAL"
    retryable: bool = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class InvalidRequestError(HeteroserveError):
    """A request (prompt, sampling parameters, body) is malformed or out of range."""

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class ConfigError(HeteroserveError):
    """A configuration, cluster or placement spec file is invalid. `source` names the file."""

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, field: str | None = None, source: str | None = None) -> None:
        self.source = source
        super().__init__(message, field=field)
        where = ": ".join(part for part in (source, field) if part)
        self.args = (f"{where}: {message}" if where else message,)


class InfeasibleError(HeteroserveError):
    """A placement problem has no solution; `constraint` names the binding constraint."""

    http_status = 422
    grpc_status = "FAILED_PRECONDITION"

    def __init__(self, message: str, *, constraint: str | None = None, request_class: str | None = None):
        self.constraint = constraint
        self.request_class = request_class
        super().__init__(message)


class NotFoundError(HeteroserveError):
    """A named model, worker, plan or pool does not exist."""

    http_status = 404
    grpc_status = "NOT_FOUND"


class AuthenticationError(HeteroserveError):
    """No credentials, or credentials that match no key."""

    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class PermissionDeniedError(HeteroserveError):
    """Valid credentials without the right to this call (e.g. admin API without the admin token)."""

    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class RateLimitedError(HeteroserveError):
    """A per-key request or token limit was exceeded."""

    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"
    retryable = True


class CapacityError(HeteroserveError):
    """The worker or cluster has no room now (out of KV blocks, queue full, draining)."""

    http_status = 503
    grpc_status = "UNAVAILABLE"
    retryable = True


class UnavailableError(HeteroserveError):
    """A dependency (worker, Redis, gateway) cannot be reached."""

    http_status = 503
    grpc_status = "UNAVAILABLE"
    retryable = True


class DeadlineExceededError(HeteroserveError):
    """A call did not finish within its timeout."""

    http_status = 504
    grpc_status = "DEADLINE_EXCEEDED"
    retryable = True


class CorruptDataError(HeteroserveError):
    """Stored data failed its checksum or header check. Callers drop it and recompute."""

    http_status = 500
    grpc_status = "DATA_LOSS"


class KVTransferError(HeteroserveError):
    """Moving KV blocks between workers or tiers failed. Callers fall back to recomputing."""

    http_status = 502
    grpc_status = "UNAVAILABLE"
    retryable = True


_BY_GRPC_STATUS: dict[str, type[HeteroserveError]] = {
    "INVALID_ARGUMENT": InvalidRequestError,
    "FAILED_PRECONDITION": InfeasibleError,
    "NOT_FOUND": NotFoundError,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "RESOURCE_EXHAUSTED": RateLimitedError,
    "UNAVAILABLE": UnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "DATA_LOSS": CorruptDataError,
}


def error_from_grpc_status(status_name: str, message: str) -> HeteroserveError:
    """The domain error for a gRPC status name (e.g. received from a worker)."""
    error_type = _BY_GRPC_STATUS.get(status_name, HeteroserveError)
    if error_type is InfeasibleError:
        return InfeasibleError(message)
    return error_type(message)


def error_from_rpc_error(exc: object) -> HeteroserveError:
    """The domain error for a failed gRPC call (a `grpc.RpcError`: its status name and details kept)."""
    code_of, details_of = getattr(exc, "code", None), getattr(exc, "details", None)
    name = str(getattr(code_of() if callable(code_of) else None, "name", None) or "UNKNOWN")
    details = details_of() if callable(details_of) else str(exc)
    return error_from_grpc_status(name, str(details or name))
