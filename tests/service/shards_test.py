#!/usr/bin/env python3
"""Calibration shards across real worker processes (issue 6 item 3).

One coordinator and three worker processes on 127.0.0.1; the OPT fixture job
(GPTQ, 3 bits, sequential, whose bits depend on every Hessian) with
--calibration_shards=3 is run twice:

  1. `baq quantize` (local mode: one engine holds all three shards and the
     coordinator code merges their fp64 Hessian partials), and
  2. `baq submit --wait` to the cluster: each worker accumulates one shard's
     partials per block (AccumulateHessians), the coordinator merges them in
     shard order, each layer's owner imports the sums it needs (ImportHessians)
     and quantizes its layers, and every worker runs its own shard through the
     quantized block with the others' weights (AdvanceShards): the resident
     data path, where no activations move;

and the two outputs must be byte-identical (quant_report.json modulo wall
times). Each worker's /metrics must show one successful AccumulateHessians
per block, so the split really happened, no shard-input RPC, one AdvanceShards
per block, and the coordinator's wire-bytes counter must show no activations
and Hessian and weight bytes within the bound the model's shape gives. A submit with more shards than
calibration chunks must be refused with a message naming calibration_shards.

Helpers (process handling, output comparison) come from cluster_test.py.
Exit 0: pass; 1: fail; 77: skipped (binaries or fixture missing).
"""

import json
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # Importing cluster_test must not leave __pycache__ behind.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_test as ct  # noqa: E402

SHARDS = 3
TOTAL_TIMEOUT_S = 240  # CTest's TIMEOUT is 300 s.
START_TIMEOUT_S = 30
JOB_TIMEOUT_S = 200


