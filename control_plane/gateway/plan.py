"""The gateway's view of the placement plan: request → its class's planned routes (`ClassRoute`).

The planner publishes `placement.plan.Plan.to_dict()` through `control_plane.plan_store`; a
`PlanWatcher` polls it and `PlanView.update` parses it with `Plan.from_dict` — the one plan format.
A document that does not parse (malformed, or a newer `schema` than this gateway knows) is refused:
the last good plan stays in use, `update` returns the reason (`schema` or `malformed`) and the runtime
logs it and counts it (`heteroserve_gateway_plan_rejected_total{reason}`).

A request is classified with `Plan.classify(input tokens, max_tokens, slo_class, model)`; its routes
are `Plan.routes(class)` (a class the plan saw no traffic for gets the rate-weighted routes of its
model's classes). Each colocated route keeps its pool, each P/D route its (prefill pool, decode pool)
pairing. With no plan, or a model the plan does not serve, the request's class is its SLO class (or
`default`) with no routes: any worker of the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from common.errors import ConfigError, NotFoundError
from control_plane.orchestrator.routes import DEFAULT_ROUTE, ClassRoute, PlannedRoute
from placement.plan import PLAN_SCHEMA, Plan, Route

RejectReason = Literal["schema", "malformed"]
REJECT_REASONS: tuple[RejectReason, ...] = ("schema", "malformed")


class PlanView:
    """Latest good plan. `update` swaps it atomically (one assignment); readers never see half."""

    def __init__(self) -> None:
        self.version = 0
        self.document: Mapping[str, Any] | None = None
        self.plan: Plan | None = None
        self.last_error: str | None = None  # why the latest refused document was refused
        self._routes: dict[str, ClassRoute] = {}  # class → route of `plan`, built once per plan
        self._default_routes: dict[str, ClassRoute] = {}  # SLO class → DEFAULT_ROUTE named after it

    def update(self, version: int, document: Mapping[str, Any]) -> RejectReason | None:
        """Install the plan in `document`; None when installed. A document `Plan.from_dict` refuses
        changes nothing and returns the reason (`last_error` says why)."""
        try:
            plan = Plan.from_dict(document)
        except ConfigError as exc:
            self.last_error = f"plan version {version}: {exc}"
            return "schema" if document.get("schema") != PLAN_SCHEMA else "malformed"
        self.plan, self._routes, self.version, self.document = plan, {}, version, document
        self.last_error = None
        return None

    def classes(self) -> list[ClassRoute]:
        """Every class of the plan in use, with its routes (empty before the first plan)."""
        plan, out = self.plan, list[ClassRoute]()
        if plan is None:
            return out
        for c in plan.classes:
            try:
                out.append(self._class_route(plan, c.name))
            except NotFoundError:
                continue  # a class without routes of a model without any: nothing to show
        return out

    def route_for(self, num_input_tokens: int, max_tokens: int, slo_class: str,
                  model: str | None = None) -> ClassRoute:
        """The class route of one request (see the module docstring)."""
        if self.plan is not None:
            try:
                name = self.plan.classify(num_input_tokens, max_tokens, slo_class or None, model)
                return self._class_route(self.plan, name)
            except NotFoundError:
                pass  # a model this plan does not serve: no routes
        name = slo_class or "default"
        route = self._default_routes.get(name)
        if route is None:  # the SLO classes are a fixed few (the gateway validates them)
            route = self._default_routes[name] = replace(DEFAULT_ROUTE, request_class=name, slo_class=name)
        return route

    def _class_route(self, plan: Plan, name: str) -> ClassRoute:
        """Built on first use and kept until the next `update`. Raises NotFoundError (no routes)."""
        route = self._routes.get(name)
        if route is None:
            planned = next((c for c in plan.classes if c.name == name), None)
            slo = planned.slo if planned is not None else _slo_of(name)
            rate = planned.rate if planned is not None else 0.0
            route = ClassRoute(request_class=name, slo_class=slo, routes=_planned(plan.routes(name)),
                               rate_per_s=rate)
            self._routes[name] = route
        return route


def _planned(routes: Sequence[Route]) -> tuple[PlannedRoute, ...]:
    return tuple(PlannedRoute(share=r.share, pool=r.pool or "", prefill_pool=r.prefill_pool or "",
                              decode_pool=r.decode_pool or "") for r in routes)


def _slo_of(class_name: str) -> str:
    """The SLO part of a plan class name (`model/slo/iNoM`)."""
    parts = class_name.split("/")
    return parts[1] if len(parts) == 3 else ""
