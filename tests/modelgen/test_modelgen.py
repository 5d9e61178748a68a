"""The model generator: deterministic bytes, loadable by transformers, the right shapes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.errors import InvalidRequestError
from heteroserve.modelgen import PRESETS, create_model

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json")


def test_tiny_is_fast_and_byte_identical_across_processes(tmp_path: Path) -> None:
    started = time.process_time()  # CPU time: wall time on a shared machine is noise
    create_model(tmp_path / "a", preset="tiny", seed=0)
    assert time.process_time() - started < 3.0
    code = f"from heteroserve.modelgen import create_model; create_model({str(tmp_path / 'b')!r}, 'tiny', 0)"
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_seed_changes_weights_only(tmp_path: Path) -> None:
    create_model(tmp_path / "s0", preset="tiny", seed=0)
    create_model(tmp_path / "s1", preset="tiny", seed=1)
    for name in FILES:
        same = (tmp_path / "s0" / name).read_bytes() == (tmp_path / "s1" / name).read_bytes()
        assert same == (name != "model.safetensors"), name


def test_transformers_loads_and_generates(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert sum(p.numel() for p in model.parameters()) == PRESETS["tiny"].num_params
    ids = tokenizer("The river town woke slowly", return_tensors="pt")
    assert ids["input_ids"][0, 0].item() == 1  # bos prepended
    out = model.generate(**ids, do_sample=False, max_new_tokens=24)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    assert len(new) == 24 and len(set(new)) > 4, new  # not degenerate
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat == "user: hi\nassistant:"


def test_config_fields(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["max_position_embeddings"] >= 4096
    assert config["tie_word_embeddings"] is False
    assert config["num_key_value_heads"] < config["num_attention_heads"]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == config["vocab_size"]
    assert [tokenizer.token_to_id(t) for t in ("<unk>", "<s>", "</s>", "<pad>")] == [0, 1, 2, 3]
    assert tokenizer.decode(tokenizer.encode("Hello, world!").ids) == "Hello, world!"


@pytest.mark.parametrize("preset,low,high", [("tiny", 0.5e6, 2e6), ("small", 5e6, 15e6),
                                             ("bench", 25e6, 40e6)])
def test_preset_sizes(preset: str, low: float, high: float) -> None:
    assert low <= PRESETS[preset].num_params <= high


def test_bad_preset_names_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError) as info:
        create_model(tmp_path, preset="huge")
    assert info.value.field == "preset"


def test_cli_create(tmp_path: Path) -> None:
    from heteroserve.cli import main

    assert main(["model", "create", str(tmp_path / "m"), "--preset", "tiny", "--seed", "3"]) == 0
    assert all((tmp_path / "m" / name).is_file() for name in FILES)
