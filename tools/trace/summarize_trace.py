#!/usr/bin/env python3
"""Per-stage time of a baq run from its --trace_file timelines (Chrome trace JSON).

    summarize_trace.py TRACE.json [TRACE.json ...] [--per-block] [--top N] [--json]
                       [--merge MERGED.json]

Give the coordinator's and every worker's trace of one run together (or the one file of
`baq quantize --trace_file`). Prints, per process (its process_name), one row per span name:

  calls     how many spans of that name
  total ms  their summed duration (inclusive: a span contains the spans nested in it)
  self ms   total minus the time in spans nested directly inside them, on the same thread:
            where the time went, summing to the traced time without double counting
  % wall    self ms over the process's traced wall time (first span start to last span end)

and a last row, "(in no span)": the traced wall time that no span of any thread covers (a
worker waiting for its next call, the coordinator between calls).

--per-block adds, per process, a table of blocks x stages (self ms), where a span's block is its
"block" arg or, failing that, that of the span it is nested in. --json prints the same numbers
as one JSON object instead of Markdown. --merge also writes the files as one trace (processes
renumbered where two files share a pid), for viewers that open one file at a time
(chrome://tracing). Standard library only. docs/performance.md
"Profiling a run" shows an example.
"""
import argparse
import collections
import json
import sys

# Slack (microseconds) when deciding whether a span lies inside another: starts are wall-clock
# microseconds and durations monotonic ones, so a child may poke out by a rounding step.
NEST_SLACK_US = 2


def load_events(paths):
    """(process names by pid, complete events) of all files. Pids of different files stay
    apart even if equal (two hosts), by keying them with the file's index."""
    names = {}
    events = []
    for index, path in enumerate(paths):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        raw = doc["traceEvents"] if isinstance(doc, dict) else doc
        for e in raw:
            pid = (index, e.get("pid", 0))
            if e.get("ph") == "M" and e.get("name") == "process_name":
                names[pid] = e.get("args", {}).get("name", str(pid[1]))
            elif e.get("ph") == "X":
                events.append({
                    "pid": pid,
                    "tid": e.get("tid", 0),
                    "name": e["name"],
                    "ts": float(e["ts"]),
                    "dur": float(e.get("dur", 0)),
                    "args": e.get("args", {}) or {},
                })
    for e in events:
        names.setdefault(e["pid"], "pid %s" % e["pid"][1])
    return names, events


def merge(paths, out_path):
    """Writes the traceEvents of all `paths` into one file, pids renumbered per file when
    they collide."""
    merged = []
    used = set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        raw = doc["traceEvents"] if isinstance(doc, dict) else doc
        remap = {}
        for e in raw:
            pid = e.get("pid", 0)
            if pid not in remap:
                new = pid
                while new in used:
                    new += 1000000
                remap[pid] = new
            merged.append(dict(e, pid=remap[pid]))
        used.update(remap.values())
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"traceEvents": merged, "displayTimeUnit": "ms"}, f)


def attribute(events):
    """Sets each event's "self" (dur minus its direct children's) and "block" (own arg or the
    enclosing span's), nesting spans per thread."""
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[(e["pid"], e["tid"])].append(e)
    for spans in by_thread.values():
        spans.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in spans:
            e["self"] = e["dur"]
            while stack and not _inside(e, stack[-1]):
                stack.pop()
            parent = stack[-1] if stack else None
            if parent is not None:
                parent["self"] -= e["dur"]
            block = e["args"].get("block")
            if block is None and parent is not None:
                block = parent["block"]
            e["block"] = block
            stack.append(e)
    for e in events:
        e["self"] = max(e["self"], 0.0)


def _inside(child, parent):
    return (child["ts"] >= parent["ts"] - NEST_SLACK_US and
            child["ts"] + child["dur"] <= parent["ts"] + parent["dur"] + NEST_SLACK_US)


