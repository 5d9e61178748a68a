"""Which Worker RPCs each role serves, and the interceptor that refuses the others.

The table is what the callers need, in normal operation and in every fallback (mapped from
control_plane/orchestrator/orchestrator.py, control_plane/profiler/measure.py, workers/kv/sources.py;
the reasons per cell are in workers/README.md):

| RPC                  | colocated | prefill | decode |
|----------------------|-----------|---------|--------|
| Session, Generate    | yes       | no      | yes (1) |
| Prefill              | yes       | yes     | no     |
| Decode               | yes (2)   | no      | yes    |
| PullKV               | yes       | yes (3) | no (4) |
| Stats, Drain, health | yes       | yes     | yes    |

(1) a P/D route's short or mostly cached prompt, or one no prefill worker could take, runs on the
decode pool alone (Generate from a client without Session). (2) migrations (prompt + tokens sent), and
a P/D decode when the decode pool has no worker left. (3) decode workers pull the prefilled KV.
(4) nothing pulls from a decode worker: a KV source is always the prefill worker.

A colocated worker runs both phases, so it serves all of them. A refused call ends with
PERMISSION_DENIED naming the worker's role and the RPC, before any servicer code runs, and is counted
in `heteroserve_worker_role_refusals_total{method}`: not retryable, since another attempt at the same
worker fails the same way, and any refusal means a caller routed by a wrong role.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from grpc import aio

from common.vocab import ROLES, Role
from workers.service.interceptors import Continuation, refused

log = logging.getLogger(__name__)

WORKER_METHOD_PREFIX = "/heteroserve.v1.Worker/"
WORKER_RPCS = frozenset({"Session", "Generate", "Prefill", "Decode", "PullKV", "Stats", "Drain"})
_EVERY_ROLE = frozenset({"Stats", "Drain"})  # the planner and the gateway manage workers of any role

SERVES: dict[Role, frozenset[str]] = {
    "colocated": WORKER_RPCS,
    "prefill": _EVERY_ROLE | {"Prefill", "PullKV"},
    "decode": _EVERY_ROLE | {"Session", "Generate", "Decode"},
}


def serves(role: Role, method: str) -> bool:
    """Whether a worker of `role` serves `method` (the short name, e.g. `Prefill`). A Worker method
    outside `WORKER_RPCS` is served by every role (a new RPC is open until it is placed in the table;
    tests/workers/service/test_roles.py fails for an unplaced one)."""
    return method in SERVES[role] or method not in WORKER_RPCS


def refusal_message(worker_id: str, role: Role, method: str) -> str:
    served_by = ", ".join(r for r in ROLES if serves(r, method))
    return (f"worker {worker_id} has role {role!r}, which does not serve {method} "
            f"(served by: {served_by}); the caller routed by a wrong role")


class RoleInterceptor(aio.ServerInterceptor):
    """Refuses the Worker RPCs that `role` does not serve (module docstring); `on_refusal(method)` is
    called for each refusal. Other services (health) pass."""

    def __init__(self, worker_id: str, role: Role, on_refusal: Callable[[str], None] | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        self._worker_id = worker_id
        self._role = role
        self._on_refusal = on_refusal or (lambda method: None)

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        full = handler_call_details.method or ""
        if handler is None or not full.startswith(WORKER_METHOD_PREFIX):
            return handler
        method = full[len(WORKER_METHOD_PREFIX):]
        if serves(self._role, method):
            return handler
        message = refusal_message(self._worker_id, self._role, method)

        def count() -> None:
            self._on_refusal(method)
            log.warning("refused: %s", message)

        return refused(handler, grpc.StatusCode.PERMISSION_DENIED, message, count)
