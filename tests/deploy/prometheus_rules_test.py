#!/usr/bin/env python3
"""deploy/prometheus/baq-rules.yaml is a valid rules file about real metrics.

  * `promtool check rules` accepts it and `promtool test rules` passes
    tests/deploy/baq-rules.test.yaml (each alert fires on its series) when
    promtool is installed (Debian package `prometheus`); without promtool the
    YAML is parsed and checked structurally instead;
  * every alert has an expr, a severity label and a summary annotation;
  * every metric an expr names is exported by the daemons (or is `up`), and
    every label it matches on is an exported or target label;
  * docs/metrics.md names every alert, and the chart ships this file
    (deploy/helm/baq/files/baq-rules.yaml is a link to it).

Usage: prometheus_rules_test.py [--source-dir REPO]
"""

import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baq_sources as src  # noqa: E402

try:
    import yaml
except ImportError:  # Debian: python3-yaml.
    print("SKIP: PyYAML is not installed (apt-get install python3-yaml)")
    sys.exit(src.SKIP)

RULES = "deploy/prometheus/baq-rules.yaml"
CHART_COPY = "deploy/helm/baq/files/baq-rules.yaml"
UNIT_TESTS = "tests/deploy/baq-rules.test.yaml"


def main():
    root = src.repo_root()
    report = src.Report("prometheus_rules_test")
    path = os.path.join(root, RULES)
    try:
        doc = yaml.safe_load(src.read(path))
    except (OSError, yaml.YAMLError) as e:
        report.check(False, "%s: %s" % (RULES, e))
        return report.finish()

    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        report.check(r.returncode == 0, "promtool check rules: %s%s" % (r.stdout, r.stderr))
        tests = os.path.join(root, UNIT_TESTS)
        r = subprocess.run([promtool, "test", "rules", os.path.basename(tests)],
                           capture_output=True, text=True, cwd=os.path.dirname(tests))
        report.check(r.returncode == 0, "promtool test rules %s: %s%s"
                     % (UNIT_TESTS, r.stdout, r.stderr))
    else:
        report.note("promtool not installed (Debian package prometheus): structural checks only")

    metrics = src.series_names(src.exported_metrics(root)) | src.PROMETHEUS_SYNTHETIC
    labels = src.exported_labels(root) | src.TARGET_LABELS | {"le", "__name__"}
    alerts = []
    groups = doc.get("groups") if isinstance(doc, dict) else None
    report.check(isinstance(groups, list) and groups, "%s has no groups" % RULES)
    for g in groups or []:
        report.check(bool(g.get("name")), "a group without a name")
        for rule in g.get("rules", []):
            name = rule.get("alert") or rule.get("record") or "?"
            alerts.append(name)
            expr = rule.get("expr", "")
            report.check(bool(expr), "%s: no expr" % name)
            if "alert" in rule:
                report.check(rule.get("labels", {}).get("severity") in
                             ("critical", "warning", "info"), "%s: no severity label" % name)
                report.check(bool(rule.get("annotations", {}).get("summary")),
                             "%s: no summary annotation" % name)
            for m in sorted(src.promql_metric_names(expr)):
                report.check(m in metrics, "%s: metric %s is not exported by the daemons" % (name, m))
            for lb in sorted(src.promql_label_names(expr)):
                report.check(lb in labels, "%s: label %s is not exported" % (name, lb))
    report.check(len(alerts) == len(set(alerts)), "duplicate alert names: %s" % alerts)

    docs = src.read(os.path.join(root, "docs/metrics.md"))
    for a in alerts:
        report.check("`%s`" % a in docs, "docs/metrics.md does not describe alert %s" % a)
    copy = os.path.join(root, CHART_COPY)
    report.check(os.path.islink(copy) and os.path.realpath(copy) == os.path.realpath(path),
                 "%s must be a link to %s (the chart ships the same rules)" % (CHART_COPY, RULES))
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
