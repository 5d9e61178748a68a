"""The gateway: OpenAI-compatible REST and gRPC in front of the workers (see control_plane/README.md).

Entry points: `server.serve(GatewayConfig)` runs one gateway process; `runtime.GatewayRuntime` builds
its parts; `rest.create_app(runtime)` is the ASGI app.
"""
