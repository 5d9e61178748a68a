"""`heteroserve demo`: start the embedded cluster, replay a scaled trace through the SDK, show the planner
react to a load step and to long prompts, print and save a report, stop everything.

The cluster is the default embedded config with the changes `demo_config` lists (the `demo` model
preset, the availability floor off: `min_replicas: 1`, one machine's cores; one warm class; a 30 s
peak horizon). Its first start measures the profiles of the demo model (cached in the run dir).
Phases (`heteroserve/embedded/demo_load.py`, rates derived from the capacity the cluster measured,
printed before the run with the plan each phase should get): `base` (chat at 0.4 of one colocated
worker's capacity), `step` (1.6: a worker is added), `long` (chat at base plus prompts of 700-950
tokens: P/D pools appear), `drop` (back to base: the extra workers drain).
Requests go through `heteroserve.AsyncClient` (REST, streaming), open loop: each is sent at its
scheduled time whatever the others do. A request counts as failed if the SDK raises or the stream
ends without a finish reason. Plan changes and workers added or drained are printed as they happen;
at the end, the report and a summary (`demo_summary`: plans adopted, workers started and drained,
the gateway's served vs planned shares per plan, requests per phase, failures).
Outputs: `<run_dir>/demo_report.json` (the summary under `extra`) and `<run_dir>/demo_report.png`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from heteroserve.client import AsyncClient
from heteroserve.embedded.config import DEFAULT_CONFIG_PATH, ROOT, load_embedded_config
from heteroserve.embedded.demo_load import LONG_MIN_INPUT, demo_workload, derive, expected_plans
from heteroserve.embedded.demo_summary import summary_lines
from heteroserve.embedded.launcher import EmbeddedCluster, summary
from heteroserve.embedded.report import RequestResult, TimelinePoint, build_report, print_report, save_chart
from heteroserve.embedded.state import ClusterState
from heteroserve.embedded.workload import PromptMaker, ScheduledRequest, WorkloadConfig, build_schedule

log = logging.getLogger(__name__)
SHARED_TRACE = ROOT.parent / "shared" / "data" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"
BUNDLED_TRACE = Path(__file__).parent / "data" / "azure2023_conv_first1500.csv"  # same trace, first rows
BASE = {"chat": 1.5, "long": 0.5}  # fixed rates of shortened demo workloads (tests); the demo derives its own
SCALE_DOWN_WAIT_S = 45.0  # after the workload, at most this long for the plan to shrink
DEMO_MODEL_PRESET = "demo"  # heteroserve.modelgen preset (demo_load's docstring says why not tiny)


async def _send(client: AsyncClient, model: str, req: ScheduledRequest, t0: float) -> RequestResult:
    await asyncio.sleep(max(0.0, t0 + req.at_seconds - time.monotonic()))
    sent = time.monotonic()
    first: float | None = None
    tokens, finish, route, error = 0, None, None, ""
    try:
        async for chunk in client.stream(req.prompt, model=model, max_tokens=req.max_tokens, ignore_eos=True):
            if first is None and (chunk.text or chunk.token_ids):
                first = time.monotonic()
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
            if chunk.route is not None:
                route = chunk.route
            finish = chunk.finish_reason or finish
    except Exception as exc:  # every failure is counted and reported, none is hidden
        error = f"{type(exc).__name__}: {exc}"
    done = time.monotonic()
    if not error and not finish:
        error = "stream ended without a finish reason"
    return RequestResult(index=req.index, phase=req.phase, request_class=req.request_class,
                         sent_at=sent - t0, input_tokens=req.input_tokens, output_tokens=tokens,
                         ttft_seconds=(first - sent) if first else None, e2e_seconds=done - sent,
                         ok=not error, error=error, route=route)


async def _watch(redis_url: str, t0: float, timeline: list[TimelinePoint], stop: asyncio.Event,
                 routing: Routing | None = None) -> None:
    """Sample the plan and the registered workers per pool every second until `stop`; with `routing`,
    also the gateway's /admin/routing into `routing[plan version]` (the last sample per version)."""
    import redis.asyncio as aioredis

    from common.registry import list_workers
    from control_plane.plan_store import PlanStore

    client = aioredis.Redis.from_url(redis_url)
    try:
        while not stop.is_set():
            if routing is not None:
                await _sample_routing(routing)
            with contextlib.suppress(redis.RedisError):
                record = await PlanStore(client).read()
                running: dict[str, int] = {}
                for w in await list_workers(client):
                    if not w.draining:
                        running[w.pool] = running.get(w.pool, 0) + 1
                timeline.append(TimelinePoint(
                    at=time.monotonic() - t0, plan_version=record.version if record else 0,
                    desired={p["name"]: p["count"] for p in record.plan.get("pools", [])} if record else {},
                    running=running, plan_reason=record.reason if record else ""))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await stop.wait()
    finally:
        await client.aclose()


