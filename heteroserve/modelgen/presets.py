"""Model presets: the shapes of the generated Llama models.

| preset | layers | hidden | heads / kv heads | intermediate | vocab | parameters |
|--------|--------|--------|------------------|--------------|-------|------------|
| tiny   | 2      | 128    | 4 / 2            | 352          | 2048  | ~0.9 M     |
| demo   | 6      | 192    | 6 / 2            | 512          | 2048  | ~3.1 M     |
| small  | 10     | 256    | 8 / 4            | 704          | 4096  | ~9.5 M     |
| bench  | 8      | 512    | 8 / 2            | 1408         | 8192  | ~31 M      |

`demo` is `heteroserve demo`'s model: heavy enough per token that the load which makes a worker's
measured capacity visible stays within what the gateway and the client drive on two cores (tiny
would need ~90 req/s at the load step), light enough that a 2,048-token prompt prefills within the
TTFT SLO on one core.

All presets have a context of 4,096 tokens, rope_theta 10,000 and untied embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} not divisible by num_kv_heads {self.num_kv_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_params(self) -> int:
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * self.intermediate_size + 2 * h
        return 2 * self.vocab_size * h + self.num_layers * per_layer + h


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", num_layers=2, hidden_size=128, num_heads=4, num_kv_heads=2,
                   intermediate_size=352, vocab_size=2048),
    "demo": Preset("demo", num_layers=6, hidden_size=192, num_heads=6, num_kv_heads=2,
                   intermediate_size=512, vocab_size=2048),
    "small": Preset("small", num_layers=10, hidden_size=256, num_heads=8, num_kv_heads=4,
                    intermediate_size=704, vocab_size=4096),
    "bench": Preset("bench", num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=2,
                    intermediate_size=1408, vocab_size=8192),
}
