#!/usr/bin/env python3
"""Memory and disk of a baq job as a function of model shape and calibration
size, for docs/operations.md ("Sizing") and the Helm chart's defaults.

The model is the distributed data path of issue 16: calibration activations
stay on the workers (each keeps its shard resident and checkpoints it to its
own storage every K blocks); only Hessian partials (fp64, upper triangle)
and quantized layer weights go through the coordinator.

Coordinator, per block (S calibration shards, JobConfig::calibration_shards;
`baq submit` makes one per worker device by default):
  * Hessians: one fp64 partial per shard and input group of the block (the
    distinct inputs of its linear layers: q/k/v share the block input, o_proj
    reads the attention output, gate/up share the MLP input, down_proj reads
    the FFN activation), each g(g+1)/2 x 8 bytes for a group of width g. The
    engines compute their shards at once and every shard's partials arrive
    before the merge (coordinator/resident_shards.cc), so S x the group sum;
    the merged sums then go to the layers' owners, at most one per owner. With
    S = 1 the one engine merges and no Hessian reaches the coordinator;
  * the quantized weights of the one block in flight (fake-quant: fp16,
    2 bytes a weight; packed: bits/8 plus an fp16 scale and zero per group
    of 128 weights). After the Hessians are freed, the block's output
    tensors, its weights and the copies streamed to the other engines
    (about 3 x the fp16 weights) fit under the Hessian term plus these;
  * plus the process itself (gRPC, job records): BASE_RSS_BYTES.
Measured (docs/operations.md "Sizing", tests/service/coordinator_memory_test.py) the peak
stays under this sum.
Coordinator disk (--data_dir): the job checkpoint, i.e. every published
block's output so far (the whole model's quantized blocks at the end) plus
the last K blocks' quantized weights (what a recovering worker replays),
plus the merged Hessians of the block being decided.

Worker, per calibration shard (S shards, windows / S windows each):
  * activations windows/S x seqlen x hidden x 4 bytes (fp32), twice while a
    block runs (its inputs and its outputs); above a limit they spill to the
    worker's local disk;
  * its shard checkpoint, the same size, on the scratch volume (twice while
    a new one replaces the old).
A stored measurement (--measurement) holds every layer's float32 Hessian
(in_features^2 x 4 bytes) for every block.

Usage: memory_table.py [--markdown] [--windows 128] [--seqlen 2048] [--k 4]
       [--bits 3] [--calibration_shards 2]
       (prints the tables; --json for the raw numbers)
Only the Python standard library.
"""

import argparse
import json
import sys

GiB = 1 << 30

# The coordinator process itself. Measured on a 2-core x86 CPU, Debian 12, RelWithDebInfo,
# commit e672f8c (`ctest -R service_coordinator_memory_test -V`; docs/operations.md "Sizing"):
# an idle coordinator with two workers registered peaks at 18 MiB (VmHWM, most of it the mapped
# binary and libraries), and running a job on them adds about 6.5 MiB that do not depend on the
# model (gRPC streams, threads, the output writer). Rounded up to leave room for more workers'
# connections and allocator slack.
BASE_RSS_BYTES = 64 << 20

# (name, hidden, ffn, blocks, heads, kv_heads): LLaMA-family shapes.
SHAPES = [
    ("7B", 4096, 11008, 32, 32, 32),
    ("30B", 6656, 17920, 60, 52, 52),
    ("70B (GQA)", 8192, 28672, 80, 64, 8),
]
GROUP_SIZE = 128  # packed format: one fp16 scale and zero per group


def hessian_bytes(width):
    """fp64 upper triangle of a width x width Hessian."""
    return width * (width + 1) // 2 * 8


