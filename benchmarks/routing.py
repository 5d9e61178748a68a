"""`heteroserve bench routing`: our router's policies and vllm-router, same workers, windows fixed by rule.

Systems (benchmarks/_routing_systems.py), all started before the first replay, each with its own Redis
and 4 colocated workers of `--preset` with the shared KV tier on, as shipped: our gateway with
round_robin, least_load and prefix_aware (ours), and `vllm-router` (`--peers`, default cache_aware)
over the workers' OpenAI-compatible HTTP fronts.

Workload (benchmarks/_routing_workload.py): windows of a Mooncake-format trace (default
`../shared/data/traces/mooncake_synthetic_trace.jsonl`, any with `--trace`), each block a run of 16
single-token words (so prompts are text and every router sees the same request), at most
`--max-blocks` blocks, output clamp(output_length / 32, 1, 32) with EOS ignored, arrivals = trace time ×
`--time-scale`.

Window rule, fixed before any measurement: `--windows` k = 3 evenly spaced windows of `--requests` 160,
window i starting at floor(i·N/k) of the N-request trace; each replayed `--rounds` 2 times, every round
with fresh blocks (a new salt), every replay on every system in turn with the order rotating. `--start`
instead picks one window by hand. Time scale 0.8: the busiest setting without a backlog of the earlier
sweep on this machine (docs/benchmarks.md), kept, not re-tuned.

Long-horizon mode (`--long-horizon`): the whole trace (3,993 requests) as one window, 1 round, the `tiny`
model, time scale 0.15 (arrivals in 153 s per system), systems round_robin, prefix_aware and vllm-router
cache_aware: multi-turn returns far apart in the trace count in its oracle; one run ≈ 10 minutes.

Engine (`--engine vllm`): the same systems over `heteroserve worker --engine vllm` (vLLM's KV events
republished as cluster block hashes feed prefix_aware; vllm-router fronts the workers' OpenAI HTTP), 2
workers per system, each vLLM engine on one core with one thread, one system at a time (a vLLM engine
holds ~2 GB here); 80 requests per window, 1 round, time scale 1.6 (each worker's arrival rate as in the
default run), systems round_robin, prefix_aware and vllm-router cache_aware. `--quick`: 1 window of 16
requests, 1 round (a smoke run).

Reported per window: oracle share (leading blocks already seen earlier in the window, the most any
router can serve from cache) and per system cached share (Σ cached prompt tokens / Σ prompt tokens, as
the workers count them), cache_efficiency = cached share / oracle share, TTFT mean / p50 / p99 (client,
first streamed chunk), and the missed oracle tokens split by whether the prefix's holder had its first
token when the request arrived (benchmarks/_routing_misses.py). Targets: cache_efficiency_min
(prefix_aware's lowest over all window rounds) ≥ 0.9; on windows whose oracle share ≥ 0.3 (others are
reported as such: TTFT targets do not apply), the worst window's ttft_mean_ratio_vs_rr (ours / round
robin, mean over its rounds) ≤ 0.7 and ttft_mean_ratio_vs_vllm_router (ours / vllm-router cache_aware)
≤ 0.9.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from benchmarks._replay import replay_requests
from benchmarks._replay import summarize as summarize_replay
from benchmarks._report import Target, add_arguments, finish
from benchmarks._routing_cpu import account as cpu_account
from benchmarks._routing_cpu import snapshot as cpu_snapshot
from benchmarks._routing_misses import miss_causes
from benchmarks._routing_parts import decompose
from benchmarks._routing_parts import measure as measure_parts
from benchmarks._routing_systems import (
    ENGINES,
    OURS,
    PEER_POLICIES,
    PEER_PREFIX,
    System,
    report_failures,
    start_ours,
    start_peer,
    system_pids,
)
from benchmarks._routing_workload import (
    TraceRequest,
    TraceRow,
    Window,
    build_requests,
    evenly_spaced,
    oracle_share,
    read_trace,
    single_token_words,
)
from heteroserve.modelgen import PRESETS, create_model

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRACE = ROOT.parent / "shared" / "data" / "traces" / "mooncake_synthetic_trace.jsonl"
ORACLE_MIN = 0.3  # TTFT targets apply to windows with at least this oracle share
EFFICIENCY_TARGET: dict[str, Target] = {"cache_efficiency_min": (">=", 0.9)}
TTFT_TARGETS: dict[str, Target] = {"ttft_mean_ratio_vs_rr": ("<=", 0.7),
                                   "ttft_mean_ratio_vs_vllm_router": ("<=", 0.9)}
OURS_NAME, RR_NAME, PEER_NAME = "prefix_aware", "round_robin", PEER_PREFIX + "cache_aware"
DEFAULTS = {"windows": 3, "requests": 160, "rounds": 2, "time_scale": 0.8, "preset": "bench",
            "policies": list(OURS), "peers": ["cache_aware"]}
LONG_HORIZON = {"windows": 1, "requests": None, "rounds": 1, "time_scale": 0.15, "preset": "tiny",
                "policies": ["round_robin", "prefix_aware"], "peers": ["cache_aware"]}
# --engine vllm: a vLLM engine holds ~2 GB here, so 2 workers per system and one system at a time; the
# time scale keeps each worker's arrival rate the default's (0.8 × 4 workers / 2 workers); one round of
# 80 requests per window keeps a run near 10 minutes (three engine pairs start in ~1-2 min each).
VLLM_ENGINE = {"workers": 2, "requests": 80, "rounds": 1, "time_scale": 1.6,
               "policies": ["round_robin", "prefix_aware"]}
QUICK = {"windows": 1, "requests": 16, "rounds": 1}


def choose_windows(num_rows: int, args: argparse.Namespace) -> list[Window]:
    size = args.requests or num_rows
    if args.start is not None:
        if not 0 <= args.start < num_rows:
            raise ValueError(f"--start: must be in [0, {num_rows}), got {args.start}")
        return [Window(args.start, min(size, num_rows - args.start))]
    return evenly_spaced(num_rows, args.windows, size)


def _start(name: str, args: argparse.Namespace, model_dir: Path, workdir: Path) -> System:
    print(f"starting {name} (Redis, {args.workers} {args.engine} workers, router)", file=sys.stderr,
          flush=True)
    if name.startswith(PEER_PREFIX):
        return start_peer(name.removeprefix(PEER_PREFIX), model_dir, workdir, args.workers,
                          engine=args.engine)
    return start_ours(name, model_dir, workdir, args.workers, engine=args.engine,
                      gateway_args=tuple(args.gateway_arg))


def measure(args: argparse.Namespace, workdir: Path) -> tuple[list[dict[str, Any]], list[System]]:
    """Start every system, replay every (window, round) on each in rotating order; stop them. With
    `args.engine` vllm one system runs at a time instead (start, every replay, stop): see VLLM_ENGINE."""
    rows = read_trace(args.trace)
    windows = choose_windows(len(rows), args)
    model_dir = create_model(workdir / "model", preset=args.preset, seed=0)
    words = single_token_words(Tokenizer.from_file(str(model_dir / "tokenizer.json")))
    names = [*args.policies, *(PEER_PREFIX + p for p in args.peers)]
    if args.engine == "vllm":
        return _measure_one_at_a_time(args, names, rows, windows, model_dir, words, workdir)
    systems: list[System] = []
    plan = []
    try:
        for name in names:
            systems.append(_start(name, args, model_dir, workdir))
        turn = 0
        for wi, window in enumerate(windows):
            for r in range(args.rounds):
                requests = build_requests(rows, window, words=words, salt=1000 * wi + r + 1,
                                          max_blocks=args.max_blocks, time_scale=args.time_scale)
                plan.append({"window": wi, "round": r, "start": window.start, "requests": len(requests),
                             "oracle_share": oracle_share(requests),
                             "mean_prompt_tokens": statistics.fmean(q.prompt_tokens for q in requests)})
                for k in range(len(systems)):
                    system = systems[(turn + k) % len(systems)]
                    system.replays[(wi, r)] = summary = _replay(system, requests)
                    report_failures(system, summary)
                    print(f"window {wi} (start {window.start}) round {r + 1}/{args.rounds}: {system.name} "
                          f"cached {summary['cached_share']:.3f} of oracle {plan[-1]['oracle_share']:.3f}, "
                          f"ttft mean {summary['ttft_mean_s']} s, wall {summary['wall_s']:.1f} s, "
                          f"cpu {summary['cpu']}", file=sys.stderr, flush=True)
                turn += 1
        ours = next((s for s in systems if s.name == OURS_NAME), None)
        if args.ttft_parts and ours is not None:
            print(f"TTFT parts: {OURS_NAME}, requests one at a time (cold, then warm)", file=sys.stderr,
                  flush=True)
            ours.settings["ttft_parts"] = measure_parts(ours, [rows[i] for w in windows
                                                               for i in range(w.start, w.start + w.size)],
                                                        words=words, salt=999_000, max_blocks=args.max_blocks)
    finally:
        for system in systems:
            system.cluster.stop()
    return plan, systems


def _measure_one_at_a_time(args: argparse.Namespace, names: list[str], rows: list[TraceRow],
                           windows: list[Window], model_dir: Path, words: list[str],
                           workdir: Path) -> tuple[list[dict[str, Any]], list[System]]:
    """Each system in turn: start it, replay every (window, round) in order, stop it."""
    keyed = [((wi, r), window) for wi, window in enumerate(windows) for r in range(args.rounds)]
    workloads = {key: build_requests(rows, window, words=words, salt=1000 * key[0] + key[1] + 1,
                                     max_blocks=args.max_blocks, time_scale=args.time_scale)
                 for key, window in keyed}
    plan = [{"window": key[0], "round": key[1], "start": window.start, "requests": len(workloads[key]),
             "oracle_share": oracle_share(workloads[key]),
             "mean_prompt_tokens": statistics.fmean(q.prompt_tokens for q in workloads[key])}
            for key, window in keyed]
    systems = []
    for name in names:
        system = _start(name, args, model_dir, workdir)
        try:
            for key, requests in workloads.items():
                system.replays[key] = summary = _replay(system, requests)
                report_failures(system, summary)
                print(f"window {key[0]} round {key[1] + 1}: {name} cached {summary['cached_share']:.3f}, "
                      f"ttft mean {summary['ttft_mean_s']} s, errors {summary['errors']}, wall "
                      f"{summary['wall_s']:.1f} s, cpu {summary['cpu']}", file=sys.stderr, flush=True)
        finally:
            system.cluster.stop()
        systems.append(system)
    return plan, systems


def _replay(system: System, requests: list[TraceRequest]) -> dict[str, Any]:
    """One replay's summary (benchmarks/_replay.py) with its missed oracle tokens by cause
    (`missed_oracle_tokens`, benchmarks/_routing_misses.py) and who used the CPU meanwhile (`cpu`:
    the system, the bench's other systems, the client, outside the bench; benchmarks/_routing_cpu.py)."""
    before = cpu_snapshot()
    results, wall = replay_requests(system, requests)
    cpu = cpu_account(before, cpu_snapshot(), system_pids(system))
    return summarize_replay(results, wall) | {"missed_oracle_tokens": miss_causes(requests, results),
                                              "cpu": cpu}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(plan: list[dict[str, Any]], systems: list[System]) -> tuple[dict[str, Any], list[str]]:
    """The flat result (per window, per system, the target figures) and the parts that failed."""
    by_name = {s.name: s for s in systems}
    skipped = [f"{s.name}: {x['errors']} failed requests in window {k[0]} round {k[1] + 1} "
               f"({x['first_error']})" for s in systems for k, x in s.replays.items() if x["errors"]]
    windows: dict[int, dict[str, Any]] = {}
    efficiencies: list[float] = []
    for entry in plan:
        key, oracle = (entry["window"], entry["round"]), entry["oracle_share"]
        w = windows.setdefault(entry["window"], {
            "start": entry["start"], "requests": entry["requests"], "oracle_share": round(oracle, 4),
            "mean_prompt_tokens": round(entry["mean_prompt_tokens"], 1),
            "ttft_targets": "apply" if oracle >= ORACLE_MIN else f"n/a (oracle share < {ORACLE_MIN})",
            "rounds": []})
        row: dict[str, Any] = {}
        for s in systems:
            x = s.replays[key]
            eff = x["cached_share"] / oracle if oracle > 0 else None
            row[s.name] = {"cached_share": round(x["cached_share"], 4),
                           "cache_efficiency": round(eff, 4) if eff is not None else None,
                           **{k: round(x[k], 4) if isinstance(x[k], float) else x[k]
                              for k in ("ttft_mean_s", "ttft_p50_s", "ttft_p99_s", "wall_s",
                                        "requests_per_worker", "errors", "missed_oracle_tokens")},
                           "cpu": x.get("cpu")}
            if s.name == OURS_NAME and eff is not None:
                efficiencies.append(eff)
        ours = by_name.get(OURS_NAME)
        for label, other in (("vs_rr", RR_NAME), ("vs_vllm_router", PEER_NAME)):
            if ours is not None and other in by_name:
                ratio = _ratio(ours.replays[key]["ttft_mean_s"], by_name[other].replays[key]["ttft_mean_s"])
                row[f"ttft_mean_ratio_{label}"] = round(ratio, 4) if ratio is not None else None
        w["rounds"].append(row)
    result: dict[str, Any] = {"windows": list(windows.values())}
    if efficiencies:
        result |= {"cache_efficiency_min": round(min(efficiencies), 4),
                   "cache_efficiency_mean": round(statistics.fmean(efficiencies), 4),
                   "cache_efficiency_max": round(max(efficiencies), 4)}
    for s in systems:
        replays = list(s.replays.values())
        result[f"{s.name}_cached_share_mean"] = _mean([x["cached_share"] for x in replays])
        result[f"{s.name}_ttft_mean_s"] = _mean([x["ttft_mean_s"] for x in replays])
    parts = by_name[OURS_NAME].settings.pop("ttft_parts", None) if OURS_NAME in by_name else None
    if parts is not None and RR_NAME in by_name and len(windows) == 1:
        w0, rr = windows[0], by_name[RR_NAME].replays[(0, 0)]
        result["ttft_parts"] = parts | decompose(parts, mean_prompt_tokens=w0["mean_prompt_tokens"],
                                                 oracle_share=w0["oracle_share"],
                                                 rr_cached_share=rr["cached_share"],
                                                 rr_ttft_mean_s=rr["ttft_mean_s"])
    eligible = [w for w in windows.values() if w["oracle_share"] >= ORACLE_MIN]
    result["ttft_windows_eligible"] = len(eligible)
    for label in ("vs_rr", "vs_vllm_router"):
        per_window = [_mean([r.get(f"ttft_mean_ratio_{label}") for r in w["rounds"]]) for w in eligible]
        every = [r.get(f"ttft_mean_ratio_{label}") for w in eligible for r in w["rounds"]]
        if per_window and None not in per_window:
            result[f"ttft_mean_ratio_{label}"] = max(v for v in per_window if v is not None)  # worst window
            result[f"ttft_mean_ratio_{label}_mean"] = _mean(every)
            result[f"ttft_mean_ratio_{label}_spread"] = [round(min(v for v in every if v is not None), 4),
                                                         round(max(v for v in every if v is not None), 4)]
    return result, skipped


def targets_for(result: dict[str, Any]) -> dict[str, Target]:
    """cache_efficiency always; the TTFT targets only when some window's oracle share is ≥ ORACLE_MIN."""
    return {**EFFICIENCY_TARGET, **(TTFT_TARGETS if result.get("ttft_windows_eligible") else {})}


def print_windows(result: dict[str, Any]) -> None:
    for i, w in enumerate(result["windows"]):
        print(f"window {i}: requests {w['start']}..{w['start'] + w['requests'] - 1}, oracle share "
              f"{w['oracle_share']:.3f}, mean prompt {w['mean_prompt_tokens']} tokens, TTFT targets: "
              f"{w['ttft_targets']}")
        for r, row in enumerate(w["rounds"]):
            for name, x in row.items():
                if isinstance(x, dict):
                    print(f"  round {r + 1} {name:<28} cached {x['cached_share']:.3f}  efficiency "
                          f"{x['cache_efficiency']}  ttft mean/p50/p99 {x['ttft_mean_s']}/{x['ttft_p50_s']}/"
                          f"{x['ttft_p99_s']} s  wall {x['wall_s']} s  per worker {x['requests_per_worker']}"
                          f"  missed oracle tokens {x['missed_oracle_tokens']}  cpu {x['cpu']}")
    if "ttft_parts" in result:
        print("TTFT parts (idle, one request at a time; applied to round robin's replay): "
              + ", ".join(f"{k} {v}" for k, v in result["ttft_parts"].items()))
    if not result.get("ttft_windows_eligible"):
        print(f"TTFT targets not applicable: no window has an oracle share >= {ORACLE_MIN}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The run's settings: flags typed win, then --quick, then --engine vllm's, then the mode's defaults."""
    parser = argparse.ArgumentParser(prog="heteroserve bench routing", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="Mooncake-format JSONL trace")
    parser.add_argument("--long-horizon", action="store_true",
                        help="the whole trace as one window, tiny model, time scale 0.15 (see docs)")
    parser.add_argument("--windows", type=int, help="k evenly spaced windows (default 3)")
    parser.add_argument("--start", type=int, help="pick one window by hand: index of its first request")
    parser.add_argument("--requests", type=int, help="requests per window (default 160)")
    parser.add_argument("--rounds", type=int, help="replays of each window, fresh blocks each (default 2)")
    parser.add_argument("--time-scale", type=float, help="arrival-time multiplier (default 0.8)")
    parser.add_argument("--max-blocks", type=int, default=32, help="leading blocks kept per request")
    parser.add_argument("--workers", type=int, help="workers per system (default 4; 2 with --engine vllm)")
    parser.add_argument("--engine", choices=ENGINES, default="native",
                        help="the workers' engine (vllm: one system at a time, see docs)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 window of 16 requests, 1 round")
    parser.add_argument("--gateway-arg", action="append", default=[], metavar="FLAG",
                        help="an extra flag for our gateways, e.g. --gateway-arg=--load-signal=reported "
                             "(repeatable; an A/B of router settings; stated in the output)")
    parser.add_argument("--ttft-parts", action="store_true",
                        help="after the replays, split prefix_aware's idle TTFT into fixed and prefill parts "
                             "(requests one at a time; benchmarks/_routing_parts.py) and apply it to round "
                             "robin's replay (one window only)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="model preset (default bench)")
    parser.add_argument("--policies", nargs="*", choices=OURS, help="our gateway's policies (default all)")
    parser.add_argument("--peers", nargs="*", choices=PEER_POLICIES,
                        help="vllm-router policies (default cache_aware)")
    args = parser.parse_args(argv)
    presets = [*([QUICK] if args.quick else []), *([VLLM_ENGINE] if args.engine == "vllm" else []),
               LONG_HORIZON if args.long_horizon else DEFAULTS, {"workers": 4}]
    for preset in presets:  # the first that sets a flag wins; flags typed by hand win over all
        for key, value in preset.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if not args.trace.is_file():
        parser.error(f"--trace: no such file {args.trace}")
    for name in ("windows", "rounds", "workers", "max_blocks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.requests is not None and args.requests < 1:
        parser.error(f"--requests: must be >= 1, got {args.requests}")
    if args.time_scale <= 0:
        parser.error(f"--time-scale: must be > 0, got {args.time_scale}")
    if args.engine == "vllm" and args.long_horizon:
        parser.error("--engine vllm: not with --long-horizon (12 vLLM engines do not fit this machine)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        plan, systems = measure(args, Path(tmp))
    result, skipped = summarize(plan, systems)
    result |= {"trace": args.trace.name, "preset": args.preset, "time_scale": args.time_scale,
               "rounds": args.rounds, "workers": args.workers, "max_blocks": args.max_blocks,
               "long_horizon": args.long_horizon, "engine": args.engine, "quick": args.quick,
               "systems": {s.name: s.settings for s in systems},
               "window_rule": (f"one window by hand: --start {args.start}" if args.start is not None else
                               f"{args.windows} evenly spaced: start_i = floor(i*N/{args.windows})")}
    print_windows(result)
    return finish(result, targets_for(result), args, skipped)
