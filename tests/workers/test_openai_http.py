"""The worker's OpenAI-compatible HTTP front, against a real `heteroserve worker --openai-port` process:
real requests with httpx and with the `openai` client (text and token-id prompts, chat, SSE streaming,
usage with cached tokens), OpenAI-shaped errors, /health and vLLM-named /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from common.localredis import free_port
from tests.workers.service.worker_procs import CLUSTER_TOKEN, WorkerProcess, start_worker


@pytest.fixture(scope="module")
def worker(tiny_model_dir: Path) -> Iterator[tuple[WorkerProcess, str]]:
    port = free_port()
    proc = start_worker(tiny_model_dir, extra=("--openai-port", str(port)))
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        assert proc.stop() == 0


@pytest.fixture
def http(worker: tuple[WorkerProcess, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=worker[1], headers={"authorization": f"Bearer {CLUSTER_TOKEN}"},
                      timeout=60) as client:
        yield client


@pytest.fixture
def client(worker: tuple[WorkerProcess, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=worker[1] + "/v1", api_key=CLUSTER_TOKEN, max_retries=0)


def test_health_and_models(http: httpx.Client, tiny_model_dir: Path) -> None:
    assert httpx.get(str(http.base_url.join("/health"))).status_code == 200  # no auth, as vLLM
    models = http.get("/v1/models").json()["data"]
    assert [m["id"] for m in models] == [tiny_model_dir.name]


def test_completion_text_prompt(http: httpx.Client) -> None:
    body = {"model": "tiny", "prompt": "hello world, how are you", "max_tokens": 5, "temperature": 0,
            "ignore_eos": True}
    reply = http.post("/v1/completions", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["object"] == "text_completion" and data["id"].startswith("cmpl-")
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 5
    assert data["usage"]["prompt_tokens"] > 3
    again = http.post("/v1/completions", json=body).json()
    assert again["choices"][0]["text"] == data["choices"][0]["text"]  # greedy: same text


def test_vllm_allowances(http: httpx.Client) -> None:
    """What routers in front of vLLM send: no `model` (this worker's one), `top_k: -1` (off)."""
    body = {"prompt": "hello world", "max_tokens": 3, "temperature": 0, "ignore_eos": True}
    plain = http.post("/v1/completions", json=body)
    assert plain.status_code == 200, plain.text
    off = http.post("/v1/completions", json={**body, "top_k": -1})
    assert off.status_code == 200, off.text
    assert off.json()["choices"][0]["text"] == plain.json()["choices"][0]["text"]
    assert http.post("/v1/completions", json={**body, "top_k": -2}).status_code == 400


def test_streamed_completion_reports_cached_prefix(client: openai.OpenAI) -> None:
    prompt = list(range(10, 10 + 70))  # 70 token ids: 4 full blocks of 16
    usages = []
    for _ in range(2):
        stream = client.completions.create(model="tiny", prompt=prompt, max_tokens=4, temperature=0,
                                           stream=True, stream_options={"include_usage": True},
                                           extra_body={"ignore_eos": True})
        chunks = list(stream)
        texts = [c.choices[0] for c in chunks if c.choices]
        assert len(texts) == 4 and texts[-1].finish_reason == "length"
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        usages.append(chunks[-1].usage)
    assert usages[0].prompt_tokens == 70 and usages[0].completion_tokens == 4
    assert usages[1].prompt_tokens_details is not None
    assert usages[1].prompt_tokens_details.cached_tokens == 64  # the 4 full blocks of the first run


def test_chat_whole_and_streamed(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": "hi there"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6,
                                           temperature=0, extra_body={"ignore_eos": True})
    assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
    assert whole.usage is not None and whole.usage.completion_tokens == 6
    stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6,
                                            temperature=0, stream=True, extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "other", "prompt": "x"}, 404, "model"),
    ({"model": "tiny", "prompt": "x", "temperature": 5}, 400, "temperature"),
    ({"model": "tiny", "prompt": [1, 999_999]}, 400, "prompt_token_ids"),
    ({"model": "tiny", "prompt": "x", "n": 2}, 400, "n"),
    ({"model": "tiny", "prompt": "x", "max_tokens": "5"}, 400, "max_tokens"),  # strict, as the gateway
    ({"model": "tiny", "prompt": "x", "stop": [""]}, 400, "stop[0]"),
])
def test_errors_are_openai_shaped(http: httpx.Client, body: dict[str, object], status: int,
                                  param: str) -> None:
    reply = http.post("/v1/completions", json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["code"] == str(status) and error["message"]


def test_wrong_token_is_401(worker: tuple[WorkerProcess, str]) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(base_url=worker[1] + "/v1", api_key="wrong", max_retries=0).completions.create(
            model="tiny", prompt="x", max_tokens=1)
    assert caught.value.status_code == 401


def test_metrics_use_vllm_names(http: httpx.Client) -> None:
    http.post("/v1/completions", json={"model": "tiny", "prompt": [5] * 20, "max_tokens": 3,
                                       "ignore_eos": True}).raise_for_status()
    text = httpx.get(str(http.base_url.join("/metrics"))).text
    values = {line.split("{")[0]: float(line.split()[-1]) for line in text.splitlines()
              if line.startswith("vllm:")}
    assert values["vllm:prompt_tokens_total"] >= 20
    assert values["vllm:generation_tokens_total"] >= 3
    assert values["vllm:num_requests_running"] == 0 and values["vllm:num_requests_waiting"] == 0
    assert 0.0 <= values["vllm:kv_cache_usage_perc"] <= 1.0
    assert "heteroserve_worker" in text  # the worker's own registry follows
