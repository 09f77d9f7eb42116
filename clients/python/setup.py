"""Build step of baq-client: generates the baq.v1 stubs with grpcio-tools.

The stubs are written to src/baq_client/_proto/ (ignored by git) from the
repository's proto/baq/v1/*.proto, then their `from baq.v1 import` lines are
rewritten to import from baq_client._proto.baq.v1, so the wheel does not claim
the top-level name `baq`. Everything else is in pyproject.toml.
"""
import glob
import os
import re

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.environ.get("BAQ_PROTO_ROOT", os.path.join(HERE, "..", "..", "proto"))
OUT = os.path.join(HERE, "src", "baq_client", "_proto")


def generate_stubs():
    from grpc_tools import protoc  # A build requirement (pyproject.toml).
    import grpc_tools

    protos = sorted(glob.glob(os.path.join(PROTO_ROOT, "baq", "v1", "*.proto")))
    if not protos:
        raise RuntimeError("no .proto files under %s (set BAQ_PROTO_ROOT)" % PROTO_ROOT)
    os.makedirs(os.path.join(OUT, "baq", "v1"), exist_ok=True)
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["grpc_tools.protoc", "-I" + PROTO_ROOT, "-I" + well_known,
                      "--python_out=" + OUT, "--grpc_python_out=" + OUT] + protos)
    if rc != 0:
        raise RuntimeError("grpc_tools.protoc failed (%d)" % rc)
    for d in (OUT, os.path.join(OUT, "baq"), os.path.join(OUT, "baq", "v1")):
        open(os.path.join(d, "__init__.py"), "a").close()
    for path in glob.glob(os.path.join(OUT, "baq", "v1", "*.py")):
        with open(path) as f:
            text = f.read()
        text = re.sub(r"^from baq\.v1 import", "from baq_client._proto.baq.v1 import", text,
                      flags=re.M)
        with open(path, "w") as f:
            f.write(text)


class BuildPyWithStubs(build_py):
    def run(self):
        generate_stubs()
        # The generated packages did not exist when setuptools listed them.
        for pkg in ("baq_client._proto", "baq_client._proto.baq", "baq_client._proto.baq.v1"):
            if pkg not in self.packages:
                self.packages.append(pkg)
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
