"""The heteroserve Python SDK: `Client` / `AsyncClient` over REST (httpx) or gRPC. No torch.

See `client.py` for usage; results are in `types.py`, retries in `retry.py`.
"""

from __future__ import annotations

from heteroserve.client.client import AsyncClient, Client
from heteroserve.client.retry import RetryPolicy
from heteroserve.client.types import Chunk, Completion, Model, Route, Usage

__all__ = ["AsyncClient", "Chunk", "Client", "Completion", "Model", "RetryPolicy", "Route", "Usage"]
