#!/usr/bin/env python3
"""tools/trace/summarize_trace.py on tiny synthetic traces: a coordinator and a worker file of
one run, with nested spans whose self times and blocks are known by construction.

    summarize_trace_test.py PATH/TO/summarize_trace.py
"""
import json
import os
import subprocess
import sys
import tempfile


def span(pid, tid, name, ts, dur, **args):
    return {"ph": "X", "pid": pid, "tid": tid, "cat": "engine", "name": name, "ts": ts,
            "dur": dur, "args": args}


def process(pid, name):
    return {"ph": "M", "pid": pid, "tid": pid, "name": "process_name", "args": {"name": name}}


# Worker: block 0's measure (100 us) holds load_block (10) and a forward (60) that holds two
# hessian_add (5 each); block 1's quantize (50) holds two quantize_layer (20 each). A second
# thread runs a forward_chunk (30) of no block.
WORKER = {"traceEvents": [
    process(7, "worker host:7001"),
    span(7, 1, "measure", 1000, 100, block=0),
    span(7, 1, "load_block", 1000, 10, block=0),
    span(7, 1, "forward", 1010, 60),
    span(7, 1, "hessian_add", 1020, 5, layer="q_proj"),
    span(7, 1, "hessian_add", 1040, 5, layer="fc1"),
    span(7, 1, "quantize", 1200, 50, block=1),
    span(7, 1, "quantize_layer", 1205, 20, block=1, layer="q_proj"),
    span(7, 1, "quantize_layer", 1225, 20, block=1, layer="fc1"),
    span(7, 2, "forward_chunk", 1010, 30, chunk=1),
]}
# Coordinator, same pid as the worker (another host): kept apart by file.
COORDINATOR = [
    process(7, "coordinator"),
    span(7, 3, "Measure", 990, 120, block=0),
    span(7, 3, "allocate_block", 1120, 4, block=0),
    span(7, 3, "Quantize", 1190, 70, block=1),
]


def run(script, *args):
    return subprocess.run([sys.executable, script] + list(args), capture_output=True, text=True)


def main():
    script = sys.argv[1]
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    with tempfile.TemporaryDirectory() as d:
        worker, coordinator = os.path.join(d, "w.json"), os.path.join(d, "c.json")
        with open(worker, "w") as f:
            json.dump(WORKER, f)
        with open(coordinator, "w") as f:
            json.dump(COORDINATOR, f)  # The bare-array form of the format.

        r = run(script, "--json", coordinator, worker)
        check(r.returncode == 0, "--json exit %d: %s" % (r.returncode, r.stderr))
        s = json.loads(r.stdout)
        check(list(s) == ["coordinator", "worker host:7001"], "processes %s" % list(s))
        w = {st["name"]: st for st in s["worker host:7001"]["stages"]}
        expect = {  # name: (calls, total ms, self ms)
            "measure": (1, 0.100, 0.030),
            "load_block": (1, 0.010, 0.010),
            "forward": (1, 0.060, 0.050),
            "hessian_add": (2, 0.010, 0.010),
            "quantize": (1, 0.050, 0.010),
            "quantize_layer": (2, 0.040, 0.040),
            "forward_chunk": (1, 0.030, 0.030),
        }
        for name, (calls, total, self_ms) in expect.items():
            got = w.get(name)
            check(got is not None, "worker stage %s missing" % name)
            if got:
                check(got["calls"] == calls, "%s calls %s" % (name, got["calls"]))
                check(abs(got["total_ms"] - total) < 1e-9, "%s total %s" % (name, got["total_ms"]))
                check(abs(got["self_ms"] - self_ms) < 1e-9, "%s self %s" % (name, got["self_ms"]))
        check(abs(s["worker host:7001"]["wall_ms"] - 0.250) < 1e-9,
              "worker wall %s" % s["worker host:7001"]["wall_ms"])
        # [1000, 1250): spans cover [1000, 1100) and [1200, 1250); 1100..1200 is idle.
        check(abs(s["worker host:7001"]["untraced_ms"] - 0.100) < 1e-9,
              "worker untraced %s" % s["worker host:7001"]["untraced_ms"])
        blocks = s["worker host:7001"]["blocks"]
        # hessian_add inherits block 0 through forward and measure; forward_chunk has none.
        check(abs(blocks["0"]["hessian_add"] - 0.010) < 1e-9, "block 0 %s" % blocks.get("0"))
        check(abs(blocks["1"]["quantize_layer"] - 0.040) < 1e-9, "block 1 %s" % blocks.get("1"))
        check("forward_chunk" not in blocks["0"], "forward_chunk got a block")
        c = {st["name"]: st for st in s["coordinator"]["stages"]}
        check(set(c) == {"Measure", "allocate_block", "Quantize"}, "coordinator %s" % set(c))

        r = run(script, "--per-block", coordinator, worker)
        check(r.returncode == 0, "markdown exit %d: %s" % (r.returncode, r.stderr))
        check("### worker host:7001" in r.stdout, "no worker heading:\n" + r.stdout)
        check("| measure | 1 | 0.1 | 0.0 |" in r.stdout, "no measure row:\n" + r.stdout)
        check("| (in no span) | | | 0.1 | 40.0 |" in r.stdout, "no idle row:\n" + r.stdout)
        check("| block |" in r.stdout, "no per-block table:\n" + r.stdout)

        merged = os.path.join(d, "m.json")
        r = run(script, "--merge", merged, coordinator, worker)
        check(r.returncode == 0, "--merge exit %d: %s" % (r.returncode, r.stderr))
        with open(merged) as f:
            m = json.load(f)["traceEvents"]
        check(len(m) == len(COORDINATOR) + len(WORKER["traceEvents"]), "merged %d" % len(m))
        names = {e["pid"]: e["args"]["name"] for e in m if e["ph"] == "M"}
        check(sorted(names.values()) == ["coordinator", "worker host:7001"],
              "merged processes %s (the shared pid must be split)" % names)

        empty = os.path.join(d, "e.json")
        with open(empty, "w") as f:
            json.dump({"traceEvents": [process(1, "coordinator")]}, f)
        r = run(script, empty)
        check(r.returncode == 1 and "no spans" in r.stderr, "empty trace: %s" % r.stderr)
        r = run(script, os.path.join(d, "missing.json"))
        check(r.returncode == 1, "missing file exit %d" % r.returncode)

    for f in failures:
        print("FAIL:", f)
    print("summarize_trace_test: %s" % ("FAILED" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
