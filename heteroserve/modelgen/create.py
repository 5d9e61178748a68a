"""Write one generated model directory (see the package docstring)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.numpy import save_file

from common.errors import InvalidRequestError
from heteroserve.modelgen.presets import PRESETS, Preset
from heteroserve.modelgen.tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, train_tokenizer
from heteroserve.modelgen.weights import make_weights

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def model_config(preset: Preset) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "head_dim": preset.head_dim,
        "hidden_act": "silu",
        "hidden_size": preset.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": preset.intermediate_size,
        "max_position_embeddings": preset.max_position_embeddings,
        "mlp_bias": False,
        "num_attention_heads": preset.num_heads,
        "num_hidden_layers": preset.num_layers,
        "num_key_value_heads": preset.num_kv_heads,
        "rms_norm_eps": preset.rms_norm_eps,
        "rope_scaling": None,
        "rope_theta": preset.rope_theta,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": preset.vocab_size,
    }


def _tokenizer_config(preset: Preset) -> dict[str, Any]:
    unk, bos, eos, pad = SPECIAL_TOKENS
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": unk,
        "pad_token": pad,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": preset.max_position_embeddings,
        "chat_template": CHAT_TEMPLATE,
    }


def create_model(path: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Write a generated Llama model of `preset` with weights from `seed` into `path` (created if
    missing; existing files of the same names are overwritten). Returns the directory."""
    if preset not in PRESETS:
        raise InvalidRequestError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}",
                                  field="preset")
    if not isinstance(seed, int) or seed < 0:
        raise InvalidRequestError(f"must be an integer >= 0, got {seed!r}", field="seed")
    spec = PRESETS[preset]
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", model_config(spec))
    _write_json(out / "generation_config.json",
                {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID, "do_sample": False})
    _write_json(out / "tokenizer_config.json", _tokenizer_config(spec))
    (out / "tokenizer.json").write_text(train_tokenizer(spec.vocab_size).to_str(pretty=True) + "\n",
                                        encoding="utf-8")
    save_file(make_weights(spec, seed), str(out / "model.safetensors"),
              metadata={"format": "pt"})  # one key: safetensors writes metadata in hash-map order
    return out
