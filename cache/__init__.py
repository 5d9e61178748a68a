"""Shared, tiered KV and prefix cache: block hashing, KV serde, tiers, tiered store, prefix index."""
