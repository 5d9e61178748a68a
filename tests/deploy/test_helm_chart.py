"""The chart, with the real helm binary: lint, render several value sets, validate every object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_render import CHART, by_kind, helm, render, validate_all

from control_plane.actuators.kubernetes import KubernetesActuatorConfig
from heteroserve.config import build

PREFIX = "hs-heteroserve-worker-"

MIXED_FLEET: dict[str, Any] = {
    "workerPools": [
        {
            "name": "h100-prefill",
            "nodeType": "h100",
            "role": "prefill",
            "device": "cuda",
            "model": "llama-8b",
            "replicas": 2,
            "gpus": 1,
            "kvDisk": {"hostPath": "/mnt/nvme/heteroserve"},
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        },
        {
            "name": "l4-decode",
            "nodeType": "l4",
            "role": "decode",
            "device": "cuda",
            "model": "llama-8b",
            "replicas": 4,
            "gpus": 1,
            "tolerations": [{"key": "gpu", "operator": "Equal", "value": "l4", "effect": "NoSchedule"}],
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 50,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"heteroserve.io/pool": "l4-decode"}},
                            },
                        }
                    ]
                }
            },
        },
        {
            "name": "cpu-colocated",
            "nodeType": "c7i",
            "role": "colocated",
            "device": "cpu",
            "model": "llama-8b",
            "replicas": 1,
        },
        {
            "name": "csd-decode",
            "nodeType": "csd",
            "role": "decode",
            "device": "csd",
            "model": "llama-8b",
            "replicas": 1,
            "csd": {"drivePath": "/mnt/csd0"},
        },
    ],
    "models": {"volume": {"persistentVolumeClaim": {"claimName": "llm-models", "readOnly": True}}},
    "planner": {"inventory": {"gpuProductAliases": {"NVIDIA-H100-80GB-HBM3": "h100"}}},
}

EXTERNAL_REDIS_TLS: dict[str, Any] = {
    "redis": {"enabled": False},
    "externalRedis": {
        "url": "rediss://redis.prod.internal:6380/0",
        "existingSecret": "redis-auth",
        "passwordKey": "password",
        "tls": {"enabled": True, "caSecret": "redis-ca"},
    },
    "auth": {"existingSecret": "heteroserve-auth"},
}

INGRESS_ON: dict[str, Any] = {
    "gateway": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "llm.example.com",
            "tls": {"enabled": True},
        }
    },
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
}


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
    assert container["image"] == "heteroserve/heteroserve:0.1.0-cuda"
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
    assert l4["tolerations"][0]["value"] == "l4"
    assert "podAntiAffinity" in l4["affinity"]
    assert l4["nodeSelector"] == {"heteroserve.io/node-type": "l4"}

    cpu = deployments[PREFIX + "cpu-colocated"]["spec"]["template"]["spec"]
    assert cpu["containers"][0]["image"] == "heteroserve/heteroserve:0.1.0"
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"].get("limits", {})

    csd = deployments[PREFIX + "csd-decode"]["spec"]["template"]["spec"]
    assert "--csd-dir=/var/lib/heteroserve/csd" not in csd["containers"][0]["args"]
    assert "--csd-dir=/mnt/csd" in csd["containers"][0]["args"]
    assert {"name": "csd-drive", "hostPath": {"path": "/mnt/csd0", "type": "Directory"}} in csd["volumes"]

    pdbs = by_kind(objects, "PodDisruptionBudget")
    assert {PREFIX + p for p in ("h100-prefill", "l4-decode", "cpu-colocated", "csd-decode")} <= set(pdbs)


def test_planner_rbac_is_least_privilege(tmp_path: Path):
    objects = render(MIXED_FLEET, tmp_path)
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
    accounts = by_kind(objects, "ServiceAccount")
    assert accounts["hs-heteroserve-planner"]["automountServiceAccountToken"] is True
    assert accounts["hs-heteroserve-worker"]["automountServiceAccountToken"] is False
    assert accounts["hs-heteroserve-gateway"]["automountServiceAccountToken"] is False


def test_planner_config_builds_the_actuator_config(tmp_path: Path):
    objects = render(MIXED_FLEET, tmp_path)
    planner_yaml = yaml.safe_load(
        by_kind(objects, "ConfigMap")["hs-heteroserve-planner"]["data"]["planner.yaml"]
    )
    config = build(KubernetesActuatorConfig, planner_yaml["actuator"]["kubernetes"], source="planner.yaml")
    assert config.namespace == "serving"
    assert config.instance == "hs"
    assert config.deployment_prefix == PREFIX
    assert config.pools == ("h100-prefill", "l4-decode", "cpu-colocated", "csd-decode")
    assert config.labels.gpu_product_aliases == {"NVIDIA-H100-80GB-HBM3": "h100"}
    assert not config.export_only
    deployments = by_kind(objects, "Deployment")
    for pool in config.pools:
        labels = deployments[config.deployment_prefix + pool]["metadata"]["labels"]
        # The actuator refuses Deployments without these: the chart must put them there.
        assert {k: labels.get(k) for k in config.ownership_labels(pool)} == config.ownership_labels(pool)
    assert [p["pool"] for p in planner_yaml["pools"]] == list(config.pools)


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
    assert env["HETEROSERVE_REDIS_URL"]["value"] == "rediss://redis.prod.internal:6380/0"
    assert env["HETEROSERVE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-auth",
        "key": "password",
    }
    assert env["HETEROSERVE_REDIS_CA_FILE"]["value"] == "/etc/heteroserve/redis-ca/ca.crt"
    assert env["HETEROSERVE_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "heteroserve-auth"
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
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
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


def test_secrets_from_values_are_used(tmp_path: Path):
    values = {
        "auth": {
            "apiKeys": ["key-aaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbb"],
            "clusterToken": "c" * 32,
            "adminToken": "a" * 32,
        }
    }
    import base64

    secret = by_kind(render(values, tmp_path), "Secret")["hs-heteroserve-auth"]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {
        "api-keys": "key-aaaaaaaaaaaaaaaa,key-bbbbbbbbbbbbbbbb",
        "admin-token": "a" * 32,
        "cluster-token": "c" * 32,
    }
