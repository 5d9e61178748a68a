"""The PyTorch inference engine: model, paged KV pool, scheduler, sampler."""
