"""Malformed and oversized protobuf on the Worker and Gateway gRPC services, and the gRPC auth matrix.

Raw channels (`unary_unary` / `unary_stream` with no serializer) send bytes the stubs never would:
truncated varints, wrong wire types, bad UTF-8 in string fields, length prefixes past the end, random
bytes (hypothesis), and messages over the server's receive limit. Each call must end (OK when the bytes
happen to parse, else an error status) within its deadline, and afterwards the server still serves a
real request. Worker `Drain` only gets bytes that cannot parse: a parsed one would drain the worker.

Auth matrix, covered here because no other test covers it exactly: Worker `Prefill`, `Decode`, `PullKV`
and `Drain` without / with a wrong cluster token on a real worker process (test_worker_process.py covers
`Stats` and `Generate`; test_worker_interceptors.py covers `Prefill` on a test servicer), and every
Gateway gRPC method without a key, with a wrong key, with another tenant's hint, and the admin methods
with an API key. The REST matrix (no key, wrong key, other tenant, admin GETs without the admin token)
is test_gateway_http.py::test_auth; here only the REST cases it leaves out: POST admin routes without
the token, and chat without a key.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heteroserve.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, worker_pb2, worker_pb2_grpc
from tests.control_plane.gateway.gateway_procs import ADMIN_TOKEN, API_KEY, CLUSTER_TOKEN, OTHER_KEY
from tests.reliability.conftest import Cluster

WORKER_METHODS = {"Generate": "stream", "Prefill": "unary", "Decode": "stream", "PullKV": "stream",
                  "Stats": "unary", "Drain": "unary"}
GATEWAY_METHODS = {"Generate": "stream", "ListModels": "unary", "GetPlan": "unary", "ListWorkers": "unary"}
MALFORMED = [
    b"\x08",                    # field 1 varint, truncated
    b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # varint longer than 10 bytes
    b"\x0a\x05ab",              # length 5, 2 bytes follow
    b"\x0a\x02\xff\xfe",        # field 1 with invalid UTF-8 (sent only where field 1 is a string)
    b"\x0f",                    # wire type 7 does not exist
    b"\x00",                    # field number 0
]
DEADLINE_SECONDS = 10.0
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 128 * 2**20)]


@pytest.fixture
def worker_channel(cluster: Cluster) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(cluster.worker.address, options=CHANNEL_OPTIONS) as channel:
        yield channel


@pytest.fixture
def gateway_channel(cluster: Cluster) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(cluster.gateway.grpc_target, options=CHANNEL_OPTIONS) as channel:
        yield channel


def _raw_call(channel: grpc.Channel, service: str, method: str, kind: str, payload: bytes,
              token: str | None) -> grpc.StatusCode:
    """Send `payload` as the request; returns the final status code (OK or the error).

    grpc-python itself ends a call whose request cannot be decoded with UNKNOWN ("Unexpected
    DecodeError"), before any servicer code runs; that is reported here as INVALID_ARGUMENT, and any
    other UNKNOWN (an exception escaping a servicer) stays UNKNOWN and fails the tests."""
    path = f"/heteroserve.v1.{service}/{method}"
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    try:
        if kind == "unary":
            channel.unary_unary(path)(payload, timeout=DEADLINE_SECONDS, metadata=metadata)
        else:
            for _ in channel.unary_stream(path)(payload, timeout=DEADLINE_SECONDS, metadata=metadata):
                pass
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNKNOWN and "DecodeError" in (exc.details() or ""):
            return grpc.StatusCode.INVALID_ARGUMENT
        return exc.code()
    return grpc.StatusCode.OK


def _first_field_is_string(service: str, method: str) -> bool:
    module = worker_pb2 if service == "Worker" else gateway_pb2
    request = module.DESCRIPTOR.services_by_name[service].methods_by_name[method].input_type
    first = request.fields_by_number.get(1)
    return first is not None and first.type == first.TYPE_STRING


def _worker_still_serves(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="heteroserve.v1.Worker"), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = worker_pb2_grpc.WorkerStub(channel)
    token = (("authorization", f"Bearer {CLUSTER_TOKEN}"),)
    stats = stub.Stats(worker_pb2.StatsRequest(), metadata=token, timeout=5)
    assert stats.worker_id == "rel-co-0" and not stats.draining
    chunks = list(stub.Generate(worker_pb2.GenerateRequest(
        prompt_token_ids=[5, 6, 7], sampling=common_pb2.SamplingParams(max_tokens=3)),
        metadata=token, timeout=30))
    assert sum(len(c.token_ids) for c in chunks) == 3


def _gateway_still_serves(channel: grpc.Channel) -> None:
    stub = gateway_pb2_grpc.GatewayStub(channel)
    key = (("authorization", f"Bearer {API_KEY}"),)
    chunks = list(stub.Generate(gateway_pb2.GatewayGenerateRequest(
        model="tiny", prompt="hello there", sampling=common_pb2.SamplingParams(max_tokens=3)),
        metadata=key, timeout=30))
    assert sum(len(c.token_ids) for c in chunks) == 3 and chunks[-1].finish_reason


@pytest.mark.slow
def test_worker_malformed_protobuf_is_an_error_status(worker_channel: grpc.Channel) -> None:
    for method, kind in WORKER_METHODS.items():
        for payload in MALFORMED:
            if payload == MALFORMED[3] and not _first_field_is_string("Worker", method):
                continue
            code = _raw_call(worker_channel, "Worker", method, kind, payload, CLUSTER_TOKEN)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, payload, code)
    _worker_still_serves(worker_channel)


@pytest.mark.slow
def test_gateway_malformed_protobuf_is_an_error_status(gateway_channel: grpc.Channel) -> None:
    for method, kind in GATEWAY_METHODS.items():
        token = ADMIN_TOKEN if method in ("GetPlan", "ListWorkers") else API_KEY
        for payload in MALFORMED:
            if payload == MALFORMED[3] and not _first_field_is_string("Gateway", method):
                continue
            code = _raw_call(gateway_channel, "Gateway", method, kind, payload, token)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, payload, code)
    _gateway_still_serves(gateway_channel)


@pytest.mark.slow
def test_random_bytes_never_hang_or_kill_a_server(worker_channel: grpc.Channel,
                                                  gateway_channel: grpc.Channel) -> None:
    outcomes: set[grpc.StatusCode] = set()

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(payload=st.binary(max_size=200),
           target=st.sampled_from([("Worker", m) for m in WORKER_METHODS if m != "Drain"]
                                  + [("Gateway", m) for m in GATEWAY_METHODS]))
    def check(payload: bytes, target: tuple[str, str]) -> None:
        service, method = target
        channel = worker_channel if service == "Worker" else gateway_channel
        kind = (WORKER_METHODS if service == "Worker" else GATEWAY_METHODS)[method]
        token = CLUSTER_TOKEN if service == "Worker" else (
            ADMIN_TOKEN if method in ("GetPlan", "ListWorkers") else API_KEY)
        code = _raw_call(channel, service, method, kind, payload, token)
        assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED), (target, payload)
        outcomes.add(code)

    check()
    assert len(outcomes) >= 2  # some parsed and ran, some were refused
    _worker_still_serves(worker_channel)
    _gateway_still_serves(gateway_channel)


@pytest.mark.slow
def test_oversized_messages_are_refused(worker_channel: grpc.Channel, gateway_channel: grpc.Channel) -> None:
    over_worker = worker_pb2.GenerateRequest(request_id="x" * (65 * 2**20)).SerializeToString()
    assert _raw_call(worker_channel, "Worker", "Generate", "stream", over_worker, CLUSTER_TOKEN) == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    # Under the worker's 64 MB limit but far over any context: refused by validation, quickly.
    long_prompt = worker_pb2.GenerateRequest(prompt_token_ids=[5] * 2_000_000,
                                             sampling=common_pb2.SamplingParams(max_tokens=1))
    assert _raw_call(worker_channel, "Worker", "Generate", "stream", long_prompt.SerializeToString(),
                     CLUSTER_TOKEN) == grpc.StatusCode.INVALID_ARGUMENT
    over_gateway = gateway_pb2.GatewayGenerateRequest(model="tiny", prompt="x" * (5 * 2**20))
    assert _raw_call(gateway_channel, "Gateway", "Generate", "stream", over_gateway.SerializeToString(),
                     API_KEY) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Under gRPC's 4 MB default: the gateway tokenizes it and refuses it as over the context.
    big_prompt = gateway_pb2.GatewayGenerateRequest(model="tiny", prompt="word " * 600_000,
                                                    sampling=common_pb2.SamplingParams(max_tokens=1))
    assert _raw_call(gateway_channel, "Gateway", "Generate", "stream", big_prompt.SerializeToString(),
                     API_KEY) == grpc.StatusCode.INVALID_ARGUMENT
    _worker_still_serves(worker_channel)
    _gateway_still_serves(gateway_channel)


@pytest.mark.slow
@pytest.mark.parametrize("token", [None, "", "not-the-cluster-token", API_KEY, ADMIN_TOKEN,
                                   CLUSTER_TOKEN.upper()])
def test_worker_refuses_every_call_without_the_cluster_token(worker_channel: grpc.Channel,
                                                             token: str | None) -> None:
    requests = {"Prefill": worker_pb2.PrefillRequest(prompt_token_ids=[5, 6],
                                                     sampling=common_pb2.SamplingParams(max_tokens=2)),
                "Decode": worker_pb2.DecodeRequest(prompt_token_ids=[5, 6], generated_token_ids=[7],
                                                   sampling=common_pb2.SamplingParams(max_tokens=3)),
                "PullKV": worker_pb2.PullKVRequest(block_hashes=[b"\x00" * 16]),
                "Drain": worker_pb2.DrainRequest(),
                "Generate": worker_pb2.GenerateRequest(prompt_token_ids=[5],
                                                       sampling=common_pb2.SamplingParams(max_tokens=1)),
                "Stats": worker_pb2.StatsRequest()}
    for method, request in requests.items():
        code = _raw_call(worker_channel, "Worker", method, WORKER_METHODS[method],
                         request.SerializeToString(), token)
        assert code == grpc.StatusCode.UNAUTHENTICATED, method
    _worker_still_serves(worker_channel)  # in particular: the refused Drain did not drain it


@pytest.mark.slow
def test_gateway_grpc_auth_matrix(gateway_channel: grpc.Channel) -> None:
    generate = gateway_pb2.GatewayGenerateRequest(model="tiny", prompt="hi",
                                                  sampling=common_pb2.SamplingParams(max_tokens=1))
    other_tenant = gateway_pb2.GatewayGenerateRequest(model="tiny", prompt="hi",
                                                      hints=gateway_pb2.Hints(tenant="globex"))
    U, P = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
    cases = [
        ("Generate", generate, None, U), ("Generate", generate, "sk-wrong-key-0000", U),
        ("Generate", generate, CLUSTER_TOKEN, U), ("Generate", other_tenant, API_KEY, P),
        ("ListModels", gateway_pb2.ListModelsRequest(), None, U),
        ("ListModels", gateway_pb2.ListModelsRequest(), "sk-wrong-key-0000", U),
        ("GetPlan", gateway_pb2.GetPlanRequest(), None, P),
        ("GetPlan", gateway_pb2.GetPlanRequest(), API_KEY, P),
        ("ListWorkers", gateway_pb2.ListWorkersRequest(), None, P),
        ("ListWorkers", gateway_pb2.ListWorkersRequest(), OTHER_KEY, P),
        ("ListWorkers", gateway_pb2.ListWorkersRequest(), CLUSTER_TOKEN, P),
    ]
    got = [(m, _raw_call(gateway_channel, "Gateway", m, GATEWAY_METHODS[m], r.SerializeToString(), t))
           for m, r, t, _ in cases]
    assert got == [(m, want) for m, _, _, want in cases]
    assert _raw_call(gateway_channel, "Gateway", "ListWorkers", "unary",
                     gateway_pb2.ListWorkersRequest().SerializeToString(), ADMIN_TOKEN) == grpc.StatusCode.OK


@pytest.mark.slow
def test_rest_admin_posts_and_chat_need_credentials(cluster: Cluster) -> None:
    url = cluster.gateway.http_url
    api = {"authorization": f"Bearer {API_KEY}"}
    assert httpx.post(f"{url}/admin/drain/rel-co-0", headers=api, timeout=10).status_code == 403
    assert httpx.post(f"{url}/admin/drain/rel-co-0", timeout=10).status_code == 403
    assert httpx.post(f"{url}/admin/solve", json={}, headers=api, timeout=10).status_code == 403
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=10).status_code == 401
    workers = httpx.get(f"{url}/admin/workers", headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                        timeout=10).json()["workers"]
    assert [(w["worker_id"], w["draining"]) for w in workers] == [("rel-co-0", False)]
