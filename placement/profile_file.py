"""The measured profile of one (model, node type, engine): what `heteroserve profile` writes and
`placement.compile` reads.

One JSON file per (model, node type, engine), schema `PROFILE_SCHEMA` (an integer; readers refuse a
newer one). Every number is a measurement of real workers of that node type:

    {"schema": 1, "kind": "heteroserve.profile",
     "model": "tiny", "model_hash": "…", "node_type": "cpu-local", "engine": "native", "device": "cpu",
     "fingerprint": "…",            # machine fingerprint (hash of `machine`), a cache key
     "machine": {"cpu": …, "cores": …, "memory_gb": …, "torch": …},
     "measured_at": "2026-…Z", "kv_bytes_per_token": 2048, "kv_capacity_tokens": 32768,
     "roles": {
       "colocated": {"prefill": [PrefillPoint…], "decode": [DecodePoint…]},
       "prefill":   {"prefill": [PrefillPoint…]},
       "decode":    {"decode":  [DecodePoint…]}},
     "transfer": [{"path": "peer" | "shared", "bytes": …, "seconds": …, "bytes_per_second": …,
                   "latency_seconds": …}],
     "idle": {"idle_seconds": …, "seconds": …, "input_tokens": …, "decode_scale": …,
              "warm_seconds": …}}   # optional

- `PrefillPoint(input_tokens, batch, seconds)`: `batch` prompts of `input_tokens` each, sent together
  to an idle worker of the role; `seconds` = until the last of them had its first token (the batch's
  TTFT; the prefill throughput is batch · input_tokens / seconds).
- `DecodePoint(batch, context_tokens, seconds)`: `batch` sequences decoding together at a context of
  `context_tokens`; `seconds` = mean time per output token (TPOT) of one sequence.
- `TransferPoint`: KV of a prefilled prompt moved prefill → decode worker on one path: `peer` (the
  decode side's `PullKV` stream from the prefill worker) or `shared` (blocks read from the shared
  Redis tier); `latency_seconds` is the fixed cost of one transfer, `bytes_per_second` the slope.
- `WakeCost` (`idle`, optional): what leaving idle costs a worker of the node type: a lone prompt of
  `input_tokens` sent after `idle_seconds` of idleness has its first token `seconds` later than the
  same prompt sent back to back (medians), and its TPOT is `decode_scale` × theirs; the simulator adds
  `seconds` to an instance's first iteration after at least that long idle and scales its decode
  steps for `warm_seconds` after (the span of the measured request).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from common.errors import ConfigError
from common.vocab import (
    ROLES,
    Device,
    Engine,
    Role,
    TransferPath,
    parse_device,
    parse_engine,
    parse_role,
)

PROFILE_SCHEMA = 1
PROFILE_KIND = "heteroserve.profile"


@dataclass(frozen=True)
class PrefillPoint:
    """`batch` prompts of `input_tokens`, all first tokens after `seconds`."""

    input_tokens: int
    batch: int
    seconds: float

    def __post_init__(self) -> None:
        if self.input_tokens < 1 or self.batch < 1:
            raise ValueError(f"prefill point: input_tokens and batch must be >= 1, got {self}")
        if self.seconds <= 0:
            raise ValueError(f"prefill point: seconds must be > 0, got {self.seconds}")


@dataclass(frozen=True)
class DecodePoint:
    """`batch` sequences at `context_tokens` each take `seconds` per output token (TPOT)."""

    batch: int
    context_tokens: int
    seconds: float

    def __post_init__(self) -> None:
        if self.batch < 1 or self.context_tokens < 1:
            raise ValueError(f"decode point: batch and context_tokens must be >= 1, got {self}")
        if self.seconds <= 0:
            raise ValueError(f"decode point: seconds must be > 0, got {self.seconds}")


@dataclass(frozen=True)
class RoleProfile:
    """What a worker in one role was measured doing: prefill points, decode points (either may be empty)."""

    prefill: tuple[PrefillPoint, ...] = ()
    decode: tuple[DecodePoint, ...] = ()


@dataclass(frozen=True)
class TransferPoint:
    """KV moved on `path`: `bytes` in `seconds` (one transfer); fitted slope and fixed cost."""

    path: TransferPath
    bytes: int
    seconds: float
    bytes_per_second: float
    latency_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.path not in ("peer", "shared"):
            raise ValueError(f"transfer.path: must be peer or shared, got {self.path!r}")
        if self.bytes_per_second <= 0 or self.seconds <= 0:
            raise ValueError(f"transfer ({self.path}): bytes_per_second and seconds must be > 0")
        if self.latency_seconds < 0:
            raise ValueError(f"transfer ({self.path}): latency_seconds must be >= 0")

    def seconds_for(self, num_bytes: float) -> float:
        return self.latency_seconds + num_bytes / self.bytes_per_second


@dataclass(frozen=True)
class WakeCost:
    """Extra `seconds` of a worker's first iteration after at least `idle_seconds` idle, and its decode
    steps × `decode_scale` for `warm_seconds` after (module docstring); measured with lone prompts of
    `input_tokens`."""

    idle_seconds: float
    seconds: float
    input_tokens: int = 0
    decode_scale: float = 1.0
    warm_seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in ("idle_seconds", "seconds", "input_tokens", "warm_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"idle.{name}: must be >= 0, got {getattr(self, name)}")
        if not self.decode_scale > 0:
            raise ValueError(f"idle.decode_scale: must be > 0, got {self.decode_scale}")


@dataclass(frozen=True)
class NodeProfile:
    """Measured profile of `model` on one `node_type` running `engine` (module docstring)."""

    model: str
    node_type: str
    engine: Engine
    device: Device
    fingerprint: str
    kv_bytes_per_token: float
    kv_capacity_tokens: int
    roles: Mapping[Role, RoleProfile]
    transfer: tuple[TransferPoint, ...] = ()
    model_hash: str = ""
    machine: Mapping[str, Any] = field(default_factory=dict)
    measured_at: str = ""
    schema: int = PROFILE_SCHEMA
    idle: WakeCost | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))
        object.__setattr__(self, "machine", MappingProxyType(dict(self.machine)))
        if not self.model or not self.node_type:
            raise ValueError("model and node_type must not be empty")
        parse_engine(self.engine)
        parse_device(self.device)
        for role in self.roles:
            parse_role(role, "roles")
        if self.kv_bytes_per_token <= 0:
            raise ValueError(f"kv_bytes_per_token: must be > 0, got {self.kv_bytes_per_token}")
        if self.kv_capacity_tokens < 1:
            raise ValueError(f"kv_capacity_tokens: must be >= 1, got {self.kv_capacity_tokens}")
        if len({t.path for t in self.transfer}) != len(self.transfer):
            raise ValueError("transfer: at most one entry per path")

    def role(self, role: Role) -> RoleProfile | None:
        return self.roles.get(role)

    def transfer_path(self, path: TransferPath) -> TransferPoint | None:
        return next((t for t in self.transfer if t.path == path), None)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "kind": PROFILE_KIND,
            "model": self.model,
            "model_hash": self.model_hash,
            "node_type": self.node_type,
            "engine": self.engine,
            "device": self.device,
            "fingerprint": self.fingerprint,
            "machine": dict(self.machine),
            "measured_at": self.measured_at,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_capacity_tokens": self.kv_capacity_tokens,
            "roles": {
                role: {
                    "prefill": [asdict(p) for p in rp.prefill],
                    "decode": [asdict(p) for p in rp.decode],
                }
                for role, rp in sorted(self.roles.items(), key=lambda kv: ROLES.index(kv[0]))
            },
            "transfer": [asdict(t) for t in self.transfer],
            **({"idle": asdict(self.idle)} if self.idle is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> NodeProfile:
        """Inverse of `to_dict`; ConfigError naming the field on a malformed or newer-schema file."""
        schema = data.get("schema")
        if not isinstance(schema, int) or schema > PROFILE_SCHEMA or data.get("kind") != PROFILE_KIND:
            raise ConfigError(
                f"not a {PROFILE_KIND} file of schema <= {PROFILE_SCHEMA} (schema {schema!r}, "
                f"kind {data.get('kind')!r})", field="schema", source=source)
        try:
            roles = {
                parse_role(role, f"roles.{role}"): RoleProfile(
                    tuple(PrefillPoint(**p) for p in body.get("prefill", ())),
                    tuple(DecodePoint(**p) for p in body.get("decode", ())),
                )
                for role, body in data["roles"].items()
            }
            return cls(
                model=str(data["model"]), node_type=str(data["node_type"]),
                engine=parse_engine(str(data.get("engine", "native"))),
                device=parse_device(str(data["device"])), fingerprint=str(data.get("fingerprint", "")),
                kv_bytes_per_token=float(data["kv_bytes_per_token"]),
                kv_capacity_tokens=int(data["kv_capacity_tokens"]), roles=roles,
                transfer=tuple(TransferPoint(**t) for t in data.get("transfer", ())),
                model_hash=str(data.get("model_hash", "")), machine=dict(data.get("machine", {})),
                measured_at=str(data.get("measured_at", "")), schema=schema,
                idle=WakeCost(**data["idle"]) if data.get("idle") is not None else None,
            )
        except KeyError as exc:
            name = str(exc.args[0])
            raise ConfigError(f"missing field {name!r}", field=name, source=source) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"malformed profile ({exc})", source=source) from None


def is_profile_document(data: Mapping[str, Any]) -> bool:
    """True for a `NodeProfile` document (as opposed to a Mélange-format file)."""
    return data.get("kind") == PROFILE_KIND


def load_node_profile(path: str | Path) -> NodeProfile:
    """Read a profile file; ConfigError naming the file on bad JSON or a malformed profile."""
    source = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read profile ({exc})", source=source) from None
    if not isinstance(data, dict):
        raise ConfigError("a profile file holds a JSON object", source=source)
    return NodeProfile.from_dict(data, source=source)


def save_node_profile(path: str | Path, profile: NodeProfile) -> None:
    """Write atomically (temp file + rename), so a reader never sees half a profile."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(profile.to_dict(), indent=2) + "\n")
    tmp.replace(path)
