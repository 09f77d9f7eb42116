#!/usr/bin/env python3
"""tools/deploy/memory_table.py: its arithmetic, the table in
docs/operations.md and the Helm chart's defaults agree.

  * spot values computed by hand (the fp64 upper triangle of a 4096-wide
    Hessian, a 30B block boundary's activations, a 70B GQA block's weights,
    the coordinator's Hessians growing with the calibration shards);
  * docs/operations.md holds exactly the script's --markdown output between
    its `memory_table.py` markers (so the documented numbers are reproducible:
    rerun the script and paste);
  * the chart's coordinator memory request covers the 30B shape's peak RSS,
    its limit and PVC the 70B shape's, and the scratch volume the 70B shard
    checkpoints.

Usage: memory_table_test.py [--source-dir REPO]
"""

import os
import re
import sys

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baq_sources as src  # noqa: E402

try:
    import yaml
except ImportError:  # Debian: python3-yaml.
    print("SKIP: PyYAML is not installed (apt-get install python3-yaml)")
    sys.exit(src.SKIP)

BEGIN = "<!-- memory_table.py --markdown: begin -->"
END = "<!-- memory_table.py --markdown: end -->"


def quantity(text):
    """Bytes of a Kubernetes quantity such as 12Gi or 500M."""
    m = re.match(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$", str(text))
    if not m:
        raise ValueError("not a quantity: %r" % text)
    unit = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 1e3,
            "M": 1e6, "G": 1e9, "T": 1e12}[m.group(2)]
    return float(m.group(1)) * unit


def main():
    root = src.repo_root()
    sys.path.insert(0, os.path.join(root, "tools", "deploy"))
    import memory_table as mt  # noqa: E402
    report = src.Report("memory_table_test")

    report.check(mt.hessian_bytes(4096) == 4096 * 4097 // 2 * 8 == 67125248,
                 "hessian_bytes(4096) = %d" % mt.hessian_bytes(4096))
    rows = {r["name"]: r for r in mt.table()}
    r7, r30, r70 = rows["7B"], rows["30B"], rows["70B (GQA)"]
    report.check(r30["boundary_activations"] == 128 * 2048 * 6656 * 4,
                 "30B boundary activations %d" % r30["boundary_activations"])
    report.check(r7["boundary_activations"] == 4294967296, "7B boundary: 4.3 GB (issue 16)")
    # 70B GQA: q, o 8192^2; k, v 8192 x 1024 (8 KV heads of 128); MLP 3 x 8192 x 28672.
    report.check(r70["params_per_block"] == 2 * 8192 ** 2 + 2 * 8192 * 1024 + 3 * 8192 * 28672,
                 "70B params per block %d" % r70["params_per_block"])
    report.check(r7["params_per_block"] == 4 * 4096 ** 2 + 3 * 4096 * 11008,
                 "7B params per block %d" % r7["params_per_block"])
    report.check(r7["hessian_group_bytes"] == [67125248] * 3 + [11008 * 11009 * 4],
                 "7B Hessian groups %s" % r7["hessian_group_bytes"])
    report.check(r7["coordinator_peak_rss"] == mt.BASE_RSS_BYTES + 2 * sum(
        r7["hessian_group_bytes"]) + 2 * r7["params_per_block"], "7B peak RSS formula")
    for r in rows.values():
        w = r["worker"]
        report.check(w[2]["resident"] * 2 == w[1]["resident"] and w[1]["peak"] ==
                     2 * w[1]["resident"], "%s: shards split the activations" % r["name"])
        # No coordinator term depends on the activations.
        report.check(r["coordinator_peak_rss"] < r["boundary_activations"] * 2,
                     "%s: coordinator RSS above the activations" % r["name"])
    # Every shard's partials of a block reach the coordinator at once; one shard: none.
    s4 = mt.shape_numbers(*mt.SHAPES[0], calibration_shards=4)
    s1 = mt.shape_numbers(*mt.SHAPES[0], calibration_shards=1)
    report.check(s4["coordinator_peak_rss"] - r7["coordinator_peak_rss"] ==
                 2 * sum(r7["hessian_group_bytes"]) and
                 s1["coordinator_peak_rss"] == mt.BASE_RSS_BYTES + 2 * r7["params_per_block"],
                 "7B peak RSS with 4 shards %d, with 1 shard %d" % (
                     s4["coordinator_peak_rss"], s1["coordinator_peak_rss"]))
    bigger = mt.shape_numbers(*mt.SHAPES[0], windows=1024)
    report.check(bigger["coordinator_peak_rss"] == r7["coordinator_peak_rss"] and
                 bigger["boundary_activations"] == 8 * r7["boundary_activations"],
                 "coordinator memory must not grow with the calibration size")

    doc = src.read(os.path.join(root, "docs/operations.md"))
    if report.check(BEGIN in doc and END in doc, "docs/operations.md lacks the %s ... %s markers"
                    % (BEGIN, END)):
        documented = doc.split(BEGIN, 1)[1].split(END, 1)[0].strip()
        expected = mt.markdown(mt.table(), 128, 2048, 4, 3).strip()
        report.check(documented == expected,
                     "docs/operations.md's table is not `tools/deploy/memory_table.py "
                     "--markdown`'s output; rerun it and paste:\n" + expected)

    values = yaml.safe_load(src.read(os.path.join(root, "deploy/helm/baq/values.yaml")))
    res = values["coordinator"]["resources"]
    report.check(quantity(res["requests"]["memory"]) >= r30["coordinator_peak_rss"],
                 "coordinator memory request %s < 30B peak RSS" % res["requests"]["memory"])
    report.check(quantity(res["limits"]["memory"]) >= 1.15 * r70["coordinator_peak_rss"],
                 "coordinator memory limit %s < 70B peak RSS + 15 %%" % res["limits"]["memory"])
    size = values["coordinator"]["persistence"]["size"]
    report.check(quantity(size) >= r70["coordinator_disk_fake_quant"],
                 "coordinator PVC %s < 70B fake-quant checkpoint" % size)
    scratch = values["scratch"]["size"]
    report.check(quantity(scratch) >= r70["scratch_checkpoints"],
                 "scratch PVC %s < 70B shard checkpoints" % scratch)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
