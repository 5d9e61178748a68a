"""The planner's input spec (`control_plane.planner.spec`): what it reads of a file, what it skips,
and that the deployed planner process never imports the embedded cluster's package."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.errors import ConfigError
from control_plane.planner.spec import (
    FOREIGN_KEYS,
    ModelRef,
    PlannerSpec,
    load_planner_spec,
    planner_spec_from_mapping,
)
from heteroserve.embedded.config import EmbeddedConfig, ModelSection, load_embedded_config

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "examples" / "embedded.yaml"


def test_reads_the_planner_sections_of_the_embedded_file(tiny_model_dir: Path) -> None:
    spec = load_planner_spec(EXAMPLE)
    assert type(spec) is PlannerSpec and spec.model == ModelRef("tiny")
    assert [t.name for t in spec.node_types] == ["cpu-local", "csd-local"]
    assert spec.inventory == {"cpu-local": 6, "csd-local": 1} and spec.churn_penalty == 0.03
    config = spec.planner_config("p-1")
    assert (config.planner_id, config.interval_seconds, config.lock_ttl_ms) == ("p-1", 10.0, 8000)
    peak = config.peak
    assert (peak.quantile, peak.window_seconds, peak.horizon_seconds) == (0.95, 5.0, 60.0)
    assert config.scale_down_stabilization_seconds == 20.0
    inputs = spec.planning_inputs(model_dir=tiny_model_dir)
    assert inputs.fleet.names() == ("cpu-local", "csd-local") and set(inputs.models) == {"tiny"}
    assert inputs.models["tiny"].kv_bytes_per_token == 2 * 2 * 2 * 32 * 4  # from config.json
    assert {n: d.rate_per_s for n, d in inputs.warm_demand().items()} == {
        "tiny/interactive/i2o0": 1.0, "tiny/interactive/i4o0": 0.3}
    assert inputs.profiles == {}  # none measured yet: the embedded cluster adds them (--profile)


def test_the_embedded_file_is_the_spec_plus_exactly_the_foreign_keys() -> None:
    own = {f.name for f in dataclasses.fields(PlannerSpec)}
    embedded = {f.name for f in dataclasses.fields(EmbeddedConfig)}
    assert {k for k, v in FOREIGN_KEYS.items() if v is None} == embedded - own
    model_extra = {f.name for f in dataclasses.fields(ModelSection)} - \
        {f.name for f in dataclasses.fields(ModelRef)}
    assert set(FOREIGN_KEYS["model"] or ()) == model_extra
    # Both readers agree on the shared part of the shipped file.
    cluster, spec = load_embedded_config(EXAMPLE), load_planner_spec(EXAMPLE)
    assert isinstance(cluster, PlannerSpec)
    assert (cluster.node_types, cluster.classes, cluster.inventory, cluster.planner) == \
        (spec.node_types, spec.classes, spec.inventory, spec.planner)
    text = EXAMPLE.read_text()
    assert "rate_per_worker" not in text and "ratePerWorker" not in text  # no hand-typed rates


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(inventroy={"cpu-local": 1}), "inventroy"),  # a typo is not skipped
    (lambda d: d["model"].update(nmae="x"), "model.nmae"),
    (lambda d: d["planner"].update(lock_ttl_ms=10), "planner"),
    (lambda d: d["node_types"][1].update(kind="tpu"), "node_types[1]: kind"),
    (lambda d: d["slo_classes"][0].update(ttft_seconds=0), "slo_classes[0]"),
    (lambda d: d["classes"][0].update(slo_class="gold"), "classes[0].slo_class"),
    (lambda d: d["planner"]["peak"].update(quantile=2), "planner.peak"),
    (lambda d: d.pop("model"), "model"),
])
def test_bad_input_names_the_source_and_field(mutate: Callable[[dict[str, Any]], object], field: str) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    mutate(doc)
    with pytest.raises(ConfigError) as info:
        planner_spec_from_mapping(doc, source="fleet.yaml")
    message = str(info.value)
    assert message.startswith("fleet.yaml: ") and field in message, message


def test_foreign_sections_are_skipped_whatever_they_hold() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["gateway"] = {"http_port": "not a port"}
    doc["workers"] = {"anything": 1}
    doc["model"]["preset"] = ["not", "a", "preset"]
    assert planner_spec_from_mapping(doc).model == ModelRef("tiny")


_DEPLOYED = """
import sys
import control_plane.planner.process as process

seen = {}

async def fake_serve(config, spec, redis_url, factory, **kwargs):
    seen.update(config=config, spec=spec, factory=factory)

process.serve = fake_serve
from heteroserve.cli import main

code = main(["planner", "--config", sys.argv[1], "--redis-url", "redis://127.0.0.1:1",
             "--actuator", "none", "--planner-id", "p-0"])
embedded = sorted(m for m in sys.modules if m.startswith("heteroserve.embedded"))
inputs = seen["spec"]
print(code, seen["config"].planner_id, ",".join(inputs.models), len(inputs.fleet), seen["factory"], embedded)
"""


def test_the_deployed_planner_never_imports_the_embedded_package(tmp_path: Path) -> None:
    # As the Helm chart runs it: a spec without the embedded sections, --actuator none.
    doc = yaml.safe_load(EXAMPLE.read_text())
    for key in ("gateway", "workers"):
        doc.pop(key)
    doc["model"] = {"name": "tiny", "path": "/models/tiny", "architecture": {
        "name": "tiny", "num_layers": 2, "hidden_size": 128, "num_heads": 4, "num_kv_heads": 2,
        "intermediate_size": 352, "vocab_size": 2048, "dtype": "fp32"}}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = subprocess.run([sys.executable, "-c", _DEPLOYED, str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout.strip().splitlines()[-1]
    assert out == "0 p-0 tiny 2 None []"
