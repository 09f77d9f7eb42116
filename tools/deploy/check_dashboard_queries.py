#!/usr/bin/env python3
"""Runs every PromQL query of the Grafana dashboard against a Prometheus and
says which return data.

Every panel target (and every templating variable's label_values query) is
taken from deploy/grafana/baq-dashboard.json, Grafana's variables are
substituted ($namespace and $job_id: `.*` unless given with --var;
$__rate_interval: --rate-interval; $__range: the queried range), and the
query is sent to Prometheus' HTTP API as a range query over [--start,
--end] (a panel "returns data" when any series has a sample in the range,
so a panel that shows data only while a job runs is judged over the job),
or as an instant query with --instant.

One line per query: OK (series count), EMPTY or ERROR (Prometheus' message,
e.g. a parse error). Exit status: 0 when every query returned data (or is
EMPTY and matches --allow-empty), 1 otherwise, 2 on a usage or connection
error. --json writes the results for a report.

Examples:
  # After a GPU run scraped by a Prometheus on localhost:9090, over the job:
  tools/deploy/check_dashboard_queries.py --prometheus http://127.0.0.1:9090 \\
      --start 2026-12-07T16:00:00Z --end 2026-12-07T17:10:00Z --var job_id=job-0001
  # CPU-only cluster: GPU panels have nothing to show.
  tools/deploy/check_dashboard_queries.py --prometheus http://127.0.0.1:9090 \\
      --start -30m --allow-empty 'GPU'
  # The substituted queries, without a Prometheus:
  tools/deploy/check_dashboard_queries.py --list

Only the Python standard library.
"""

import argparse
import datetime
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                 "deploy", "grafana", "baq-dashboard.json")


