"""Builds the gRPC stubs of Mandate's API from proto/ into the wheel.

The stubs (`mandate.v1.*_pb2`, `*_pb2_grpc`, `*.pyi`) are generated with
grpcio-tools whenever the package is built, from the repository's
`proto/mandate/v1/*.proto` (two levels up), or from `MANDATE_PROTO_DIR`
when set. They are never committed.
"""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def proto_root() -> Path:
    explicit = os.environ.get("MANDATE_PROTO_DIR")
    candidates = [Path(explicit)] if explicit else [HERE.parent.parent / "proto", HERE / "proto"]
    for root in candidates:
        if (root / "mandate" / "v1").is_dir():
            return root
    raise SystemExit(
        "mandate-client: cannot find Mandate's protos (looked for mandate/v1/*.proto in "
        + ", ".join(str(c) for c in candidates)
        + "); build from the repository (`pip install ./clients/python`) or set MANDATE_PROTO_DIR"
    )


class BuildWithStubs(build_py):
    def run(self) -> None:
        super().run()
        from grpc_tools import protoc  # a build requirement (pyproject.toml)
        import grpc_tools

        root = proto_root()
        out = Path(self.build_lib)
        target = out / "mandate" / "v1"
        target.mkdir(parents=True, exist_ok=True)
        protos = sorted(str(p.relative_to(root)) for p in (root / "mandate" / "v1").glob("*.proto"))
        if not protos:
            raise SystemExit(f"mandate-client: no .proto files in {root / 'mandate' / 'v1'}")
        well_known = Path(grpc_tools.__file__).parent / "_proto"
        args = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"mandate-client: protoc failed on {', '.join(protos)} in {root}")
        (target / "__init__.py").write_text('"""Generated from proto/mandate/v1 at build time."""\n')


setup(cmdclass={"build_py": BuildWithStubs})