@dataclass
class Routing:
    """The gateway's GET /admin/routing, sampled: `by_version[plan version]` = its last answer."""

    http_url: str
    admin_token: str
    by_version: dict[int, dict[str, Any]] = field(default_factory=dict)


async def _sample_routing(routing: Routing) -> None:
    import httpx

    with contextlib.suppress(httpx.HTTPError, ValueError):
        async with httpx.AsyncClient(timeout=2.0) as http:
            reply = await http.get(f"{routing.http_url}/admin/routing",
                                   headers={"authorization": f"Bearer {routing.admin_token}"})
        doc = reply.json() if reply.status_code == 200 else None
        if isinstance(doc, dict) and doc.get("plan_version"):
            routing.by_version[int(doc["plan_version"])] = doc


async def run_workload(state: ClusterState, schedule: list[ScheduledRequest], console: Console,
                       timeline: list[TimelinePoint],
                       routing: Routing | None = None) -> tuple[list[RequestResult], float]:
    """Send `schedule` (open loop, streaming REST) to the cluster of `state`, narrating plan and fleet
    changes on `console` and sampling them into `timeline` (and the gateway's shares into `routing`);
    (results, monotonic start time)."""
    t0 = time.monotonic()
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(state.redis_url, t0, timeline, stop, routing))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    async with AsyncClient(state.http_url, api_key=state.api_key, timeout_seconds=120.0) as client:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("requests", total=len(schedule), status="")
            narrator = asyncio.create_task(_narrate(timeline, progress.console, stop))
            pending = [asyncio.create_task(_send(client, state.model, r, t0)) for r in schedule]
            results: list[RequestResult] = []
            for next_done in asyncio.as_completed(pending):
                result = await next_done
                results.append(result)
                failed = sum(not r.ok for r in results)
                plan = timeline[-1] if timeline else None
                progress.update(task, advance=1, status=f"phase {result.phase:<5} failed {failed}  plan "
                                f"v{plan.plan_version if plan else 0} {_pools_text(plan)}")
    stop.set()
    await watcher
    await narrator
    return results, t0


async def _narrate(timeline: list[TimelinePoint], console: Console, stop: asyncio.Event) -> None:
    """Print each plan change and each worker added or drained, as they happen."""
    seen = 1
    while True:
        done = stop.is_set()
        for i in range(seen, len(timeline)):
            for line in _changes(timeline[i - 1], timeline[i]):
                console.print(f"[dim]t={timeline[i].at:5.1f}s[/dim] {line}")
        seen = max(seen, len(timeline))
        if done:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await stop.wait()


def _changes(before: TimelinePoint, now: TimelinePoint) -> list[str]:
    lines = []
    if now.plan_version != before.plan_version:
        moved = [f"{p} {before.desired.get(p, 0)}→{n}" for p, n in sorted(now.desired.items())
                 if n != before.desired.get(p, 0)]
        if moved:
            lines.append(f"[bold]plan v{now.plan_version}[/bold] ({now.plan_reason}): {', '.join(moved)}")
    for pool in sorted(set(before.running) | set(now.running)):
        a, b = before.running.get(pool, 0), now.running.get(pool, 0)
        if b > a:
            lines.append(f"[green]worker added[/green] to {pool} ({a}→{b})")
        elif b < a:
            lines.append(f"[yellow]worker drained[/yellow] from {pool} ({a}→{b})")
    return lines


def _pools_text(point: TimelinePoint | None) -> str:
    if point is None:
        return ""
    return " ".join(f"{k}={v}" for k, v in sorted(point.running.items()))


async def _wait_for_scale_down(timeline: list[TimelinePoint], redis_url: str, t0: float,
                               seconds: float, routing: Routing | None = None) -> None:
    """Keep watching (the workload is over) until the plan shrank after its peak, at most `seconds`."""
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(redis_url, t0, timeline, stop, routing))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not _scaled_down(timeline):
        await asyncio.sleep(1.0)
    stop.set()
    await watcher