def summarize(names, events):
    """{process name: {"wall_ms", "stages": [{name, calls, total_ms, self_ms}], "blocks":
    {block: {name: self_ms}}}}, processes in first-seen order."""
    attribute(events)
    out = collections.OrderedDict()
    pids = []
    for e in events:
        if e["pid"] not in pids:
            pids.append(e["pid"])
    for pid in pids:
        mine = [e for e in events if e["pid"] == pid]
        start = min(e["ts"] for e in mine)
        end = max(e["ts"] + e["dur"] for e in mine)
        stages = collections.OrderedDict()
        blocks = collections.defaultdict(lambda: collections.defaultdict(float))
        for e in sorted(mine, key=lambda e: e["ts"]):
            s = stages.setdefault(e["name"], {"name": e["name"], "calls": 0, "total_ms": 0.0,
                                              "self_ms": 0.0})
            s["calls"] += 1
            s["total_ms"] += e["dur"] / 1000.0
            s["self_ms"] += e["self"] / 1000.0
            if e["block"] is not None:
                blocks[e["block"]][e["name"]] += e["self"] / 1000.0
        label = names[pid]
        while label in out:  # Two processes with one name (two traces of "baq quantize").
            label += "'"
        out[label] = {
            "wall_ms": (end - start) / 1000.0,
            "untraced_ms": _uncovered(mine, start, end) / 1000.0,
            "stages": sorted(stages.values(), key=lambda s: -s["self_ms"]),
            "blocks": {b: dict(v) for b, v in sorted(blocks.items(), key=lambda kv: _key(kv[0]))},
        }
    return out


def _uncovered(events, start, end):
    """Microseconds of [start, end) that no span (of any thread) covers."""
    covered = 0.0
    reach = start
    for e in sorted(events, key=lambda e: e["ts"]):
        b, f = max(e["ts"], reach), e["ts"] + e["dur"]
        if f > b:
            covered += f - b
            reach = f
    return max(end - start - covered, 0.0)


def _key(block):
    return (0, block) if isinstance(block, (int, float)) else (1, str(block))


def markdown(summary, per_block, top):
    lines = []
    for process, p in summary.items():
        lines.append("### %s (traced wall %.1f ms)" % (process, p["wall_ms"]))
        lines.append("")
        lines.append("| stage | calls | total ms | self ms | % wall |")
        lines.append("|---|---:|---:|---:|---:|")
        stages = p["stages"][:top] if top else p["stages"]
        for s in stages:
            share = 100.0 * s["self_ms"] / p["wall_ms"] if p["wall_ms"] > 0 else 0.0
            lines.append("| %s | %d | %.1f | %.1f | %.1f |" %
                         (s["name"], s["calls"], s["total_ms"], s["self_ms"], share))
        # Time in no span of any thread's root, e.g. a worker waiting for its next RPC.
        untraced = p["untraced_ms"]
        share = 100.0 * untraced / p["wall_ms"] if p["wall_ms"] > 0 else 0.0
        lines.append("| (in no span) | | | %.1f | %.1f |" % (untraced, share))
        lines.append("")
        if per_block and p["blocks"]:
            columns = [s["name"] for s in p["stages"]
                       if any(s["name"] in b for b in p["blocks"].values())]
            if top:
                columns = columns[:top]
            lines.append("| block | " + " | ".join(columns) + " |")
            lines.append("|---:|" + "---:|" * len(columns))
            for block, row in p["blocks"].items():
                lines.append("| %s | " % block +
                             " | ".join("%.1f" % row.get(c, 0.0) for c in columns) + " |")
            lines.append("")
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("traces", nargs="+", help="trace files of one run")
    parser.add_argument("--per-block", action="store_true", help="add blocks x stages tables")
    parser.add_argument("--top", type=int, default=0, help="only the N stages of most self time")
    parser.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    parser.add_argument("--merge", metavar="PATH", help="also write all traces as one file")
    args = parser.parse_args(argv)
    try:
        names, events = load_events(args.traces)
    except (OSError, ValueError, KeyError) as e:
        print("summarize_trace: %s" % e, file=sys.stderr)
        return 1
    if not events:
        print("summarize_trace: no spans in %s" % ", ".join(args.traces), file=sys.stderr)
        return 1
    summary = summarize(names, events)
    if args.merge:
        merge(args.traces, args.merge)
    if args.json:
        json.dump(summary, sys.stdout, indent=1, default=str)
        print()
    else:
        print(markdown(summary, args.per_block, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
