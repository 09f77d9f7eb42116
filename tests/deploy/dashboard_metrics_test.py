#!/usr/bin/env python3
"""deploy/grafana/baq-dashboard.json uses only metrics the daemons export.

Extracts every metric name from the dashboard's PromQL (panel targets and
templating queries) and checks it against the names built in the
prometheus-cpp code of coordinator/ and worker/ (*_metrics.cc and any other
.cc that registers a baq_* metric), plus Prometheus' own `up`. Label names in
matchers, by(...) clauses and legends must be exported labels, target labels
(job, instance, namespace, ...) or `le` of a histogram. A renamed metric or
label in the C++ code therefore fails here, not silently in Grafana.

Also checks the JSON is a sane dashboard: unique panel ids, no overlapping
grid positions, every query panel on the ${datasource} variable.

Usage: dashboard_metrics_test.py [--source-dir REPO]
"""

import json
import os
import re
import sys

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baq_sources as src  # noqa: E402

DASHBOARD = "deploy/grafana/baq-dashboard.json"


def iter_panels(panels):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def query_of(var):
    q = var.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")


def main():
    root = src.repo_root()
    report = src.Report("dashboard_metrics_test")
    path = os.path.join(root, DASHBOARD)
    try:
        dash = json.loads(src.read(path))
    except (OSError, ValueError) as e:
        report.check(False, "%s: not valid JSON: %s" % (DASHBOARD, e))
        return report.finish()

    metrics = src.exported_metrics(root)
    report.check(bool(metrics), "no baq_* metrics found in coordinator/ or worker/ sources")
    series = src.series_names(metrics) | src.PROMETHEUS_SYNTHETIC
    labels = src.exported_labels(root) | src.TARGET_LABELS | {"le", "__name__"}

    exprs = []  # (where, PromQL)
    for var in dash.get("templating", {}).get("list", []):
        q = query_of(var)
        if var.get("type") != "query":
            continue
        m = re.match(r"\s*label_values\(\s*(.*?)\s*,\s*(\w+)\s*\)\s*$", q)
        if m:
            exprs.append(("variable $%s" % var["name"], m.group(1)))
            report.check(m.group(2) in labels,
                         "variable $%s: label %r is not exported" % (var["name"], m.group(2)))
        else:
            query = re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", q)
            exprs.append(("variable $%s" % var["name"], query))

    ids = set()
    for p in iter_panels(dash.get("panels", [])):
        title = p.get("title", "?")
        report.check(p.get("id") not in ids, "panel %r: duplicate id %s" % (title, p.get("id")))
        ids.add(p.get("id"))
        for t in p.get("targets", []):
            if "expr" not in t:
                continue
            exprs.append(("panel %r" % title, t["expr"]))
            for legend_label in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
                report.check(legend_label in labels,
                             "panel %r: legend label %r is not exported" % (title, legend_label))
        if p.get("targets"):
            ds = p.get("datasource", {})
            report.check(isinstance(ds, dict) and ds.get("uid") == "${datasource}",
                         "panel %r: datasource is not the ${datasource} variable" % title)

    report.check(len(exprs) > 10, "expected more than 10 PromQL expressions, found %d"
                 % len(exprs))
    used = set()
    for where, expr in exprs:
        names = src.promql_metric_names(expr)
        report.check(bool(names), "%s: no metric in %r" % (where, expr))
        for name in sorted(names):
            used.add(name)
            report.check(name in series, "%s: metric %s is not exported by the daemons (%r)"
                         % (where, name, expr))
        for label in sorted(src.promql_label_names(expr)):
            report.check(label in labels, "%s: label %r is not exported (%r)"
                         % (where, label, expr))

    # Panels of one row must not overlap on Grafana's 24-column grid.
    cells = {}
    for p in dash.get("panels", []):
        g = p.get("gridPos", {})
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                other = cells.setdefault((x, y), p.get("title"))
                if other != p.get("title"):
                    report.check(False, "panels %r and %r overlap at x=%d y=%d"
                                 % (other, p.get("title"), x, y))
                    break
            else:
                continue
            break
        report.check(g.get("x", 0) + g.get("w", 0) <= 24, "panel %r is wider than the grid"
                     % p.get("title"))

    unused = sorted(n for n in metrics if not any(s.startswith(n) for s in used))
    if unused:
        report.note("exported but not on the dashboard: " + ", ".join(unused))
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
