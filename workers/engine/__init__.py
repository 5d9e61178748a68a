"""The PyTorch inference engine: model, paged KV pool, scheduler, sampler.

Public API: `workers.engine.config.EngineConfig`, `workers.engine.async_engine.AsyncEngine` (asyncio,
one engine thread), `workers.engine.types` (requests, events, KV blocks, stats) and
`workers.engine.listeners.BlockListener`. `workers.engine.engine.LLMEngine` is the synchronous core
for single-threaded callers (tests, benchmarks). See workers/README.md, section "Engine".
"""