def shape_numbers(name, hidden, ffn, blocks, heads, kv_heads, windows=128, seqlen=2048, k=4,
                  bits=3, shards=(1, 2, 4), calibration_shards=2):
    head_dim = hidden // heads
    attn = heads * head_dim
    kv = kv_heads * head_dim
    groups = [hidden, attn, hidden, ffn]  # q/k/v in, o in, gate/up in, down in
    # in_features of each linear layer: q, k, v, o, gate, up, down.
    layer_inputs = [hidden, hidden, hidden, attn, hidden, hidden, ffn]
    params = hidden * attn + 2 * hidden * kv + attn * hidden + 3 * hidden * ffn
    weights_fp16 = 2 * params
    weights_packed = params * bits // 8 + params // GROUP_SIZE * 4
    hessians = sum(hessian_bytes(g) for g in groups)
    # Every shard's partials of a block at once; none with one shard.
    hessian_sets = calibration_shards if calibration_shards > 1 else 0
    coordinator_rss = BASE_RSS_BYTES + hessian_sets * hessians + weights_fp16
    checkpoint_fp16 = (blocks + k) * weights_fp16 + hessians
    checkpoint_packed = (blocks + k) * weights_packed + hessians
    boundary = windows * seqlen * hidden * 4
    worker = {}
    for s in shards:
        per_shard = -(-windows // s) * seqlen * hidden * 4
        worker[s] = {"resident": per_shard, "peak": 2 * per_shard, "checkpoint": per_shard}
    return {
        "name": name, "hidden": hidden, "ffn": ffn, "blocks": blocks, "heads": heads,
        "kv_heads": kv_heads, "params_per_block": params,
        "hessian_group_bytes": [hessian_bytes(g) for g in groups],
        "hessians_per_block": hessians, "calibration_shards": calibration_shards,
        "coordinator_hessians": hessian_sets * hessians,
        "block_weights_fp16": weights_fp16, "block_weights_packed": weights_packed,
        "coordinator_peak_rss": coordinator_rss,
        "coordinator_disk_fake_quant": checkpoint_fp16,
        "coordinator_disk_packed": checkpoint_packed,
        "boundary_activations": boundary,
        "scratch_checkpoints": 2 * boundary,  # all shards, old + new while replacing
        "measurement": blocks * sum(4 * i * i for i in layer_inputs),
        "worker": worker,
    }


def table(windows=128, seqlen=2048, k=4, bits=3, calibration_shards=2):
    return [shape_numbers(*s, windows=windows, seqlen=seqlen, k=k, bits=bits,
                          calibration_shards=calibration_shards) for s in SHAPES]


def gb(n):
    return "%.1f GB" % (n / 1e9) if n >= 1e9 else "%.0f MB" % (n / 1e6)


def markdown(rows, windows, seqlen, k, bits):
    out = []
    shards = rows[0]["calibration_shards"]
    out.append("Coordinator (%d x %d calibration, S = %d calibration shards, K = %d, %d-bit "
               "output):" % (windows, seqlen, shards, k, bits))
    out.append("")
    out.append("| Shape | Hessians per block (S partials) | Block weights in flight (fp16) "
               "| Peak RSS | Data dir: fake-quant | Data dir: packed |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        out.append("| %s (hidden %d, FFN %d, %d blocks) | %s | %s | %s | %s | %s |" % (
            r["name"], r["hidden"], r["ffn"], r["blocks"], gb(r["coordinator_hessians"]),
            gb(r["block_weights_fp16"]), gb(r["coordinator_peak_rss"]),
            gb(r["coordinator_disk_fake_quant"]), gb(r["coordinator_disk_packed"])))
    out.append("")
    out.append("Workers (activations fp32; S calibration shards, one per worker):")
    out.append("")
    out.append("| Shape | Boundary activations (all shards) | Per worker, S = 1 / 2 / 4 "
               "(x2 while a block runs) | Scratch volume: shard checkpoints | Stored measurement |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        w = r["worker"]
        out.append("| %s | %s | %s / %s / %s | %s | %s |" % (
            r["name"], gb(r["boundary_activations"]), gb(w[1]["resident"]), gb(w[2]["resident"]),
            gb(w[4]["resident"]), gb(r["scratch_checkpoints"]), gb(r["measurement"])))
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--k", type=int, default=4, help="blocks between shard checkpoints")
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--calibration_shards", type=int, default=2,
                    help="S: Hessian partials per block at the coordinator (one per shard)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = table(args.windows, args.seqlen, args.k, args.bits, args.calibration_shards)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(markdown(rows, args.windows, args.seqlen, args.k, args.bits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
