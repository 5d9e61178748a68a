"""The worker's KV path: every way KV leaves or enters a worker's pool (see workers/README.md, "KV path").

Layering inside `workers` runs one way: `engine` <- `kv` <- `service`. This package imports the
engine's public types and `cache`; it never imports `workers.service`.

    wire.py        KVBlock <-> bytes (cache/serde.py format)
    bridge.py      KVEngine (what kv needs of an engine), publish_prompt_blocks, KVWriteBack listener
    sources.py     BlockSource: PeerSource (PullKV) and StoreSource (the tiered store)
    fetch.py       fetch_prefix -> PrefixFetch: the one way KV enters the pool
    loader.py      PrefixLoader: hash a request once, P/D transfer + read-through, transfer metrics
    cache_link.py  WorkerKVCache: store + KV events over the worker's life
"""