def iter_panels(panels):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def dashboard_queries(dash):
    """[(where, expr, label)]: every panel target's PromQL, then every query
    variable's (label_values(expr, label) gives expr and label; label is
    None for panel targets)."""
    out = []
    for p in iter_panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append(("panel %r [%s]" % (p.get("title", "?"), t.get("refId", "?")),
                            t["expr"], None))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.match(r"\s*label_values\(\s*(.*?)\s*,\s*(\w+)\s*\)\s*$", q)
        if m:
            out.append(("variable $%s" % var["name"], m.group(1), m.group(2)))
        elif q.strip():
            out.append(("variable $%s" % var["name"],
                        re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", q), None))
    return out


def variable_defaults(dash):
    """{name: value} for the dashboard's query variables: their allValue
    (`.*`) when they include All, else `.*`."""
    out = {}
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") in ("query", "custom", "textbox"):
            out[var["name"]] = var.get("allValue") or ".*"
    return out


def substitute(expr, variables, rate_interval="1m", range_s=3600, interval="15s"):
    """`expr` with Grafana's variables replaced."""
    builtins = {"__rate_interval": rate_interval, "__interval": interval,
                "__range": "%ds" % max(1, int(range_s)), "__range_s": str(int(range_s))}
    values = dict(builtins, **variables)

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        name = name.split(":")[0]  # ${var:regex} formats
        if name not in values:
            raise KeyError("unknown variable $%s in %r" % (name, expr))
        return values[name]
    return re.sub(r"\$\{([^}]+)\}|\$(\w+)|\[\[(\w+)\]\]", repl, expr)


def parse_time(text, now):
    """Unix seconds from a Unix time, RFC 3339, or a relative '-30m'/'-2h'/'now'."""
    if text in ("", "now"):
        return now
    m = re.match(r"^-(\d+(?:\.\d+)?)([smhd])$", text)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def query(prometheus, expr, start, end, step, instant, require_label=None, timeout_s=30):
    """(series with data, samples, error or None); with `require_label`, only
    series that carry that label count."""
    if instant:
        path, params = "/api/v1/query", {"query": expr, "time": "%.3f" % end}
    else:
        path, params = "/api/v1/query_range", {"query": expr, "start": "%.3f" % start,
                                               "end": "%.3f" % end, "step": step}
    url = prometheus.rstrip("/") + path + "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            body = json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as e:  # 400: bad query; the body says why.
        try:
            body = json.loads(e.read().decode("utf-8"))
        except ValueError:
            return 0, 0, "HTTP %d" % e.code
    if body.get("status") != "success":
        return 0, 0, "%s: %s" % (body.get("errorType", "error"), body.get("error", body))
    result = body["data"]["result"]
    kind = body["data"]["resultType"]
    if require_label and kind in ("matrix", "vector"):
        result = [r for r in result if r.get("metric", {}).get(require_label)]
    if kind == "matrix":
        with_data = [r for r in result if r.get("values")]
        return len(with_data), sum(len(r["values"]) for r in with_data), None
    if kind == "vector":
        return len(result), len(result), None
    return (1, 1, None) if result else (0, 0, None)  # scalar / string


def check(dash, prometheus, start, end, step="15s", instant=False, variables=None,
          rate_interval="1m", allow_empty=None):
    """[{where, expr, status: OK|EMPTY|ERROR|ALLOWED_EMPTY, series, samples, error}]."""
    values = dict(variable_defaults(dash), **(variables or {}))
    results = []
    for where, expr, label in dashboard_queries(dash):
        row = {"where": where, "template": expr}
        try:
            q = substitute(expr, values, rate_interval, end - start)
        except KeyError as e:
            row.update(expr=expr, status="ERROR", series=0, samples=0, error=str(e))
            results.append(row)
            continue
        if label is not None:  # label_values(expr, label): series that carry the label.
            q = "count by (%s) (%s)" % (label, q)
        series, samples, error = query(prometheus, q, start, end, step, instant, label)
        status = "ERROR" if error else ("OK" if series else "EMPTY")
        if status == "EMPTY" and allow_empty and re.search(allow_empty, where):
            status = "ALLOWED_EMPTY"
        row.update(expr=q, status=status, series=series, samples=samples, error=error)
        results.append(row)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--dashboard", default=os.path.normpath(DEFAULT_DASHBOARD))
    ap.add_argument("--prometheus", help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--start", default="-1h", help="Unix time, RFC 3339 or -30m (default -1h)")
    ap.add_argument("--end", default="now")
    ap.add_argument("--step", default="15s")
    ap.add_argument("--instant", action="store_true", help="instant queries at --end")
    ap.add_argument("--rate-interval", default="1m",
                    help="$__rate_interval (at least 4 scrape intervals; default 1m)")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="a dashboard variable's value (default: its All value, .*)")
    ap.add_argument("--allow-empty", metavar="REGEX",
                    help="queries whose 'panel ...' name matches may return nothing")
    ap.add_argument("--list", action="store_true", help="print the substituted queries and exit")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args(argv)

    with open(args.dashboard, encoding="utf-8") as f:
        dash = json.load(f)
    variables = {}
    for v in args.var:
        name, sep, value = v.partition("=")
        if not sep:
            ap.error("--var wants NAME=VALUE, got %r" % v)
        variables[name] = value
    now = time.time()
    start, end = parse_time(args.start, now), parse_time(args.end, now)
    if args.list:
        values = dict(variable_defaults(dash), **variables)
        lines = []
        for where, expr, label in dashboard_queries(dash):
            q = substitute(expr, values, args.rate_interval, end - start)
            lines.append("%s%s\n    %s" % (where, " (label %s)" % label if label else "", q))
        print("\n".join(lines))
        return 0
    if not args.prometheus:
        ap.error("--prometheus URL is required (or --list)")
    try:
        results = check(dash, args.prometheus, start, end, args.step, args.instant, variables,
                        args.rate_interval, args.allow_empty)
    except (urllib.error.URLError, OSError) as e:
        print("cannot reach Prometheus at %s: %s" % (args.prometheus, e), file=sys.stderr)
        return 2
    for r in results:
        detail = r["error"] if r["error"] else "%d series, %d samples" % (r["series"],
                                                                          r["samples"])
        print("%-13s %s: %s\n    %s" % (r["status"], r["where"], detail, r["expr"]))
    counts = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print("%d queries over %s .. %s: %s" % (
        len(results), datetime.datetime.fromtimestamp(start, datetime.timezone.utc).isoformat(),
        datetime.datetime.fromtimestamp(end, datetime.timezone.utc).isoformat(),
        ", ".join("%d %s" % (n, s) for s, n in sorted(counts.items()))))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"prometheus": args.prometheus, "start": start, "end": end,
                       "results": results}, f, indent=1)
    return 0 if all(r["status"] in ("OK", "ALLOWED_EMPTY") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
