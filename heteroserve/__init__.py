"""heteroserve: cost-aware LLM serving on heterogeneous GPU, CPU and computational-storage fleets.

The user-facing package: the CLI (`heteroserve ...`), the client SDK, configuration and the shared
vocabulary (errors, config loading, logging), and the generated gRPC stubs.
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`heteroserve.Client` / `heteroserve.AsyncClient`, imported on first use (keeps the CLI fast)."""
    if name in ("Client", "AsyncClient"):
        from heteroserve import client

        return getattr(client, name)
    raise AttributeError(f"module 'heteroserve' has no attribute {name!r}")
