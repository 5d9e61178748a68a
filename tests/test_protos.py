"""The committed gRPC stubs in heteroserve/v1 must equal freshly generated ones."""

from __future__ import annotations

from pathlib import Path

from heteroserve.protoc import ROOT, generate


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    committed = ROOT / "heteroserve" / "v1"
    stale = [p.name for p in fresh if (committed / p.name).read_bytes() != p.read_bytes()]
    missing = [p.name for p in fresh if not (committed / p.name).exists()]
    assert not missing and not stale, (
        f"stale gRPC stubs {stale + missing}: run `make protos` and commit heteroserve/v1/"
    )


def test_services_are_importable() -> None:
    from heteroserve.v1 import gateway_pb2_grpc, worker_pb2, worker_pb2_grpc

    assert hasattr(worker_pb2_grpc, "WorkerServicer")
    assert hasattr(gateway_pb2_grpc, "GatewayServicer")
    request = worker_pb2.GenerateRequest(prompt_token_ids=[1, 2, 3])
    assert worker_pb2.GenerateRequest.FromString(request.SerializeToString()).prompt_token_ids == [1, 2, 3]
