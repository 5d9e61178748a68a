"""Spec files and `heteroserve plan`: good specs plan (table and --json), bad specs fail in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from common.errors import ConfigError
from common.vocab import LENGTH_BUCKET_EDGES
from heteroserve.cli import main
from placement.spec import load_spec

GOOD = {
    "fleet": ["A100-80G", "A10G", "L4"],
    "slo_classes": [{"name": "interactive", "ttft_seconds": 2.0, "tpot_seconds": 0.1}],
    "buckets": {"input_edges": [0, 512, 2048], "output_edges": [0, 128, 512]},
    "traffic": [
        {
            "model": "llama2-7b",
            "slo_class": "interactive",
            "rate": 6.0,
            "distribution": {"weights": [[0.5, 0.2], [0.2, 0.1]]},
        }
    ],
}


def write(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> Path:  # type: ignore[type-arg]
    path = tmp_path / name
    path.write_text(json.dumps(spec) if name.endswith(".json") else yaml.safe_dump(spec))
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", ["spec.yaml", "spec.json"])
def test_good_spec_json_last_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, _ = run_cli(["plan", str(write(tmp_path, GOOD, name)), "--json", "--time-limit", "5"], capsys)
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "optimal" and result["cost_per_hour"] > 0
    assert {b["name"] for b in result["plan"]["baselines"]} >= {"colocated_only", "melange"}


def test_table_and_simulation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "lengths.csv"
    trace.write_text("\n".join(f"{100 + 37 * i % 900},{20 + 13 * i % 300}" for i in range(300)))
    code, out, _ = run_cli(
        ["plan", str(write(tmp_path, GOOD)), "--simulate", str(trace), "--poisson"], capsys
    )
    assert code == 0
    assert "placement plan" in out and "baselines" in out and "SLO attainment" in out


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"traffic": [{**GOOD["traffic"][0], "rate": -1.0}]}, "traffic[0]: rate: must be >= 0"),
        ({"traffic": [{**GOOD["traffic"][0], "trace": "t.csv"}]}, "traffic[0]: trace: give exactly one of"),
        ({"fleet": ["A100-80G", "B200-imaginary"]}, "fleet[1]: unknown node type 'B200-imaginary'"),
        ({"inventory": {"H100": 2}}, "inventory.H100"),
        ({"traffic": [{**GOOD["traffic"][0], "model": "gpt-9"}]}, "traffic[0].model: unknown model"),
        ({"traffic": [{**GOOD["traffic"][0], "slo_class": "gold"}]}, "traffic[0].slo_class"),
        ({"slo_classes": [{"name": "interactive", "ttft_seconds": 0, "tpot_seconds": 0.1}]}, "ttft_seconds"),
    ],
)
def test_bad_spec_one_line_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    patch: dict,  # type: ignore[type-arg]
    needle: str,
) -> None:
    path = write(tmp_path, {**GOOD, **patch})
    with pytest.raises(ConfigError):
        load_spec(path)
    code, _, err = run_cli(["plan", str(path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and needle in lines[0], lines


def test_unreachable_slo_names_class_and_constraint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {**GOOD, "slo_classes": [{"name": "interactive", "ttft_seconds": 2.0, "tpot_seconds": 0.0005}]}
    code, _, err = run_cli(["plan", str(write(tmp_path, spec))], capsys)
    assert code == 2
    line = err.strip()
    assert "\n" not in line and "spec.yaml" in line
    assert "llama2-7b/interactive/i0o0" in line and "tpot" in line and "cannot be served" in line


def test_shipped_examples_load() -> None:
    examples = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "placement"
    for path in sorted(examples.glob("*.yaml")):
        if "azure" in path.name and not (Path(__file__).resolve().parents[3] / "shared").is_dir():
            continue
        spec = load_spec(path)
        assert spec.classes and all(c.rate >= 0 for c in spec.classes)


def test_melange_profile_file_replaces_roofline_rates(tmp_path: Path, shared_data: Path) -> None:
    from placement import melange
    from placement.compile import compile_problem
    from placement.solve import solve

    mdir = shared_data / "melange"
    arena = melange.load_workload(mdir / "arena_workload_distribution_6x6.json")
    edges = list(LENGTH_BUCKET_EDGES)
    spec = {
        "fleet": ["A10G", "A100-80G"],
        "slo_classes": [{"name": "default", "ttft_seconds": 10.0, "tpot_seconds": 1.0}],
        "buckets": {"input_edges": edges, "output_edges": edges},
        "traffic": [
            {
                "model": "llama2-7b",
                "slo_class": "default",
                "rate": 8.0,
                "distribution": {"weights": [list(r) for r in arena.distribution]},
            }
        ],
        "profiles": [
            {
                "model": "llama2-7b",
                "path": str(mdir / "gpu_info_llama7b_6x6.json"),
                "node_types": {"A100": "A100-80G"},
            }
        ],
        "options": {"allow_disaggregation": False},
    }
    loaded = load_spec(write(tmp_path, spec))
    problem = compile_problem(
        loaded.fleet,
        loaded.models,
        loaded.classes,
        loaded.slos,
        loaded.inventory,
        loaded.compile_options,
        measured=loaded.measured,
    )
    ours = solve(problem)
    profiles = melange.load_profiles(mdir / "gpu_info_llama7b_6x6.json").restricted(["A10G", "A100"])
    reference = solve(melange.to_problem(profiles, arena.distribution, 8.0))
    assert ours.cost_per_hour == pytest.approx(reference.cost_per_hour)
    assert ours.cost_per_hour <= 8.35

    bad = {**spec, "profiles": [{"model": "llama2-7b", "path": str(mdir / "gpu_info_llama7b_6x6.json")}]}
    with pytest.raises(ConfigError, match=r"profiles\[0\].node_types.*'A100'"):
        load_spec(write(tmp_path, bad, "bad.yaml"))
