"""Generate the gRPC stubs in `heteroserve/v1/` from `proto/heteroserve/v1/*.proto`.

Run `python -m heteroserve.protoc` (or `make protos`) after editing a .proto file and commit the result;
`tests/test_protos.py` fails when the committed stubs differ from freshly generated ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted((PROTO_DIR / "heteroserve" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write `*_pb2.py`, `*_pb2_grpc.py` and `*_pb2.pyi` under `out_dir/heteroserve/v1/`."""
    from grpc_tools import protoc  # dev-only dependency: imported here, not at module load

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={Path(sys.executable).parent / 'protoc-gen-mypy'}",
        f"--mypy_out={out_dir}",
        *(str(p.relative_to(PROTO_DIR)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {PROTO_DIR}")
    package = out_dir / "heteroserve" / "v1"
    (package / "__init__.py").write_text('"""Generated gRPC stubs (heteroserve.v1). Do not edit."""\n')
    return sorted(package.iterdir())


if __name__ == "__main__":
    written = generate(ROOT)
    print(f"wrote {len(written)} files to {ROOT / 'heteroserve' / 'v1'}", file=sys.stderr)
