"""Hardware catalog: node types and their loader, plus the shipped `nodes.yaml` / `models.yaml` data."""

from placement.catalog.nodes import CATALOG_DIR, DTYPE_BYTES, SHIPPED_NODES, Catalog, NodeType, load_catalog

__all__ = ["CATALOG_DIR", "DTYPE_BYTES", "SHIPPED_NODES", "Catalog", "NodeType", "load_catalog"]
