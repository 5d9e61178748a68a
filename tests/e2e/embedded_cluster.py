"""Helpers of the end-to-end tests that run a whole embedded cluster (`heteroserve up`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from control_plane.profiler.machine import fingerprint, machine_info

SEEDED_PROFILES = Path(__file__).with_name("data")


def admin(state: dict[str, Any], path: str) -> Any:
    """GET /admin/<path> of the cluster whose state file `state` is, as JSON."""
    return httpx.get(f"{state['http_url']}/admin/{path}", timeout=10,
                     headers={"authorization": f"Bearer {state['admin_token']}"}).json()


def wait_until(what: str, predicate: Any, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def seed_profiles(cache: Path, model_dir: Path, preset: str = "tiny") -> None:
    """The committed profiles of `preset` (tiny: data/, demo: data/demo/) under the names the
    launcher's cache looks for on this machine."""
    from heteroserve.embedded.profiling import model_hash
    from heteroserve.modelgen import create_model
    from placement.profile_file import load_node_profile

    create_model(model_dir, preset=preset, seed=0)  # the model `up` generates: same bytes, same hash
    key = f"{model_hash(model_dir)}-{fingerprint(machine_info())}"
    folder = SEEDED_PROFILES if preset == "tiny" else SEEDED_PROFILES / preset
    for source in sorted(folder.glob("*.profile.json")):
        profile = load_node_profile(source)
        (cache / f"{key}-{profile.engine}-{profile.node_type}.json").write_text(source.read_text())