def _scaled_down(timeline: list[TimelinePoint]) -> bool:
    totals = [sum(p.desired.values()) for p in timeline]
    if not totals:
        return False
    peak = max(range(len(totals)), key=totals.__getitem__)
    return any(t < totals[peak] for t in totals[peak:])


def run_demo(run_dir: str | Path) -> int:
    """The whole demo; returns 0 when every request succeeded, 1 otherwise."""
    console = Console()
    run_path = Path(run_dir).resolve()
    config_path = demo_config(run_path)
    config = load_embedded_config(config_path)
    cluster = EmbeddedCluster(config, run_path, config_path=config_path)
    console.print(f"[bold]heteroserve demo[/bold]: starting the embedded cluster in {run_path} ...")
    started = time.monotonic()
    try:
        state = cluster.start()
        console.print(summary(state))
        trace = SHARED_TRACE if SHARED_TRACE.exists() else BUNDLED_TRACE
        workload = demo_workload(WorkloadConfig(trace=trace, phases=()))
        load = derive(config, Path(state.model_dir), cluster.profile_paths, workload)
        workload = replace(workload, phases=load.phases)
        console.print(load.describe())
        console.print("the planner's solver gives each phase's mean demand:\n"
                      + "\n".join(expected_plans(config, Path(state.model_dir), cluster.profile_paths, load)))
        prompts = PromptMaker(Path(state.model_dir) / "tokenizer.json",
                              (ROOT / "heteroserve" / "modelgen" / "corpus.txt").read_text(), workload)
        schedule = build_schedule(workload, prompts)
        console.print(_describe(workload, schedule))
        timeline: list[TimelinePoint] = []
        routing = Routing(state.http_url, state.admin_token)
        results, t0 = asyncio.run(run_workload(state, schedule, console, timeline, routing))
        if not _scaled_down(timeline):
            console.print(f"waiting (at most {SCALE_DOWN_WAIT_S:.0f} s) for the planner to scale down after "
                          "the drop ...")
            asyncio.run(_wait_for_scale_down(timeline, state.redis_url, t0, SCALE_DOWN_WAIT_S, routing))
        from heteroserve.embedded.status import collect

        status = collect(state)
        report = build_report(results, timeline, status, workload, time.monotonic() - started)
        summary_text = summary_lines(results, timeline, routing.by_version, workload.phases)
        report.extra["summary"] = [Text.from_markup(line).plain for line in summary_text]
        report.extra["routing_by_plan"] = routing.by_version
        json_path, png_path = run_path / "demo_report.json", run_path / "demo_report.png"
        report.write(json_path)
        save_chart(results, timeline, workload.phases, png_path)
        print_report(report, console)
        console.print("\n".join(summary_text))
        console.print(f"report: {json_path}\nchart:  {png_path}")
        return 0 if report.num_failed == 0 else 1
    finally:
        console.print("stopping the embedded cluster ...")
        cluster.stop()
        console.print(f"done in {time.monotonic() - started:.0f} s.")


def demo_config(run_path: Path) -> Path:
    """The default embedded config changed for the demo (module docstring), in the run dir: the demo
    model, the availability floor off, one warm class (short chat: the long warm class of the default
    config would keep P/D pools running before any long prompt arrives, hiding the planner's
    reaction to them) and a 30 s peak horizon (the default 60 s would hold the step's peak through
    most of the next phase)."""
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    document["model"].update(name=DEMO_MODEL_PRESET, preset=DEMO_MODEL_PRESET)
    document.setdefault("options", {})["min_replicas"] = 1
    document["classes"] = [c for c in document.get("classes", []) if c["input_tokens"] < LONG_MIN_INPUT][:1]
    document["planner"].setdefault("peak", {})["horizon_seconds"] = 30
    run_path.mkdir(parents=True, exist_ok=True)
    path = run_path / "demo.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _describe(workload: WorkloadConfig, schedule: list[ScheduledRequest]) -> str:
    phases = "; ".join(f"{p.name} {p.duration_seconds:.0f}s at "
                       + ", ".join(f"{c} {r:g}/s" for c, r in p.rate_per_s.items()) for p in workload.phases)
    w = workload
    return (f"workload: {len(schedule)} requests from {w.trace.name} (arrival gaps of the trace), "
            f"prompt lengths x{w.input_scale:g} clipped to [{w.min_input}, {w.max_input}], "
            f"output x{w.output_scale:g} clipped to [{w.min_output}, {w.max_output}]; phases: {phases}")

