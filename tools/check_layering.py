#!/usr/bin/env python3
"""Fails when a source file includes something its layer must not see.

    tools/check_layering.py [REPO_ROOT]      (exit 0: clean; 1: violations, one per line)

The house shape (../shared/STYLE.md, docs/architecture.md "Layers"), lowest first:

  common/          formats, config, tokenizer, bit-allocation math: no LibTorch, no proto/gRPC,
                   nothing of ours above it.
  proto/ net/      the wire contracts and TLS: no LibTorch, no worker/coordinator code.
  worker/torch/    the LibTorch exception boundary (torch_call.h), used by everything below.
  worker/quant/    GPTQ/BAQ numerics     } LibTorch, no proto/gRPC/Prometheus, and nothing of
  worker/model/    the block forward     } worker/ outside torch/, quant/, model/, cuda/.
  worker/cuda/     kernels and hosts     }
  worker/ (rest)   the engine: torch_block_engine, engine/, device executors, communicators,
  worker/engine/   layer formats, calibration inputs: LibTorch, no proto/gRPC/Prometheus/net.
  worker/nccl/
  worker/service/  the worker daemon's gRPC services, server, metrics (and worker/main.cc):
                   may include all of the above; never the coordinator.
  coordinator/     jobs, budget, publishing: no LibTorch, no worker/.
  daemon/          process scaffolding: no LibTorch, no worker/ or coordinator/.
  tools/, tests/, bench/: anything.

Only quoted and angle includes of our own folders and of the named third-party roots are
checked; the rules are prefix matches on the include path as written.
"""
import os
import re
import sys

TORCH = ("torch/", "ATen/", "c10/", "caffe2/")
RPC = ("grpc/", "grpcpp/", "google/protobuf/", "baq/v1/", "proto/")
METRICS = ("prometheus/",)
ABOVE_COMMON = ("worker/", "coordinator/", "daemon/", "tools/", "net/")
NUMERICS_OK_WORKER = ("worker/torch/", "worker/quant/", "worker/model/", "worker/cuda/")
# What the LibTorch layers below the engine (torch/, quant/, model/, cuda/) must not include;
# each rule's allowed prefixes take back their own corner of worker/.
BELOW_ENGINE = RPC + METRICS + ("worker/", "coordinator/", "daemon/", "net/")

# (path prefix of the including file, forbidden include prefixes, allowed exceptions, why).
# The first matching rule wins, so deeper folders come first.
RULES = [
    ("common/", TORCH + RPC + METRICS + ABOVE_COMMON, (), "common/ is below everything"),
    ("proto/", TORCH + METRICS + ("worker/", "coordinator/", "daemon/", "tools/"), (),
     "proto/ is the wire contract: no LibTorch, no daemon code"),
    ("net/", TORCH + ("worker/", "coordinator/", "daemon/", "tools/"), (),
     "net/ is transport only"),
    ("worker/torch/", BELOW_ENGINE, ("worker/torch/",), "torch_call is the lowest LibTorch layer"),
    ("worker/quant/", BELOW_ENGINE, NUMERICS_OK_WORKER,
     "numerics know no proto and nothing of the engine above them"),
    ("worker/model/", BELOW_ENGINE, NUMERICS_OK_WORKER,
     "the model forward knows no proto and nothing of the engine"),
    ("worker/cuda/", BELOW_ENGINE, NUMERICS_OK_WORKER,
     "kernels know no proto and nothing of the engine"),
    ("worker/service/", ("coordinator/", "tools/"), (),
     "the worker service meets the coordinator only through proto/"),
    ("worker/main.cc", ("coordinator/", "tools/"), (), "the worker daemon's main"),
    ("worker/", RPC + METRICS + ("coordinator/", "daemon/", "net/", "tools/", "worker/service/"),
     (), "the engine knows no proto/gRPC/Prometheus: the service layer converts"),
    ("coordinator/", TORCH + ("worker/", "tools/"), (),
     "the coordinator links no LibTorch and meets workers through proto/"),
    ("daemon/", TORCH + ("worker/", "coordinator/", "tools/"), (), "daemon/ is scaffolding"),
]

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]')
SOURCE_DIRS = ("common", "proto", "net", "worker", "coordinator", "daemon")
SUFFIXES = (".h", ".cc", ".cu", ".cuh")


def rule_for(rel):
    for prefix, forbidden, allowed, why in RULES:
        if rel.startswith(prefix):
            return forbidden, allowed, why
    return None


def violations(root):
    out = []
    for top in SOURCE_DIRS:
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith(SUFFIXES):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                rule = rule_for(rel)
                if rule is None:
                    continue
                forbidden, allowed, why = rule
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        inc = m.group(1)
                        if allowed and inc.startswith(allowed):
                            continue
                        if inc.startswith(forbidden):
                            out.append(f"{rel}:{lineno}: includes \"{inc}\" ({why})")
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    found = violations(root)
    for v in found:
        print(v)
    if found:
        print(f"{len(found)} forbidden include(s); see tools/check_layering.py for the layers",
              file=sys.stderr)
        return 1
    print("layering: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
