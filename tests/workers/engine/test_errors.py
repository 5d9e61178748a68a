"""Bad input and bad model directories give the right error, naming the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from safetensors.numpy import load_file, save_file

from common.errors import ConfigError, InvalidRequestError, KVTransferError
from workers.engine.config import EngineConfig
from workers.engine.engine import LLMEngine
from workers.engine.types import EngineRequest, KVBlock, SamplingParams


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(model_dir: Path, **changes: Any) -> None:
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_prompt_over_context(make_engine: Any) -> None:
    engine = make_engine(num_kv_blocks=400)
    with pytest.raises(InvalidRequestError) as info:
        engine.add_request(EngineRequest("x", tuple([5] * 4096)))
    assert info.value.field == "prompt" and "4096" in str(info.value)


def test_token_out_of_vocab_and_duplicate_id(make_engine: Any) -> None:
    engine = make_engine()
    with pytest.raises(InvalidRequestError, match="prompt"):
        engine.add_request(EngineRequest("x", (1, 99999)))
    engine.add_request(EngineRequest("y", (1, 2, 3)))
    with pytest.raises(InvalidRequestError) as info:
        engine.add_request(EngineRequest("y", (1, 2, 3)))
    assert info.value.field == "request_id"


def test_request_outgrowing_the_pool_ends_with_length(make_engine: Any) -> None:
    from tests.workers.engine.conftest import greedy_request, run_all

    engine = make_engine(num_kv_blocks=3, max_num_batched_tokens=16)
    events = run_all(engine, [greedy_request("big", [1, *range(10, 40)], 100)])["big"]
    # 48 slots hold the 31 prompt tokens and 17 generated ones; the 18th is sampled from the 48th slot
    assert len(events) == 18 + 1 and events[-1].finish_reason == "length"
    assert events[-1].token_id is None and not engine.has_unfinished()
    engine.block_manager.check_integrity([])


def test_prompt_larger_than_pool(make_engine: Any) -> None:
    with pytest.raises(InvalidRequestError, match="KV blocks"):
        make_engine(num_kv_blocks=2).add_request(EngineRequest("x", tuple([5] * 40)))


@pytest.mark.parametrize("kwargs,field", [({"max_tokens": 0}, "sampling.max_tokens"),
                                          ({"top_p": 0.0}, "sampling.top_p"),
                                          ({"top_p": 1.5}, "sampling.top_p"),
                                          ({"temperature": -1.0}, "sampling.temperature"),
                                          ({"stop": ("",)}, "sampling.stop[0]")])
def test_bad_sampling_names_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        SamplingParams(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_file(tiny_model_dir: Path, tmp_path: Path, missing: str) -> None:
    model = _copy(tiny_model_dir, tmp_path / "m")
    (model / missing).unlink()
    with pytest.raises(ConfigError, match=missing.replace("model.", r"\*.")):
        LLMEngine(EngineConfig(model, num_kv_blocks=8))


def test_unsupported_architecture_and_rope_scaling(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _copy(tiny_model_dir, tmp_path / "m")
    _edit_config(model, architectures=["GPT2LMHeadModel"])
    with pytest.raises(ConfigError) as info:
        LLMEngine(EngineConfig(model, num_kv_blocks=8))
    assert info.value.field == "architectures"
    _edit_config(model, architectures=["LlamaForCausalLM"], rope_scaling={"type": "linear", "factor": 2.0})
    with pytest.raises(ConfigError) as info:
        LLMEngine(EngineConfig(model, num_kv_blocks=8))
    assert info.value.field == "rope_scaling"


def test_shape_mismatch_names_tensor(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _copy(tiny_model_dir, tmp_path / "m")
    tensors = load_file(str(model / "model.safetensors"))
    tensors["model.layers.1.mlp.up_proj.weight"] = tensors["model.layers.1.mlp.up_proj.weight"][:-1]
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError) as info:
        LLMEngine(EngineConfig(model, num_kv_blocks=8))
    assert info.value.field == "model.layers.1.mlp.up_proj.weight"


def test_dtype_the_device_cannot_run(tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        LLMEngine(EngineConfig(tiny_model_dir, dtype="float16", num_kv_blocks=8))
    assert info.value.field == "dtype"


@pytest.mark.parametrize("kwargs,field", [({"device": "tpu"}, "device"), ({"dtype": "int8"}, "dtype"),
                                          ({"block_size": 0}, "block_size"), ({"device": "csd"}, "csd_path"),
                                          ({"max_num_batched_tokens": 0}, "max_num_batched_tokens")])
def test_engine_config_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        EngineConfig(Path("/nowhere"), **kwargs)


def test_import_rejects_wrong_shape(make_engine: Any) -> None:
    import torch

    engine = make_engine()
    block = KVBlock(b"x" * 16, tuple(range(16)), torch.zeros(1, 2, 3))
    with pytest.raises(KVTransferError):
        engine.import_blocks([block])


@pytest.mark.parametrize("done", [-1, 4, 5])
def test_num_generated_before_leaves_a_token_to_generate(done: int) -> None:
    with pytest.raises(InvalidRequestError) as info:
        EngineRequest("r", (1, 2, 3), SamplingParams(max_tokens=4), num_generated_before=done)
    assert info.value.field == "num_generated_before"
    assert EngineRequest("r", (1, 2, 3), SamplingParams(max_tokens=4), num_generated_before=3)
