"""Other Llama-family layouts: Qwen2 (qkv bias) and Mistral load and match `transformers` greedy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from tests.workers.engine.conftest import greedy_request, make_prompts, run_all
from workers.engine.config import EngineConfig
from workers.engine.engine import LLMEngine


def _variant(src: Path, dst: Path, architecture: str, model_type: str, bias: bool) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(architectures=[architecture], model_type=model_type)
    if model_type == "qwen2":
        config.update(use_sliding_window=False, sliding_window=None)
    (dst / "config.json").write_text(json.dumps(config))
    if bias:
        tensors = load_file(str(dst / "model.safetensors"))
        rng = np.random.default_rng(3)
        for i in range(config["num_hidden_layers"]):
            for name in "qkv":
                rows = tensors[f"model.layers.{i}.self_attn.{name}_proj.weight"].shape[0]
                bias_name = f"model.layers.{i}.self_attn.{name}_proj.bias"
                tensors[bias_name] = rng.normal(0, 0.5, rows).astype("float32")
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize("architecture,model_type,bias", [("Qwen2ForCausalLM", "qwen2", True),
                                                          ("MistralForCausalLM", "mistral", False)])
def test_family_matches_hf(tiny_model_dir: Path, tmp_path: Path, architecture: str, model_type: str,
                           bias: bool) -> None:
    from transformers import AutoModelForCausalLM

    model_dir = _variant(tiny_model_dir, tmp_path / model_type, architecture, model_type, bias)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    assert type(hf).__name__ == architecture
    engine = LLMEngine(EngineConfig(model_dir, num_kv_blocks=64, max_num_batched_tokens=32))
    prompts = make_prompts([7, 40], seed=31)
    events = run_all(engine, [greedy_request(f"f{i}", p, 10) for i, p in enumerate(prompts)])
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              max_new_tokens=10, min_new_tokens=10, pad_token_id=3)
        assert [e.token_id for e in events[f"f{i}"]] == out[0, len(prompt):].tolist()
