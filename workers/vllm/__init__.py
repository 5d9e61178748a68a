"""vLLM as a worker engine: vLLM's AsyncLLM (v1) behind the same gRPC Worker service (see README.md)."""
