"""Bad input, auth, limits and the OpenAPI document, against the real app in process (no workers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from control_plane.gateway.auth import ApiKeySpec, hash_key
from control_plane.gateway.config import GatewayConfig, ModelSpec
from control_plane.gateway.rest import create_app
from control_plane.gateway.runtime import GatewayRuntime

KEY, OTHER, LIMITED, ADMIN = "sk-unit-1", "sk-unit-2", "sk-unit-3", "admin-unit-token"
H = {"authorization": f"Bearer {KEY}"}


@pytest.fixture
async def client(tiny_model_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = GatewayConfig(
        models=(ModelSpec("tiny", tiny_model_dir),), cluster_token="unit-cluster", max_body_bytes=10_000,
        admin_token_sha256=hash_key(ADMIN), max_tokens_limit=512,
        api_keys=(ApiKeySpec("a", hash_key(KEY), "acme"), ApiKeySpec("b", hash_key(OTHER), "globex"),
                  ApiKeySpec("c", hash_key(LIMITED), "small", requests_per_minute=2, tokens_per_minute=1000,
                             max_tokens_per_request=8)))
    runtime = GatewayRuntime(config)
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        yield c
    await runtime.stop()


def _error(reply: httpx.Response) -> tuple[int, str, str | None]:
    error = reply.json()["error"]
    return reply.status_code, error["message"], error["param"]


@pytest.mark.parametrize("body, status, param, text", [
    ({"model": "tiny"}, 400, "prompt", "required"),
    ({"model": "tiny", "prompt": ""}, 400, "prompt", "must not be empty"),
    ({"model": "gpt-9", "prompt": "hi"}, 404, "model", "not served"),
    ({"model": "tiny", "prompt": "hi", "max_tokens": 0}, 400, "max_tokens", "must be >= 1, got 0"),
    ({"model": "tiny", "prompt": "hi", "max_tokens": 513}, 400, "max_tokens", "[1, 512]"),
    ({"model": "tiny", "prompt": "hi", "max_tokens": "many"}, 400, "max_tokens", "integer"),
    ({"model": "tiny", "prompt": "hi", "temperature": 3}, 400, "temperature", "must be <= 2.0, got 3"),
    ({"model": "tiny", "prompt": "hi", "top_p": 0}, 400, "top_p", "must be > 0.0, got 0"),
    ({"model": "tiny", "prompt": "hi", "top_k": -1}, 400, "top_k", "must be >= 0, got -1"),
    ({"model": "tiny", "prompt": []}, 400, "prompt", "at least one item"),
    ({"model": "tiny", "prompt": ["a", "b"]}, 400, "prompt", "at most 1 items, got 2"),
    ({"model": "tiny", "prompt": "hi", "stop": ["x", ""]}, 400, "stop[1]", "must not be empty"),
    ({"model": "tiny", "prompt": "hi", "echo": True}, 400, "echo", "not supported"),
    ({"model": "tiny", "prompt": "hi", "n": 2}, 400, "n", "n = 1"),
    ({"model": "tiny", "prompt": "hi", "slo_class": "urgent"}, 400, "slo_class", "unknown SLO class"),
    ({"model": "tiny", "prompt": [1, 99999]}, 400, "prompt", "token ids"),
])
async def test_completion_bad_input(client: httpx.AsyncClient, body: dict[str, object], status: int,
                                    param: str, text: str) -> None:
    got_status, message, got_param = _error(await client.post("/v1/completions", json=body, headers=H))
    assert (got_status, got_param) == (status, param), message
    assert text in message


async def test_prompt_over_context(tiny_model_dir: Path) -> None:
    config = GatewayConfig(models=(ModelSpec("tiny", tiny_model_dir),), cluster_token="t",
                           allow_anonymous=True)
    runtime = GatewayRuntime(config)
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://g") as c:
        too_long = await c.post("/v1/completions", json={"model": "tiny", "prompt": "word " * 5000})
        no_room = await c.post("/v1/completions", json={"model": "tiny", "prompt": "word " * 2000,
                                                         "max_tokens": 4000})
        chat = await c.post("/v1/chat/completions", json={"model": "tiny", "messages": [
            {"role": "user", "content": "word " * 5000}]})
    await runtime.stop()
    assert _error(too_long)[0::2] == (400, "prompt") and "context is 4096" in _error(too_long)[1]
    assert _error(no_room)[0::2] == (400, "max_tokens")
    assert _error(chat)[0::2] == (400, "messages")


@pytest.mark.parametrize("body, param, text", [
    ({"model": "tiny", "messages": []}, "messages", "at least one"),
    ({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "one of"),
    ({"model": "tiny", "messages": [{"content": "x"}]}, "messages[0].role", "required"),
    ({"model": "tiny", "messages": [{"role": "user"}]}, "messages[0].content", "required"),
    ({"model": "tiny", "messages": [{"role": "user", "content": None}]}, "messages[0].content", "string"),
])
async def test_chat_bad_input(client: httpx.AsyncClient, body: dict[str, object], param: str,
                              text: str) -> None:
    status, message, got_param = _error(await client.post("/v1/chat/completions", json=body, headers=H))
    assert (status, got_param) == (400, param) and text in message


async def test_malformed_json_and_body_size(client: httpx.AsyncClient) -> None:
    bad = await client.post("/v1/completions", content=b'{"model": "tiny", ',
                            headers={**H, "content-type": "application/json"})
    assert _error(bad)[0::2] == (400, "body") and "malformed JSON" in _error(bad)[1]
    big = await client.post("/v1/completions", json={"model": "tiny", "prompt": "x" * 20_000}, headers=H)
    assert _error(big)[0::2] == (413, "body")


async def test_no_worker_is_503_after_validation(client: httpx.AsyncClient) -> None:
    status, message, _ = _error(await client.post("/v1/completions", json={"model": "tiny", "prompt": "hi"},
                                                  headers=H))
    assert status == 503 and "no colocated worker" in message


async def test_auth(client: httpx.AsyncClient) -> None:
    body = {"model": "tiny", "prompt": "hi"}
    missing = await client.post("/v1/completions", json=body)
    assert _error(missing)[0] == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert _error(await client.post("/v1/completions", json=body,
                                    headers={"authorization": "Bearer nope"}))[0] == 401
    assert _error(await client.get("/v1/models", headers={"authorization": "Basic abc"}))[0] == 401
    other_tenant = await client.post("/v1/completions", json={**body, "tenant": "globex"}, headers=H)
    assert _error(other_tenant)[0::2] == (403, "tenant")
    assert _error(await client.get("/admin/workers", headers=H))[0] == 403
    assert _error(await client.get("/admin/workers"))[0] == 403
    admin = await client.get("/admin/workers", headers={"authorization": f"Bearer {ADMIN}"})
    assert admin.status_code == 200 and admin.json() == {"workers": []}
    assert _error(await client.get("/admin/plan", headers={"authorization": f"Bearer {ADMIN}"}))[0] == 404


async def test_per_key_limits(client: httpx.AsyncClient) -> None:
    limited = {"authorization": f"Bearer {LIMITED}"}
    over = await client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 9},
                             headers=limited)
    assert _error(over)[0::2] == (400, "max_tokens") and "[1, 8]" in _error(over)[1]
    statuses = [(await client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 4},
                                   headers=limited)).status_code for _ in range(3)]
    assert statuses == [503, 503, 429]  # admitted twice (no worker), then over 2 requests per minute
    unlimited = await client.post("/v1/completions", json={"model": "tiny", "prompt": "hi"}, headers=H)
    assert unlimited.status_code == 503  # other keys are not limited


async def test_models_probes_and_metrics(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models", headers=H)).json()
    assert models["data"][0]["id"] == "tiny" and models["data"][0]["max_context_tokens"] == 4096
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).status_code == 503
    await client.post("/v1/completions", json={"model": "tiny"}, headers=H)
    text = (await client.get("/metrics")).text
    for name in ("heteroserve_gateway_requests_total", "heteroserve_gateway_ttft_seconds",
                 "heteroserve_gateway_workers", "heteroserve_gateway_registry_up"):
        assert name in text


async def test_openapi_document(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/ready", "/metrics",
                 "/admin/plan", "/admin/workers", "/admin/solve", "/admin/drain/{worker_id}"):
        assert path in doc["paths"], path
    schemas = doc["components"]["schemas"]
    assert {"prompt", "model", "max_tokens", "stream", "slo_class", "session_id", "tenant"} <= \
        set(schemas["CompletionRequest"]["properties"])
    assert "route" in schemas["CompletionResponse"]["properties"]
    assert "400" in doc["paths"]["/v1/completions"]["post"]["responses"]


async def test_admin_solve_what_if(client: httpx.AsyncClient) -> None:
    import yaml

    admin = {"authorization": f"Bearer {ADMIN}"}
    root = Path(__file__).resolve().parents[3]
    spec = yaml.safe_load((root / "deploy/examples/placement/llama7b-mixed.yaml").read_text())
    reply = await client.post("/admin/solve", json=spec, headers=admin)
    assert reply.status_code == 200, reply.text
    assert reply.json()["plan"]["schema"] == 1 and reply.json()["cost_per_hour"] > 0
    bad = await client.post("/admin/solve", json={**spec, "fleet": ["NoSuchGPU"]}, headers=admin)
    assert _error(bad)[0] == 400 and "fleet[0]" in _error(bad)[1]
    assert _error(bad)[1].startswith("request body"), _error(bad)[1]  # named as such, no server paths
    assert _error(await client.post("/admin/solve", json=spec, headers=H))[0] == 403
    # the gateway never opens files a request names
    status, message, param = _error(await client.post("/admin/solve", json={**spec, "catalog": "/etc/passwd"},
                                                      headers=admin))
    assert (status, param) == (400, "catalog") and "file references are not accepted" in message
    traced = {**spec, "traffic": [{**spec["traffic"][0], "trace": "/etc/shadow"}]}
    status, message, param = _error(await client.post("/admin/solve", json=traced, headers=admin))
    assert (status, param) == (400, "traffic[0].trace") and "trace files" in message
