"""The chart's mutual TLS (values `tls`), rendered by the real helm binary: certificates from cert-manager
`Certificate`s or from existing Secrets, mounted into every gateway, planner and worker pod (the
planner's template pools too), worker probes on the plaintext health-only port, every command line
parsed by the real CLI, every built-in object valid for Kubernetes; plaintext renders exactly as before.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.tls import WORKER_SERVER_NAME
from heteroserve.cli import build_parser
from tests.deploy.helm_render import CHART, by_kind, helm, render, validate_all

MOUNT = "/etc/heteroserve-tls"
CERT_MANAGER: dict[str, Any] = {"tls": {"enabled": True, "certManager": {
    "enabled": True, "issuerRef": {"name": "cluster-ca", "kind": "ClusterIssuer"}}}}
SECRETS: dict[str, Any] = {"tls": {"enabled": True, "secrets": {
    "gateway": "gw-tls", "planner": "planner-tls", "worker": "worker-tls"}}}
MIXED_FLEET: dict[str, Any] = yaml.safe_load((CHART / "examples" / "mixed-fleet.yaml").read_text())


def pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pod spec of every Deployment, by Deployment name."""
    return {name: d["spec"]["template"]["spec"] for name, d in by_kind(objects, "Deployment").items()}


def assert_mounted(pod: dict[str, Any], secret: str, where: str) -> None:
    container = pod["containers"][0]
    assert f"--tls-dir={MOUNT}" in container["args"], where
    assert {"name": "tls", "mountPath": MOUNT, "readOnly": True} in container["volumeMounts"], where
    volume = next(v for v in pod["volumes"] if v["name"] == "tls")
    # a whole-Secret volume (no subPath): the kubelet swaps renewed files in place
    assert volume["secret"] == {"secretName": secret, "defaultMode": 0o440}, where


def test_cert_manager_certificates_mounted_everywhere(tmp_path: Path) -> None:
    objects = render(CERT_MANAGER, tmp_path)
    certificates = by_kind(objects, "Certificate")
    assert set(certificates) == {f"hs-heteroserve-{c}-tls" for c in ("gateway", "planner", "worker")}
    for name, cert in certificates.items():
        spec = cert["spec"]
        assert spec["secretName"] == name
        assert {"server auth", "client auth"} <= set(spec["usages"])
        issuer = {"name": "cluster-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        assert spec["issuerRef"] == issuer
        assert spec["privateKey"]["rotationPolicy"] == "Always"
        assert (WORKER_SERVER_NAME in spec["dnsNames"]) == name.endswith("worker-tls")
    for name, pod in pods(objects).items():
        component = "worker" if name.startswith("hs-heteroserve-worker-") else name.rsplit("-", 1)[-1]
        assert_mounted(pod, f"hs-heteroserve-{component}-tls", name)
    validate_all([o for o in objects if o["kind"] != "Certificate"])


def test_existing_secrets_and_worker_probes(tmp_path: Path) -> None:
    objects = render(SECRETS, tmp_path)
    assert not by_kind(objects, "Certificate")
    secret_of = {"gateway": "gw-tls", "planner": "planner-tls"}
    for name, pod in pods(objects).items():
        component = name.rsplit("-", 1)[-1]
        assert_mounted(pod, secret_of.get(component, "worker-tls"), name)
        if name.startswith("hs-heteroserve-worker-"):
            worker = pod["containers"][0]
            assert "--health-port=50052" in worker["args"]
            # the kubelet's gRPC probe has no client certificate: it asks the plaintext health port
            assert worker["startupProbe"]["grpc"] == {"port": 50052}
            assert worker["readinessProbe"]["grpc"] == {"port": 50052}
            # the plain session port is for plaintext clusters only: none bound, none admitted
            assert not any(a.startswith("--session-port") for a in worker["args"])
            assert "session" not in {p["name"] for p in worker["ports"]}
    policy = by_kind(objects, "NetworkPolicy")["hs-heteroserve-worker"]
    session = [{"port": "session", "protocol": "TCP"}]
    assert all(rule["ports"] != session for rule in policy["spec"]["ingress"])
    validate_all(objects)


def test_template_pools_of_the_planner_get_the_worker_certificate(tmp_path: Path) -> None:
    values = copy.deepcopy(MIXED_FLEET)
    values.update(SECRETS)
    config = yaml.safe_load(by_kind(render(values, tmp_path), "ConfigMap")["hs-heteroserve-planner"]["data"][
        "kubernetes.yaml"])
    templates = config["actuator"]["templates"]
    specs = [t["pod_spec"] for kind in templates.values() for t in kind.values()]
    assert specs
    for spec in specs:
        assert_mounted(spec, "worker-tls", "template pool")


def test_every_command_line_parses_with_tls(tmp_path: Path) -> None:
    parser = build_parser()
    for values in (CERT_MANAGER, SECRETS):
        for pod in pods(render(values, tmp_path)).values():
            container = pod["containers"][0]
            args = parser.parse_args([*container["command"][1:], *container["args"]])
            assert args.tls_dir == MOUNT


@pytest.mark.parametrize(("values", "message"), [
    ({"tls": {"enabled": True, "secrets": {"gateway": "g", "planner": "p"}}}, "tls.secrets.worker"),
    ({"tls": {"enabled": True, "certManager": {"enabled": True}}}, "tls.certManager.issuerRef.name"),
    ({"tls": {"workerHealthPort": 0}}, "workerHealthPort"),
    ({"tls": {"secrets": {"worker": "Not_A_Name"}}}, "worker"),
])
def test_bad_tls_values_fail_naming_the_key(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    result = helm("template", "hs", str(CHART), values=values, tmp_path=tmp_path)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_plaintext_render_has_no_tls(tmp_path: Path) -> None:
    for name, pod in pods(render({}, tmp_path)).items():
        assert not any(a.startswith("--tls-dir") for a in pod["containers"][0]["args"]), name
        assert all(v["name"] != "tls" for v in pod["volumes"]), name
