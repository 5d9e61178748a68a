"""Serving one request across workers: colocated or prefill → decode, with retries and migration.

`Orchestrator.generate(job, block_hashes, route)` yields `TokenDelta`s then one `Finished`;
`ClusterView` is its view of the workers (see control_plane/README.md).
"""
