"""Deterministic tiny Llama models in Hugging Face format, for tests, the demo and benchmarks.

`create_model(path, preset, seed)` writes `config.json`, `model.safetensors`, `tokenizer.json`,
`tokenizer_config.json` and `generation_config.json`. Same preset and seed give byte-identical files:
JSON is written with sorted keys, weights come from a seeded numpy generator (no torch needed), and the
BPE trainer is deterministic (see `tokenizer.py`). Nothing is cached between calls.
"""

from __future__ import annotations

from heteroserve.modelgen.create import create_model
from heteroserve.modelgen.presets import PRESETS, Preset

__all__ = ["PRESETS", "Preset", "create_model"]
