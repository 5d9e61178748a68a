"""The models a gateway serves: tokenizer, chat template and context length, read from the model dir.

The gateway tokenizes prompts itself (so it can hash prompt blocks for routing) with the model's own
`tokenizer.json` through `tokenizers` (no torch). From `config.json` it reads the context length
(`max_position_embeddings`). From `tokenizer_config.json` it reads `chat_template` and renders it with
jinja2 in a sandbox; the rendered text is then tokenized like a completion prompt (the tokenizer's
post-processor adds BOS where the model has one).

Default chat template, used when the model has none (one line per message, then the assistant cue):

    {role}: {content}\\n ... assistant:
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from cache.hashing import kv_layout
from common.errors import ConfigError, InvalidRequestError
from control_plane.gateway.prompt_tokens import PromptTokens

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


class ServedModel:
    """One model: its name, tokenizer, chat template and context length. Immutable after loading."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        # The model id in KV block hashes: the model directory's name, as workers use by default
        # (`EngineConfig.model_id`), so the gateway's hashes match the workers' KV events.
        self.kv_model_id = path.resolve().name
        config = _read_json(path / "config.json", required=True)
        self.max_context_tokens = _context_length(config, path / "config.json")
        self._shape = _kv_shape(config)
        self._tokenizer = _load_tokenizer(path)
        self._prompt_tokens = PromptTokens(self._tokenizer,
                                           _read_json(path / "tokenizer.json", required=True))
        tok_config = _read_json(path / "tokenizer_config.json", required=False)
        template = tok_config.get("chat_template") or DEFAULT_CHAT_TEMPLATE
        if isinstance(template, list):  # HF allows a list of named templates
            template = next((t["template"] for t in template if t.get("name") == "default"),
                            template[0]["template"])
        self._template = ImmutableSandboxedEnvironment().from_string(template)
        self._special = {k: _token_text(tok_config.get(k)) for k in ("bos_token", "eos_token")}

    def kv_layout(self, dtype: str, block_size: int) -> str:
        """The `layout` key of the workers' block hashes (`cache.hashing.kv_layout`, as the engine's
        `hash_keys`), from this model's config: it must match, or the gateway's hashes name no block
        any worker announced."""
        layers, kv_heads, head_dim = self._shape
        return kv_layout(dtype, block_size, layers, kv_heads, head_dim)

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        """The prompt's token ids, special tokens added as the model's post-processor says (the same
        ids as `Tokenizer.encode`), with text that earlier prompts shared tokenized once
        (`prompt_tokens.PromptTokens`). Encodings skip the offsets nobody here reads
        (`encode_batch_fast`: a quarter less time than `encode` on 128-2,048-token prompts)."""
        return self._prompt_tokens.encode(text)

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The chat transcript as prompt text, ending with the assistant's turn."""
        try:
            return str(self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True, **self._special))
        except Exception as exc:  # a template error is the request's fault or the model's: say which
            raise InvalidRequestError(f"the model's chat template failed on these messages: {exc}",
                                      field="messages") from None

    def check_fits(self, num_prompt_tokens: int, max_tokens: int, field: str) -> None:
        """Raise `InvalidRequestError` naming `field` when the prompt leaves no room to generate."""
        if num_prompt_tokens >= self.max_context_tokens:
            raise InvalidRequestError(
                f"prompt is {num_prompt_tokens} tokens; this model's context is {self.max_context_tokens}",
                field=field)
        if num_prompt_tokens + max_tokens > self.max_context_tokens:
            room = self.max_context_tokens - num_prompt_tokens
            raise InvalidRequestError(
                f"prompt ({num_prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the context of "
                f"{self.max_context_tokens}; at most {room} tokens can be generated", field="max_tokens")


def _token_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return str(value) if value else ""


def _read_json(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError("file is missing", source=str(path))
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("top level must be an object", source=str(path))
    return data


def _context_length(config: dict[str, Any], source: Path) -> int:
    value = config.get("max_position_embeddings")
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"must be a positive integer, got {value!r}", field="max_position_embeddings",
                          source=str(source))
    return value


def _kv_shape(config: dict[str, Any]) -> tuple[int, int, int]:
    """(layers, KV heads, head dim) from config.json, as the engine derives them."""
    heads = int(config.get("num_attention_heads", 1))
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or int(config.get("hidden_size", 0)) // max(1, heads))
    return int(config.get("num_hidden_layers", 0)), kv_heads, head_dim


def _load_tokenizer(path: Path) -> Tokenizer:
    file = path / "tokenizer.json"
    if not file.exists():
        raise ConfigError("file is missing", source=str(file))
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:
        raise ConfigError(f"cannot load tokenizer: {exc}", source=str(file)) from None
