"""gRPC workers: the PyTorch engine, device backends (cpu/cuda/csd), the Worker service."""