def rpc_count(metrics_text, method, code="OK"):
    """baq_worker_rpcs_total{method=..., code=...} in a /metrics scrape (0 if absent)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith("baq_worker_rpcs_total{"):
            continue
        if 'method="%s"' % method in line and 'code="%s"' % code in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def rpc_count_any(metrics_text, method):
    """baq_worker_rpcs_total{method=...} over every code."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("baq_worker_rpcs_total{") and 'method="%s"' % method in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wire_bytes(metrics_text):
    """baq_coordinator_job_wire_bytes_total summed over jobs, by kind."""
    out = {}
    for line in metrics_text.splitlines():
        if not line.startswith("baq_coordinator_job_wire_bytes_total{"):
            continue
        kind = re.search(r'kind="([a-z]+)"', line).group(1)
        out[kind] = out.get(kind, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def wire_bound(model_dir, blocks, shards, engines):
    """Most the resident path may move for an OPT model: per block S partials and at most E
    merged sums per input group (fp64 upper triangles, with headers), the float32 weights up
    once and down to the E-1 other engines, and the outputs (fake-quant float32 + packed, at
    most 2 x the weights)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    h, ffn = c["hidden_size"], c["ffn_dim"]
    triangle = lambda n: n * (n + 1) // 2 * 8 + 64
    groups = 3 * triangle(h) + triangle(ffn)  # q/k/v, out_proj, fc1 read h; fc2 reads ffn.
    weights = (4 * h * h + 2 * h * ffn) * 4
    return {"hessian": blocks * (shards + engines) * groups,
            "weights": blocks * (engines * weights + 2 * weights)}


def main():
    args, root = ct.parse_cluster_args()
    model = os.path.join(root, "examples/opt-fixture")
    calib_src = os.path.join(root, "examples/calibration.txt")
    if ct.unbuilt(args):
        print("SKIP: " + ct.unbuilt(args))
        return ct.SKIP
    if not os.path.isfile(os.path.join(model, "model.safetensors")):
        print("SKIP: no OPT fixture in %s" % model)
        return ct.SKIP
    with open(os.path.join(model, "config.json")) as f:
        num_blocks = int(json.load(f)["num_hidden_layers"])

    def scenario(report, children, tmp, logs):
        calib = ct.calibration_copy(calib_src, tmp)
        # 17 windows = chunks of 8, 8 and 1 window: three shards, one uneven.
        job_flags = ["--model=" + model, "--calib=" + calib, "--bits=3", "--method=gptq",
                     "--mode=sequential", "--nsamples=17", "--seqlen=16",
                     "--format=fake-quant,packed", "--calibration_shards=%d" % SHARDS]

        # 1. Local mode in the background.
        local, local_out = ct.start_local(children, args.cli, tmp, logs, job_flags)

        # 2. The cluster.
        cport, cmport, wmports, daemons = ct.start_cluster(
            children, args.coordinator, args.worker, tmp, logs, START_TIMEOUT_S)

        # 3. A shard count the calibration set cannot fill is refused at submit.
        coord = "--coordinator=127.0.0.1:%d" % cport
        bad = [f for f in job_flags if not f.startswith("--calibration_shards")]
        r = subprocess.run([args.cli, "submit", coord, "--wait",
                            "--out=" + os.path.join(tmp, "out-bad"), "--calibration_shards=4"]
                           + bad, capture_output=True, text=True, timeout=START_TIMEOUT_S,
                           preexec_fn=ct.die_with_parent)
        report.check(r.returncode != 0 and "calibration_shards" in r.stdout + r.stderr,
                     "submit with 4 shards of 3 chunks: rc %s, expected a calibration_shards "
                     "error:\n%s%s" % (r.returncode, r.stdout, r.stderr))

        # 4. The sharded job on the cluster.
        t0 = time.monotonic()
        remote_out = os.path.join(tmp, "out-cluster")
        r = subprocess.run([args.cli, "submit", coord, "--wait", "--out=" + remote_out]
                           + job_flags, capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
                           preexec_fn=ct.die_with_parent)
        report.require(r.returncode == 0, "baq submit --wait --calibration_shards=3: rc %s\n%s%s"
                       % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        report.note("baq submit --wait on 3 workers, 3 shards: %.1f s" % (time.monotonic() - t0))
        try:
            local_rc = local.wait(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            local_rc = None
        report.require(local_rc == 0, "baq quantize --calibration_shards=3: rc %s\n%s"
                       % (local_rc, ct.tail(logs["local"])))
        n = ct.compare_outputs(report, "3 workers x 1 shard", local_out, remote_out)
        report.note("compared %d output files with local mode" % n)

        # Every worker accumulated its shard of every block: the split happened.
        per_worker = []
        for mport in wmports:
            text = ct.http_get("http://127.0.0.1:%d/metrics" % mport)
            per_worker.append((rpc_count(text, "AccumulateHessians"),
                               rpc_count(text, "ImportHessians")))
        report.check(all(a == num_blocks and i == num_blocks for a, i in per_worker),
                     "AccumulateHessians/ImportHessians OK per worker %s, expected %d each"
                     % (per_worker, num_blocks))
        report.note("per worker (AccumulateHessians, ImportHessians): %s" % per_worker)

        # The resident data path: no activations moved (no shard input RPCs, the wire-bytes
        # counter's activations kind stays 0); each worker advanced its own shard every block;
        # what did cross is bounded by the Hessian partials and sums (upper triangles) and the
        # layer weights and outputs.
        moves = []
        for mport in wmports:
            text = ct.http_get("http://127.0.0.1:%d/metrics" % mport)
            moves.append((rpc_count_any(text, "ExportShardInputs") +
                          rpc_count_any(text, "ImportShardInputs") +
                          rpc_count_any(text, "ExportInputs") + rpc_count_any(text, "ImportInputs"),
                          rpc_count(text, "AdvanceShards")))
        report.check(all(m == 0 and a == num_blocks for m, a in moves),
                     "per worker (activation RPCs, AdvanceShards OK) %s, expected (0, %d)"
                     % (moves, num_blocks))
        wire = wire_bytes(ct.http_get("http://127.0.0.1:%d/metrics" % cmport))
        report.note("coordinator wire bytes by kind: %s" % wire)
        bound = wire_bound(model, num_blocks, SHARDS, len(wmports))
        report.check(wire.get("activations", -1) == 0 and wire.get("hessian", 0) > 0,
                     "wire bytes %s: expected activations 0 and Hessians > 0" % wire)
        report.check(wire.get("hessian", 0) <= bound["hessian"] and
                     wire.get("weights", 0) <= bound["weights"],
                     "wire bytes %s over the bound %s" % (wire, bound))

        ct.stop_daemons(report, daemons, START_TIMEOUT_S)

    return ct.run_test("baq-shards-", TOTAL_TIMEOUT_S, args.keep, scenario)


if __name__ == "__main__":
    sys.exit(main())
