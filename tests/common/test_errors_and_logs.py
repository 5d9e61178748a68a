"""The error hierarchy's status mapping and the log redaction of secrets."""

from __future__ import annotations

import logging

import pytest

from common import errors
from common.logs import RedactingFilter, register_secret


@pytest.mark.parametrize(
    ("error", "http", "grpc", "retryable"),
    [
        (errors.InvalidRequestError("x", field="max_tokens"), 400, "INVALID_ARGUMENT", False),
        (errors.AuthenticationError("x"), 401, "UNAUTHENTICATED", False),
        (errors.PermissionDeniedError("x"), 403, "PERMISSION_DENIED", False),
        (errors.NotFoundError("x"), 404, "NOT_FOUND", False),
        (errors.RateLimitedError("x"), 429, "RESOURCE_EXHAUSTED", True),
        (errors.CapacityError("x"), 503, "UNAVAILABLE", True),
        (errors.DeadlineExceededError("x"), 504, "DEADLINE_EXCEEDED", True),
        (errors.CorruptDataError("x"), 500, "DATA_LOSS", False),
    ],
)
def test_status_mapping(error: errors.HeteroserveError, http: int, grpc: str, retryable: bool) -> None:
    assert (error.http_status, error.grpc_status, error.retryable) == (http, grpc, retryable)
    back = errors.error_from_grpc_status(grpc, "m")
    assert back.grpc_status == grpc


def test_field_in_message() -> None:
    err = errors.InvalidRequestError("must be >= 1, got 0", field="max_tokens")
    assert str(err) == "max_tokens: must be >= 1, got 0" and err.field == "max_tokens"


def test_secret_redacted_from_log_records(caplog: pytest.LogCaptureFixture) -> None:
    secret = "hs-cluster-token-0123456789"
    register_secret(secret)
    logger = logging.getLogger("test.redact")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("connecting with %s", secret)
        try:
            raise RuntimeError(f"bad token {secret}")
        except RuntimeError:
            logger.exception("failed")
    assert secret not in caplog.text
    assert "***" in caplog.text
