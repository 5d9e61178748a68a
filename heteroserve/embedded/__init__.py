"""The embedded single-machine cluster: `heteroserve up / down / status / demo` (see launcher.py)."""
