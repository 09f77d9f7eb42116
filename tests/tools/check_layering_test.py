#!/usr/bin/env python3
"""tools/check_layering.py catches what it must: a tree with one forbidden include per layer
fails with a line naming each, and the same tree without them passes.

    check_layering_test.py PATH/TO/check_layering.py
"""
import os
import subprocess
import sys
import tempfile

# (file, forbidden include): one per rule the layering rests on.
VIOLATIONS = [
    ("common/a.h", "torch/torch.h"),
    ("common/b.cc", "worker/torch/torch_call.h"),
    ("proto/c.cc", "ATen/ATen.h"),
    ("worker/quant/d.cc", "worker/layer_formats.h"),
    ("worker/model/e.cc", "baq/v1/worker.pb.h"),
    ("worker/torch/f.cc", "worker/quant/gptq.h"),
    ("worker/engine/g.cc", "grpcpp/grpcpp.h"),
    ("worker/h.cc", "prometheus/registry.h"),
    ("worker/i.cc", "worker/service/worker_metrics.h"),
    ("worker/service/j.cc", "coordinator/job_runner.h"),
    ("coordinator/k.cc", "ATen/ATen.h"),
    ("coordinator/l.cc", "worker/torch_block_engine.h"),
]
# Allowed: must not be reported.
ALLOWED = [
    ("worker/quant/m.cc", "worker/torch/torch_call.h"),
    ("worker/model/n.cc", "worker/quant/gptq.h"),
    ("worker/o.cc", "worker/model/decoder_block.h"),
    ("worker/service/p.cc", "proto/convert.h"),
    ("coordinator/q.cc", "proto/convert.h"),
    ("common/r.cc", "absl/status/status.h"),
]


def write(root, rel, include):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        f.write(f'#include "{include}"\n')


def run(checker, root):
    return subprocess.run([sys.executable, checker, root], capture_output=True, text=True)


def main():
    checker = sys.argv[1]
    with tempfile.TemporaryDirectory() as clean, tempfile.TemporaryDirectory() as dirty:
        for rel, inc in ALLOWED:
            write(clean, rel, inc)
            write(dirty, rel, inc)
        for rel, inc in VIOLATIONS:
            write(dirty, rel, inc)
        ok = run(checker, clean)
        if ok.returncode != 0:
            print("FAIL: allowed includes reported:\n" + ok.stdout)
            return 1
        bad = run(checker, dirty)
        if bad.returncode == 0:
            print("FAIL: violations not reported")
            return 1
        missing = [f"{rel} -> {inc}" for rel, inc in VIOLATIONS
                   if not any(line.startswith(rel + ":") and inc in line
                              for line in bad.stdout.splitlines())]
        extra = [line for line in bad.stdout.splitlines()
                 if any(line.startswith(rel + ":") for rel, _ in ALLOWED)]
        if missing or extra:
            print("FAIL: missed " + ", ".join(missing) + "; wrongly reported " + ", ".join(extra))
            return 1
    print(f"check_layering catches all {len(VIOLATIONS)} planted violations, "
          f"passes {len(ALLOWED)} allowed includes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
