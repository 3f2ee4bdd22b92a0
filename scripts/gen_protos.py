"""Regenerate gateway/rpc/v1 from protos/fedgate/v1 (the one way to do it).

Usage: python scripts/gen_protos.py [--out DIR]
protoc writes absolute imports (``from fedgate.v1 import ...``); we rewrite them to
relative ones so the generated code lives inside the ``gateway`` package.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "fedgate" / "v1"
DEFAULT_OUT = ROOT / "gateway" / "rpc" / "v1"
_IMPORT = re.compile(r"^from fedgate\.v1 import (\w+)", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *[str(p) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((Path(tmp) / "fedgate" / "v1").iterdir()):
            text = _IMPORT.sub(r"from . import \1", src.read_text())
            dest = out_dir / src.name
            dest.write_text(text)
            written.append(dest)
    init = out_dir / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated from protos/fedgate/v1 by scripts/gen_protos.py."""\n')
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
