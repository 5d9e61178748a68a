"""The gateway's view of the placement plan: request class → `ClassRoute` (pools and weights).

The planner publishes a plan document through `control_plane.plan_store`; a `PlanWatcher` polls it
and `PlanView.update` parses it. Two formats are understood:

1. the planner's routing document (control_plane/planner/profile_solver.py); parsing reads only
   these parts, so a newer document with more fields still works:

       pools:   [{"name", "role", ...}, ...]
       routing: {request_class: {pool_name: share, ...}, ...}   (a P/D share on both its pools)
       classes: [{"name", "slo_class"?, "max_input_tokens"?, "max_output_tokens"?}, ...] (optional)

2. `placement.plan.Plan.to_dict()` (has `schema` and `classifier`): classes are found with
   `Plan.classify(input tokens, max_tokens, slo_class, model)` and their routes with `Plan.routes`;
   a P/D route's share counts for its prefill and its decode pool (the pairing is not kept).

A class's colocated share is the sum over its colocated pools; its disaggregated share the sum over
its prefill pools (the decode shares cover the same requests). A request is classified by SLO class
first, then by the smallest class whose input and output bounds hold it; with no plan, or no class
that matches, it is `DEFAULT_ROUTE` (every worker of the model, colocated) with class
`slo_class or "default"`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from common.errors import ConfigError, NotFoundError
from common.vocab import ROLES, Role, parse_role
from control_plane.orchestrator.routes import DEFAULT_ROUTE, ClassRoute
from placement.plan import Plan, Route

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ClassBounds:
    name: str
    slo_class: str = ""
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None


class PlanView:
    """Latest parsed plan. `update` swaps it atomically (one assignment); readers never see half."""

    def __init__(self) -> None:
        self.version = 0
        self.document: Mapping[str, Any] | None = None
        self._routes: dict[str, ClassRoute] = {}
        self._classes: tuple[_ClassBounds, ...] = ()
        self._placement: Plan | None = None
        self._placement_routes: dict[str, ClassRoute] = {}  # class → route of `_placement`, built once
        self._default_routes: dict[str, ClassRoute] = {}  # SLO class → DEFAULT_ROUTE named after it

    def update(self, version: int, document: Mapping[str, Any]) -> None:
        """Parse and install a plan; a malformed plan is logged and the previous one kept."""
        placement: Plan | None = None
        routes: dict[str, ClassRoute] = {}
        classes: tuple[_ClassBounds, ...] = ()
        try:
            if "classifier" in document and "schema" in document:
                placement = Plan.from_dict(document)
            else:
                routes, classes = parse_plan(document)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            log.error("ignoring plan version %d: %s", version, exc)
            return
        self._placement, self._routes, self._classes = placement, routes, classes
        self._placement_routes = {}
        self.version, self.document = version, document

    def route_for(self, num_input_tokens: int, max_tokens: int, slo_class: str,
                  model: str | None = None) -> ClassRoute:
        if self._placement is not None:
            route = self._placement_route(self._placement, num_input_tokens, max_tokens, slo_class, model)
            if route is not None:
                return route
        name = self._classify(num_input_tokens, max_tokens, slo_class)
        if name is not None and name in self._routes:
            return self._routes[name]
        name = slo_class or "default"
        route = self._default_routes.get(name)
        if route is None:  # the SLO classes are a fixed few (the gateway validates them)
            route = self._default_routes[name] = replace(DEFAULT_ROUTE, request_class=name)
        return route

    def _classify(self, num_input_tokens: int, max_tokens: int, slo_class: str) -> str | None:
        fitting = [c for c in self._classes
                   if (not c.slo_class or c.slo_class == slo_class)
                   and (c.max_input_tokens is None or num_input_tokens <= c.max_input_tokens)
                   and (c.max_output_tokens is None or max_tokens <= c.max_output_tokens)]
        if fitting:
            best = min(fitting, key=lambda c: (c.slo_class != slo_class, c.max_input_tokens or 1 << 62,
                                               c.max_output_tokens or 1 << 62))
            return best.name
        if slo_class in self._routes:
            return slo_class
        if len(self._routes) == 1:
            return next(iter(self._routes))
        return "default" if "default" in self._routes else None

    def _placement_route(self, plan: Plan, num_input_tokens: int, max_tokens: int, slo_class: str,
                         model: str | None) -> ClassRoute | None:
        """The request's class route under a placement plan (None when it has none); each class's route
        is built on first use and kept until the next `update`."""
        try:
            name = plan.classify(num_input_tokens, max_tokens, slo_class or None, model)
            route = self._placement_routes.get(name)
            if route is None:
                route = self._placement_routes[name] = _class_route(name, plan.routes(name))
        except NotFoundError:
            return None
        return route


def _class_route(name: str, routes: Sequence[Route]) -> ClassRoute:
    by_role: dict[Role, dict[str, float]] = {role: {} for role in ROLES}
    for r in routes:
        if r.pool is not None:
            by_role["colocated"][r.pool] = by_role["colocated"].get(r.pool, 0.0) + r.share
        else:
            prefill, decode = by_role["prefill"], by_role["decode"]
            prefill[str(r.prefill_pool)] = prefill.get(str(r.prefill_pool), 0.0) + r.share
            decode[str(r.decode_pool)] = decode.get(str(r.decode_pool), 0.0) + r.share
    share = min(1.0, sum(by_role["prefill"].values()))
    return ClassRoute(request_class=name, colocated=by_role["colocated"], prefill=by_role["prefill"],
                      decode=by_role["decode"], disaggregated_share=share)


def parse_plan(document: Mapping[str, Any]) -> tuple[dict[str, ClassRoute], tuple[_ClassBounds, ...]]:
    """(class → route, class bounds) from a plan document. Raises KeyError/TypeError/ValueError."""
    roles = {str(p["name"]): parse_role(str(p["role"]), f"pools[{i}].role")
             for i, p in enumerate(document.get("pools", []))}
    routes: dict[str, ClassRoute] = {}
    for name, shares in (document.get("routing") or {}).items():
        by_role: dict[Role, dict[str, float]] = {role: {} for role in ROLES}
        for pool, share in shares.items():
            role = roles.get(pool)
            if role is None:
                raise ValueError(f"routing.{name}.{pool}: unknown pool (pools: {sorted(roles)})")
            if float(share) > 0:
                by_role[role][pool] = float(share)
        colocated, prefill = sum(by_role["colocated"].values()), sum(by_role["prefill"].values())
        total = colocated + prefill
        share = prefill / total if total > 0 and by_role["decode"] else 0.0
        routes[name] = ClassRoute(request_class=name, colocated=by_role["colocated"],
                                  prefill=by_role["prefill"] if share else {},
                                  decode=by_role["decode"] if share else {}, disaggregated_share=share)
    classes = tuple(_ClassBounds(name=str(c["name"]), slo_class=str(c.get("slo_class", "")),
                                 max_input_tokens=c.get("max_input_tokens"),
                                 max_output_tokens=c.get("max_output_tokens"))
                    for c in document.get("classes", []))
    return routes, classes
