"""A RECORDING HTTP ENDPOINT standing in for the Kubernetes API server in tests.

No Kubernetes API server can run on this machine, so the actuator's tests point the real `kubernetes`
client at this small HTTP server on 127.0.0.1. It answers only the paths the actuator uses, from canned
objects the test puts in `nodes`, `deployments`, `pdbs` and `pods`, applies merge patches to them so
later reads see the change, creates (409 AlreadyExists on a taken name) and deletes Deployments and
PodDisruptionBudgets, lists Deployments by label selector, and records every request (method, path,
query, content type, JSON body) in `events` in arrival order. Tests may append their own markers to
`events` (e.g. a drain) to check ordering. `faults` injects failures: the first fault matching a
request answers it instead (an HTTP status, or a dropped connection for status 0) while its count lasts.
It checks nothing about authorization: RBAC is the chart's job, tested by rendering it.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    """Answer `times` requests whose method is `method` and whose path ends with `path_suffix` with
    `status` (0: close the connection without an answer, as a crashed API server does)."""

    method: str
    path_suffix: str
    status: int
    times: int = 1
    reason: str = ""


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any


_DEPLOYMENT = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)(/scale)?$")
_DEPLOYMENTS = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments$")
_PDB = re.compile(r"^/apis/policy/v1/namespaces/([^/]+)/poddisruptionbudgets(?:/([^/]+))?$")
_REASONS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
_POD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$")
_LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(?:/([^/]+))?$")


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _selected(obj: dict[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels", {})
    pairs = [part.split("=", 1) for part in selector.split(",") if part]
    return all(labels.get(k) == v for k, v in pairs)


def _status(code: int, reason: str, message: str = "") -> tuple[int, dict[str, Any]]:
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                  "message": message or reason, "code": code}


def _not_found(kind: str, name: str) -> tuple[int, dict[str, Any]]:
    return 404, {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "NotFound",
        "message": f'{kind} "{name}" not found',
        "code": 404,
    }


class RecordingApiServer:
    """Start with `start()`, stop with `stop()`; `url` is the base URL for the kubernetes client."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.deployments: dict[str, dict[str, Any]] = {}  # name -> Deployment object
        self.pdbs: dict[str, dict[str, Any]] = {}  # name -> PodDisruptionBudget object
        self.faults: list[Fault] = []
        self.pods: list[dict[str, Any]] = []
        self.leases: dict[str, dict[str, Any]] = {}  # name -> Lease object
        self._resource_version = 100
        self.events: list[Any] = []  # Call records, plus whatever markers a test appends
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def calls(self) -> list[Call]:
        return [e for e in self.events if isinstance(e, Call)]

    def start(self) -> RecordingApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, call: Call) -> tuple[int, dict[str, Any]]:
        """(status, body); status 0 means: drop the connection."""
        with self._lock:
            self.events.append(call)
            for fault in self.faults:
                if fault.times > 0 and fault.method == call.method and call.path.endswith(fault.path_suffix):
                    fault.times -= 1
                    return _status(fault.status, fault.reason or _REASONS.get(fault.status, "Injected"))
            return self._route(call)

    def _route(self, call: Call) -> tuple[int, dict[str, Any]]:
        if call.method == "GET" and call.path == "/api/v1/nodes":
            items = [n for n in self.nodes if _selected(n, call.query.get("labelSelector", ""))]
            return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items}
        if m := _DEPLOYMENT.match(call.path):
            return self._deployment(call, m.group(2), scale=bool(m.group(3)))
        if _DEPLOYMENTS.match(call.path):
            return self._collection(call, self.deployments, "DeploymentList", "deployments.apps")
        if m := _PDB.match(call.path):
            if m.group(2) is None:
                return self._collection(call, self.pdbs, "PodDisruptionBudgetList",
                                        "poddisruptionbudgets.policy")
            return self._item(call, self.pdbs, m.group(2), "poddisruptionbudgets.policy")
        if call.method == "GET" and _PODS.match(call.path):
            items = [p for p in self.pods if _selected(p, call.query.get("labelSelector", ""))]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        if m := _LEASES.match(call.path):
            return self._lease(call, m.group(2))
        if call.method == "PATCH" and (m := _POD.match(call.path)):
            for pod in self.pods:
                if pod["metadata"]["name"] == m.group(2):
                    _merge(pod, call.body)
                    return 200, pod
            return _not_found("pods", m.group(2))
        return 404, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": 404,
            "message": f"recording endpoint does not serve {call.method} {call.path}",
        }

    def _lease(self, call: Call, name: str | None) -> tuple[int, dict[str, Any]]:
        """GET / POST / PUT of Leases, with resourceVersion checks on PUT (409 on a stale version)."""
        if call.method == "POST":
            name = call.body["metadata"]["name"]
            if name in self.leases:
                return 409, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "AlreadyExists",
                    "code": 409,
                }
            return 200, self._store_lease(name, call.body)
        assert name is not None
        if name not in self.leases:
            return _not_found("leases.coordination.k8s.io", name)
        if call.method == "PUT":
            stored_version = self.leases[name]["metadata"]["resourceVersion"]
            if call.body["metadata"].get("resourceVersion") != stored_version:
                return 409, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "Conflict",
                    "code": 409,
                }
            return 200, self._store_lease(name, call.body)
        return 200, self.leases[name]

    def _store_lease(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._resource_version += 1
        lease = json.loads(json.dumps(body))
        lease["metadata"]["resourceVersion"] = str(self._resource_version)
        self.leases[name] = lease
        return lease

    def _collection(self, call: Call, store: dict[str, dict[str, Any]], list_kind: str,
                    resource: str) -> tuple[int, dict[str, Any]]:
        """GET (list by label selector) or POST (create) on a namespaced collection."""
        if call.method == "POST":
            name = call.body["metadata"]["name"]
            if name in store:
                return _status(409, "AlreadyExists", f'{resource} "{name}" already exists')
            self._resource_version += 1
            obj = json.loads(json.dumps(call.body))
            obj["metadata"]["resourceVersion"] = str(self._resource_version)
            store[name] = obj
            return 201, obj
        selector = call.query.get("labelSelector", "")
        items = [o for o in store.values() if _selected(o, selector)]
        return 200, {"kind": list_kind, "apiVersion": "v1", "metadata": {}, "items": items}

    def _item(self, call: Call, store: dict[str, dict[str, Any]], name: str,
              resource: str) -> tuple[int, dict[str, Any]]:
        if name not in store:
            return _not_found(resource, name)
        if call.method == "DELETE":
            del store[name]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}
        return 200, store[name]

    def _deployment(self, call: Call, name: str, *, scale: bool) -> tuple[int, dict[str, Any]]:
        deployment = self.deployments.get(name)
        if deployment is None:
            return _not_found("deployments.apps", name)
        if call.method == "DELETE":
            return self._item(call, self.deployments, name, "deployments.apps")
        if call.method == "PATCH":
            if scale:
                deployment["spec"]["replicas"] = call.body["spec"]["replicas"]
            else:
                _merge(deployment, call.body)
        if not scale:
            return 200, deployment
        meta = deployment["metadata"]
        return 200, {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": name, "namespace": meta.get("namespace", "default")},
            "spec": {"replicas": deployment["spec"]["replicas"]},
            "status": {"replicas": deployment.get("status", {}).get("replicas", 0)},
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                call = Call(
                    method=self.command,
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    content_type=self.headers.get("Content-Type"),
                    body=json.loads(raw) if raw else None,
                )
                status, payload = server.answer(call)
                if status == 0:
                    self.close_connection = True  # no answer at all: the client sees a broken connection
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
