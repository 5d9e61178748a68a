"""The chart, with the real helm binary: lint, render several value sets, validate every object."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.actuators.kubernetes_setup import load_kubernetes_settings
from heteroserve.cli import build_parser
from heteroserve.cli.gateway import _api_keys, hash_key
from tests.deploy.helm_render import CHART, by_kind, helm, render, validate_all

PREFIX = "hs-heteroserve-worker-"

EXAMPLES = CHART / "examples"
MIXED_FLEET: dict[str, Any] = yaml.safe_load((EXAMPLES / "mixed-fleet.yaml").read_text())
EXTERNAL_REDIS_TLS: dict[str, Any] = yaml.safe_load((EXAMPLES / "external-redis-tls.yaml").read_text())
INGRESS_ON: dict[str, Any] = yaml.safe_load((EXAMPLES / "ingress-monitoring.yaml").read_text())


def test_helm_lint_passes():
    result = helm("lint", str(CHART), "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    "values",
    [{}, MIXED_FLEET, EXTERNAL_REDIS_TLS, INGRESS_ON],
    ids=["default", "mixed-fleet", "external-redis-tls", "ingress"],
)
def test_every_rendered_object_validates(values: dict[str, Any], tmp_path: Path):
    objects = render(values, tmp_path)
    skipped = validate_all(objects)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceAccount", "Role", "ClusterRole", "NetworkPolicy"} <= kinds
    if values is INGRESS_ON:
        assert sorted(skipped) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
        assert "Ingress" in kinds
    else:
        assert skipped == []


def test_default_values_render_a_working_small_cluster(tmp_path: Path):
    objects = render({}, tmp_path)
    deployments = by_kind(objects, "Deployment")
    assert sorted(deployments) == [
        "hs-heteroserve-gateway",
        "hs-heteroserve-planner",
        PREFIX + "cpu-colocated",
    ]
    worker = deployments[PREFIX + "cpu-colocated"]
    pod = worker["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["heteroserve", "worker"]
    assert pod["initContainers"][0]["command"] == ["heteroserve", "model", "create"]
    assert pod["nodeSelector"] == {"heteroserve.io/node-type": "cpu"}
    assert pod["containers"][0]["readinessProbe"]["grpc"] == {"port": 50051}
    assert "StatefulSet" in {o["kind"] for o in objects}
    gateway = deployments["hs-heteroserve-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/ready"
    test_pod = by_kind(objects, "Pod")["hs-heteroserve-test-gateway"]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    probes = [c["env"][0]["value"] for c in test_pod["spec"]["containers"]]
    assert probes == ["http://hs-heteroserve-gateway:80/health", "http://hs-heteroserve-gateway:80/ready"]
    dashboard = by_kind(objects, "ConfigMap")["hs-heteroserve-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["heteroserve.json"] == (
        CHART / "dashboards" / "heteroserve.json"
    ).read_text().rstrip("\n")


def test_mixed_fleet_pools(tmp_path: Path):
    objects = render(MIXED_FLEET, tmp_path)
    deployments = by_kind(objects, "Deployment")
    h100 = deployments[PREFIX + "h100-prefill"]
    assert h100["metadata"]["labels"]["heteroserve.io/role"] == "prefill"
    pod = h100["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/heteroserve:0.1.0-cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert {
        "name": "kv-disk",
        "hostPath": {"path": "/mnt/nvme/heteroserve", "type": "DirectoryOrCreate"},
    } in pod["volumes"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "llm-models", "readOnly": True}} in pod[
        "volumes"
    ]
    assert "initContainers" not in pod, "models come from the volume: nothing to generate"

    l4 = deployments[PREFIX + "l4-decode"]["spec"]["template"]["spec"]
    assert "--kv-cache-mb=16384" in l4["containers"][0]["args"]
    assert not any(a.startswith("--kv-cache-mb") for a in container["args"])
    assert l4["tolerations"][0]["value"] == "l4"
    assert "podAntiAffinity" in l4["affinity"]
    assert l4["nodeSelector"] == {"heteroserve.io/node-type": "l4"}

    cpu = deployments[PREFIX + "cpu-colocated"]["spec"]["template"]["spec"]
    assert cpu["containers"][0]["image"] == "registry.example.com/heteroserve:0.1.0"
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"].get("limits", {})

    csd = deployments[PREFIX + "csd-decode"]["spec"]["template"]["spec"]
    assert "--csd-path=/mnt/csd" in csd["containers"][0]["args"]
    assert "--disk-tier=/var/lib/heteroserve/kv" in csd["containers"][0]["args"]
    assert "--disk-tier-mb=10240" in csd["containers"][0]["args"]
    assert {"name": "kv-disk", "emptyDir": {"sizeLimit": "11265Mi"}} in csd["volumes"]
    assert not any(a.startswith("--csd-path") for a in cpu["containers"][0]["args"])
    assert {"name": "csd-drive", "hostPath": {"path": "/mnt/csd0", "type": "Directory"}} in csd["volumes"]

    pdbs = by_kind(objects, "PodDisruptionBudget")
    workers = {PREFIX + p for p in ("h100-prefill", "l4-decode", "cpu-colocated", "csd-decode")}
    assert set(pdbs) == workers | {"hs-heteroserve-gateway", "hs-heteroserve-planner"}
    assert all(pdbs[name]["spec"]["maxUnavailable"] == 1 for name in workers)


def test_planner_rbac_is_least_privilege(tmp_path: Path):
    no_templates = {"poolTemplates": {"nodeTypes": {}, "devices": {}}}
    without_templates = MIXED_FLEET | {"planner": MIXED_FLEET["planner"] | no_templates}
    objects = render(without_templates, tmp_path)
    pools = [PREFIX + p for p in ("h100-prefill", "l4-decode", "cpu-colocated", "csd-decode")]
    role = by_kind(objects, "Role")["hs-heteroserve-planner"]
    rules = {
        (r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])): r.get("resourceNames")
        for r in role["rules"]
    }
    assert rules == {
        ("apps", "deployments", ("get",)): pools,
        ("apps", "deployments/scale", ("get", "patch")): pools,
        ("", "pods", ("list", "patch")): None,
        ("coordination.k8s.io", "leases", ("create",)): None,
        ("coordination.k8s.io", "leases", ("get", "update")): ["hs-heteroserve-planner"],
    }
    cluster_role = by_kind(objects, "ClusterRole")["serving-hs-heteroserve-planner"]
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}
    ]
    # Pool templates: Deployments and PDBs named at run time, so namespace-wide create/delete (RBAC
    # has neither name patterns nor label rules; the actuator keeps to its labels, tested elsewhere).
    templated = by_kind(render(MIXED_FLEET, tmp_path), "Role")["hs-heteroserve-planner"]["rules"]
    assert [(r["apiGroups"], r["resources"], r["verbs"], r.get("resourceNames")) for r in templated] == [
        (["apps"], ["deployments"], ["get", "list", "watch", "create", "delete"], None),
        (["apps"], ["deployments/scale"], ["get", "patch"], None),
        (["policy"], ["poddisruptionbudgets"], ["get", "create", "delete"], None),
        ([""], ["pods"], ["list", "patch"], None),
        (["coordination.k8s.io"], ["leases"], ["create"], None),
        (["coordination.k8s.io"], ["leases"], ["get", "update"], ["hs-heteroserve-planner"]),
    ]
    accounts = by_kind(objects, "ServiceAccount")
    assert accounts["hs-heteroserve-planner"]["automountServiceAccountToken"] is True
    assert accounts["hs-heteroserve-worker"]["automountServiceAccountToken"] is False
    assert accounts["hs-heteroserve-gateway"]["automountServiceAccountToken"] is False


def test_planner_config_builds_the_actuator_config(tmp_path: Path):
    objects = render(MIXED_FLEET, tmp_path)
    data = by_kind(objects, "ConfigMap")["hs-heteroserve-planner"]["data"]
    path = tmp_path / "kubernetes.yaml"
    path.write_text(data["kubernetes.yaml"])
    settings = load_kubernetes_settings(path)  # what the planner process reads
    config = settings.actuator
    assert config.namespace == "serving"
    assert config.instance == "hs"
    assert config.deployment_prefix == PREFIX
    assert config.pools == ("h100-prefill", "l4-decode", "cpu-colocated", "csd-decode")
    assert config.labels.gpu_product_aliases == {"NVIDIA-H100-80GB-HBM3": "h100"}
    assert not config.export_only
    lease = settings.lease
    assert lease is not None and (lease.namespace, lease.name) == ("serving", "hs-heteroserve-planner")
    deployments = by_kind(objects, "Deployment")
    for pool in config.pools:
        labels = deployments[config.deployment_prefix + pool]["metadata"]["labels"]
        # The actuator refuses Deployments without these: the chart must put them there.
        assert {k: labels.get(k) for k in config.ownership_labels(pool)} == config.ownership_labels(pool)


def test_planner_cluster_file_loads(tmp_path: Path):
    from control_plane.planner.spec import planner_spec_from_mapping

    objects = render(MIXED_FLEET, tmp_path)
    text = by_kind(objects, "ConfigMap")["hs-heteroserve-planner"]["data"]["cluster.yaml"]
    assert "rate_per_worker" not in text  # capacities come from profiles or the roofline, never values
    spec = planner_spec_from_mapping(yaml.safe_load(text), source="cluster.yaml")
    assert spec.model.name == "llama-8b" and spec.model.path == "/models/llama-8b"
    assert spec.model.architecture is not None and spec.model.architecture.num_kv_heads == 8
    assert set(spec.fleet) == {"h100", "l4", "c7i", "csd", "a100"}
    assert [p.path for p in spec.profiles] == ["/etc/heteroserve/profiles/h100.json",
                                               "/etc/heteroserve/profiles/l4.json"]
    assert [s.name for s in spec.slo_classes] == ["interactive", "batch"]
    # Helm merges nodeCounts with the defaults (`cpu: 8`); the file keeps the fleet's node types only.
    assert spec.inventory == {"h100": 2, "l4": 8, "c7i": 4, "csd": 2}
    planner = by_kind(objects, "Deployment")["hs-heteroserve-planner"]["spec"]["template"]["spec"]
    assert {"name": "profiles", "configMap": {"name": "hs-profiles"}} in planner["volumes"]
    # Without the mounted profiles (not in this test) the spec resolves on the roofline alone.
    inputs = dataclasses.replace(spec, profiles=()).planning_inputs(source="cluster.yaml")
    assert set(inputs.fleet.names()) == {"h100", "l4", "c7i", "csd", "a100"} and inputs.profiles == {}


def test_workers_accept_only_gateway_planner_and_peers(tmp_path: Path):
    objects = render({}, tmp_path)
    policy = by_kind(objects, "NetworkPolicy")["hs-heteroserve-worker"]
    grpc_rule = policy["spec"]["ingress"][0]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    components = sorted(
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in grpc_rule["from"]
    )
    assert components == ["gateway", "planner", "worker"]
    assert all(
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "hs" for peer in grpc_rule["from"]
    )
    session_rule = policy["spec"]["ingress"][1]  # without TLS: the plain session port, gateway only
    assert session_rule["ports"] == [{"port": "session", "protocol": "TCP"}]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in session_rule["from"]] == [
        "gateway"]
    worker = by_kind(objects, "Deployment")[PREFIX + "cpu-colocated"]["spec"]["template"]["spec"]
    container = worker["containers"][0]
    assert "--session-port=50053" in container["args"]
    assert {"name": "session", "containerPort": 50053, "protocol": "TCP"} in container["ports"]
    redis_policy = by_kind(objects, "NetworkPolicy")["hs-heteroserve-redis"]
    assert redis_policy["spec"]["ingress"][0]["ports"] == [{"port": "redis", "protocol": "TCP"}]


def test_external_redis_with_tls_and_auth(tmp_path: Path):
    objects = render(EXTERNAL_REDIS_TLS, tmp_path)
    assert "StatefulSet" not in {o["kind"] for o in objects}
    assert "Secret" not in {o["kind"] for o in objects}, "both Secrets come from existingSecret"
    container = by_kind(objects, "Deployment")["hs-heteroserve-gateway"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {e["name"]: e for e in container["env"]}
    # Kubernetes expands $(HETEROSERVE_REDIS_PASSWORD) (defined just before, from the Secret) at start.
    assert env["HETEROSERVE_REDIS_URL"]["value"] == (
        "rediss://:$(HETEROSERVE_REDIS_PASSWORD)@redis.prod.internal:6380/0"
        "?ssl_ca_certs=/etc/heteroserve/redis-ca/ca.crt"
    )
    names = [e["name"] for e in container["env"]]
    assert names.index("HETEROSERVE_REDIS_PASSWORD") < names.index("HETEROSERVE_REDIS_URL")
    assert "--redis-url=$(HETEROSERVE_REDIS_URL)" in container["args"]
    assert env["HETEROSERVE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-auth",
        "key": "password",
    }
    assert env["HETEROSERVE_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "heteroserve-auth"
    assert {"name": "redis-ca", "mountPath": "/etc/heteroserve/redis-ca", "readOnly": True} in container[
        "volumeMounts"
    ]


def test_ingress_and_monitoring(tmp_path: Path):
    objects = render(INGRESS_ON, tmp_path)
    ingress = by_kind(objects, "Ingress")["hs-heteroserve-gateway"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"hosts": ["llm.example.com"], "secretName": "hs-heteroserve-gateway-tls"}
    ]
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/v1", "only the OpenAI API is published; /metrics and /admin stay inside"
    backend = path["backend"]["service"]
    assert backend == {"name": "hs-heteroserve-gateway", "port": {"name": "http"}}
    rule = by_kind(objects, "PrometheusRule")["hs-heteroserve"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules_file = yaml.safe_load(
        (CHART.parents[1] / "deploy" / "prometheus" / "heteroserve-rules.yaml").read_text()
    )
    assert rule["spec"] == rules_file
    for kind in ("ServiceMonitor", "PodMonitor"):
        (monitor,) = by_kind(objects, kind).values()
        assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "hs"


def test_api_keys_file_holds_digests_only(tmp_path: Path):
    values = {
        "auth": {
            "apiKeys": [
                {"name": "team-a", "tenant": "a", "key": "key-aaaaaaaaaaaaaaaa", "requestsPerMinute": 60},
                {"name": "team-b", "tenant": "b", "sha256": "ab" * 32},
            ],
            "clusterToken": "c" * 32,
            "adminToken": "a" * 32,
        }
    }
    secret = by_kind(render(values, tmp_path), "Secret")["hs-heteroserve-auth"]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert sorted(decoded) == ["admin-token", "api-keys.yaml", "cluster-token"]
    assert decoded["cluster-token"] == "c" * 32
    assert "key-aaaaaaaaaaaaaaaa" not in decoded["api-keys.yaml"]
    keys_file = tmp_path / "api-keys.yaml"
    keys_file.write_text(decoded["api-keys.yaml"])
    specs = _api_keys(keys_file)  # the gateway's own loader
    assert [(k.name, k.tenant, k.sha256, k.requests_per_minute) for k in specs] == [
        ("team-a", "a", hash_key("key-aaaaaaaaaaaaaaaa"), 60),
        ("team-b", "b", "ab" * 32, 0),
    ]


def test_a_key_is_generated_when_none_is_given(tmp_path: Path):
    secret = by_kind(render({}, tmp_path), "Secret")["hs-heteroserve-auth"]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    keys_file = tmp_path / "api-keys.yaml"
    keys_file.write_text(decoded["api-keys.yaml"])
    (spec,) = _api_keys(keys_file)
    assert spec.sha256 == hash_key(decoded["default-api-key"])
    assert len(decoded["cluster-token"]) == 48


def test_every_container_command_line_parses_with_the_real_cli(tmp_path: Path):
    parser = build_parser()
    for values in ({}, MIXED_FLEET, {"planner": {"actuator": {"mode": "export"}}}):
        for obj in render(values, tmp_path):
            if obj["kind"] != "Deployment":
                continue
            for container in obj["spec"]["template"]["spec"]["containers"]:
                argv = [*container["command"][1:], *container["args"]]
                parser.parse_args(argv)  # exits (SystemExit) on an unknown or malformed flag


def test_notes_tell_how_to_reach_the_gateway(tmp_path: Path):
    result = helm(
        "install",
        "hs",
        str(CHART),
        "--namespace",
        "serving",
        "--dry-run=client",
        values={},
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n serving port-forward svc/hs-heteroserve-gateway 8000:80" in notes
    assert "get secret hs-heteroserve-auth -o jsonpath='{.data.default-api-key}'" in notes
    assert "hs-heteroserve-worker-cpu-colocated: 1 x cpu (cpu, colocated, model tiny)" in notes
    assert "the Lease hs-heteroserve-planner" in notes


@pytest.mark.parametrize("mode", ["scale", "export"])
def test_kind_smoke_values_render_and_validate(mode: str, tmp_path: Path):
    """deploy/kind-smoke.sh installs with an inline values file: it must stay valid."""
    script = (CHART.parents[1] / "deploy" / "kind-smoke.sh").read_text()
    body = script.split("<<YAML\n", 1)[1].split("\nYAML\n", 1)[0]
    values = yaml.safe_load(body.replace("$MODE", mode).replace("$POOL", "cpu-colocated"))
    objects = render(values, tmp_path)
    validate_all(objects)
    assert "hs-heteroserve-worker-cpu-colocated" in by_kind(objects, "Deployment")


def test_operations_guide_values_render_and_validate(tmp_path: Path):
    """The GPU-cluster values shown in docs/operations.md stay valid."""
    guide = (CHART.parents[1] / "docs" / "operations.md").read_text()
    section = guide.split("### A GPU cluster", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    objects = render(yaml.safe_load(block), tmp_path)
    validate_all(objects)
    assert len([o for o in objects if o["kind"] == "Deployment"]) == 6  # gateway, planner, 4 pools
