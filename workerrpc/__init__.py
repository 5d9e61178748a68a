"""The ground floor's RPC client: the async client of the Worker gRPC service and the Session stream
that multiplexes generations over one call per worker. Used by the gateway, the planner, the profiler,
benchmarks and tests; imports only `common` and the generated stubs (`heteroserve.v1`).
"""
