"""The admin API under `/admin`, behind the admin token (403 without it).

- `GET  /admin/plan`: the current plan document and its version (404 before the first plan);
- `GET  /admin/routing`: planned vs served share per class route and per (SLO class, pool, role)
  since the plan in use was adopted, the route deviations by reason, and why the last refused plan
  was refused (`plan_error`, null when none was);
- `GET  /admin/workers`: every known worker with health, role, pool and load;
- `POST /admin/solve`: a what-if placement: the body is a placement spec (the same mapping
  `heteroserve plan` reads from YAML/JSON); answers the solved plan without publishing it;
- `POST /admin/drain/{worker_id}?timeout_seconds=30`: stop routing to the worker and drain it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from common.errors import InvalidRequestError
from control_plane.gateway.runtime import GatewayRuntime
from control_plane.gateway.schemas import ErrorResponse


def admin_router(runtime: GatewayRuntime) -> APIRouter:
    def require_admin(request: Request) -> None:
        runtime.auth.check_admin(request.headers.get("authorization"))

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (400, 403, 404, 413, 422, 503, 504)}
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                       responses=errors)

    @router.get("/plan")
    async def get_plan() -> dict[str, Any]:
        record = await runtime.plan_record()
        return {"version": record.version, "published_at": record.published_at, "plan": record.plan,
                "in_use_version": runtime.plan.version}

    @router.get("/routing")
    async def get_routing() -> dict[str, Any]:
        return runtime.routing()

    @router.get("/workers")
    async def get_workers() -> dict[str, Any]:
        return {"workers": runtime.workers()}

    @router.post("/solve", openapi_extra=what_if_body())
    async def solve(request: Request) -> dict[str, Any]:
        return await asyncio.to_thread(solve_what_if, await _json_body(request))

    @router.post("/drain/{worker_id}")
    async def drain(worker_id: str, timeout_seconds: float = Query(30.0, gt=0, le=3600)) -> dict[str, Any]:
        return await runtime.drain(worker_id, timeout_seconds)

    return router


def solve_what_if(spec: dict[str, Any]) -> dict[str, Any]:
    """Solve a placement spec (the mapping `heteroserve plan SPEC` reads, without file references: the
    shipped catalogs, traffic as rate + distribution) with the placement library, imported lazily
    because it pulls in the solver. Blocking: call it in a thread. Raises `ConfigError` (400) naming
    the field, `InfeasibleError` (422) naming the binding constraint."""
    from placement.compile import compile_problem
    from placement.planning import make_plan
    from placement.spec import spec_from_mapping

    if not isinstance(spec, dict):
        raise InvalidRequestError("must be a JSON object", field="body")
    _refuse_file_references(spec)
    loaded = spec_from_mapping(spec, "request body", strict=True)
    problem = compile_problem(loaded.fleet, loaded.models, loaded.classes, loaded.slos, loaded.inventory,
                              loaded.compile_options, loaded.current)
    plan = make_plan(problem, loaded.classifier, loaded.solver_options, slice_factor=loaded.slice_factor)
    return {"cost_per_hour": plan.cost_per_hour, "status": plan.solve.status, "plan": plan.to_dict()}


FILE_FIELDS = ("catalog", "model_catalog", "profiles")
WHAT_IF_REF = "#/paths/~1admin~1solve/post/requestBody/content/application~1json/schema/$defs/"


def _refuse_file_references(spec: dict[str, Any]) -> None:
    """A what-if spec arrives over the network: it may not make the gateway open files on its host."""
    for name in FILE_FIELDS:
        if spec.get(name):
            raise InvalidRequestError("file references are not accepted by the API; use the shipped "
                                      "catalog, or `heteroserve plan` on your machine", field=name)
    traffic = spec.get("traffic")
    for i, entry in enumerate(traffic if isinstance(traffic, list) else ()):
        if isinstance(entry, dict) and entry.get("trace"):
            raise InvalidRequestError("trace files are not accepted by the API; give a rate and a "
                                      "distribution", field=f"traffic[{i}].trace")


async def _json_body(request: Request) -> Any:
    """The request body as JSON, or a 400 naming `body` (never FastAPI's own error shape)."""
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"malformed JSON ({exc})", field="body") from None


def what_if_body() -> dict[str, Any]:
    """The OpenAPI request body of `/admin/solve`: the placement spec's JSON Schema
    (`common.config_schema`), without the file references the API refuses, so that a traffic entry is
    a rate with a distribution."""
    from common.config_schema import json_schema
    from placement.spec import PlacementSpec

    schema = json_schema(PlacementSpec, ref_prefix=WHAT_IF_REF)
    defs = schema.pop("$defs")
    for name in FILE_FIELDS:
        schema["properties"].pop(name, None)
    traffic = defs["TrafficSpec"]
    traffic["properties"].pop("trace")
    traffic["required"] = sorted({*traffic.get("required", ()), "rate", "distribution"})
    traffic["properties"]["rate"] = {"type": "number", "minimum": 0}
    traffic["properties"]["distribution"] = {"$ref": WHAT_IF_REF + "DistributionSpec"}
    schema["$defs"] = defs
    return {"requestBody": {"required": True, "description": "a placement spec (see placement/spec.py)",
                            "content": {"application/json": {"schema": schema}}}}
