"""Tenant isolation and secrets, on the real gateway + worker of this folder's `cluster`.

Isolation: each API key belongs to a tenant and the tenant id salts every block hash, so tenant B's
identical prompt must never be served from tenant A's KV (`route.cached_prompt_tokens` = 0), while the
same tenant's repeat is (> 0, the positive control that shows the cache works at all).

Secrets: the cluster token, the admin token and the API keys must not appear in any log line of the
gateway or the worker, in any error message a client gets, nor in anything stored in Redis; the
traffic below puts each of them on the wire, in the right and in the wrong place.
"""

from __future__ import annotations

import grpc
import httpx
import pytest
import redis as redis_lib

from heteroserve.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from tests.control_plane.gateway.gateway_procs import ADMIN_TOKEN, API_KEY, CLUSTER_TOKEN, OTHER_KEY
from tests.reliability.conftest import SECRETS, Cluster, leaked

PROMPT = ("The tenant isolation probe walks through the quiet harbour town at dawn, counting boats, "
          "gulls, lanterns and ropes, and writes every number twice in a small grey notebook. ") * 2


def _cached(cluster: Cluster, key: str) -> int:
    reply = httpx.post(f"{cluster.gateway.http_url}/v1/completions", timeout=60,
                       headers={"authorization": f"Bearer {key}"},
                       json={"model": "tiny", "prompt": PROMPT, "max_tokens": 1})
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["prompt_tokens"] >= 48  # at least three full blocks
    return int(reply.json()["route"]["cached_prompt_tokens"])


@pytest.mark.slow
def test_tenant_never_hits_another_tenants_cached_prompt(cluster: Cluster) -> None:
    first_acme = _cached(cluster, API_KEY)
    first_globex = _cached(cluster, OTHER_KEY)
    again_acme = _cached(cluster, API_KEY)
    again_globex = _cached(cluster, OTHER_KEY)
    assert (first_acme, first_globex) == (0, 0)
    assert again_acme >= 32 and again_globex >= 32  # each tenant reuses its own blocks


def _redis_dump(url: str) -> str:
    client = redis_lib.Redis.from_url(url)
    parts: list[str] = []
    try:
        for key in client.scan_iter(count=1000):
            parts.append(key.decode(errors="replace"))
            kind = client.type(key).decode()
            if kind == "string":
                parts.append((client.get(key) or b"").decode(errors="replace"))
            elif kind == "hash":
                parts += [f"{k!r}={v!r}" for k, v in client.hgetall(key).items()]
            elif kind == "stream":
                parts += [repr(entry) for entry in client.xrange(key, count=10_000)]
            elif kind in ("set", "zset", "list"):
                values = (client.smembers(key) if kind == "set"
                          else client.zrange(key, 0, -1) if kind == "zset" else client.lrange(key, 0, -1))
                parts += [repr(v) for v in values]
    finally:
        client.close()
    return "\n".join(parts)


@pytest.mark.slow
def test_secrets_never_reach_logs_errors_or_redis(cluster: Cluster) -> None:
    url = cluster.gateway.http_url
    messages: list[str] = []  # may contain no secret at all
    echoes: list[tuple[str, str]] = []  # (secret the caller put in a body field, message): only that one
    for secret in SECRETS:  # every secret as an API key, as a tenant hint, as a model name
        for body in ({"model": "tiny", "prompt": "hi", "max_tokens": 1},
                     {"model": "tiny", "prompt": "hi", "max_tokens": 1, "tenant": secret},
                     {"model": secret, "prompt": "hi"}):
            reply = httpx.post(f"{url}/v1/completions", json=body, timeout=30,
                               headers={"authorization": f"Bearer {secret}"})
            if reply.status_code == 200:
                continue
            if secret in body.values():
                echoes.append((secret, reply.text))
            else:
                messages.append(reply.text)
        messages.append(httpx.get(f"{url}/admin/workers", timeout=10,
                                  headers={"authorization": f"Bearer {secret}"}).text)
    with grpc.insecure_channel(cluster.worker.address) as channel:  # wrong secrets as the cluster token
        stub = worker_pb2_grpc.WorkerStub(channel)
        for secret in (API_KEY, ADMIN_TOKEN, CLUSTER_TOKEN + "x"):
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Generate(worker_pb2.GenerateRequest(
                    prompt_token_ids=[5], sampling=common_pb2.SamplingParams(max_tokens=1)),
                    metadata=(("authorization", f"Bearer {secret}"),), timeout=10))
            messages.append(info.value.details() or "")
    assert [leaked(m) for m in messages if leaked(m)] == []
    # A 4xx may quote the caller's own bad field value back (e.g. "model 'x' is not served"), nothing else.
    assert [leaked(m.replace(sent, "")) for sent, m in echoes if leaked(m.replace(sent, ""))] == []
    assert any("401" in m or "invalid API key" in m for m in messages)  # the refusals did happen
    assert leaked(cluster.logs()) == [], "a secret reached a log line"
    assert leaked(_redis_dump(cluster.redis.url)) == [], "a secret is stored in Redis"
