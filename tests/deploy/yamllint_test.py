#!/usr/bin/env python3
"""yamllint on deploy/'s static YAML with deploy/.yamllint.

Lints Chart.yaml, values.yaml and .yamllint itself (and any other *.yaml
under deploy/ except Helm templates, which are Go templates until rendered
and are checked by helm_chart_test.py). Skips (exit 77) when yamllint is not
installed; .ci/install-deps installs it.

Usage: yamllint_test.py [--source-dir REPO]
"""

import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baq_sources as src  # noqa: E402

MUST_LINT = ["deploy/.yamllint", "deploy/helm/baq/Chart.yaml", "deploy/helm/baq/values.yaml"]


def main():
    root = src.repo_root()
    exe = shutil.which("yamllint")
    if not exe:
        print("SKIP: yamllint is not installed (apt-get install yamllint; .ci/install-deps does)")
        return src.SKIP
    report = src.Report("yamllint_test")
    for path in MUST_LINT:
        report.check(os.path.exists(os.path.join(root, path)), "%s is missing" % path)
    # -s: warnings fail too. Explicit files are linted even if ignored.
    cmd = [exe, "-s", "-f", "parsable", "-c", "deploy/.yamllint", "deploy/"] + MUST_LINT
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    report.check(r.returncode == 0, "yamllint:\n" + r.stdout + r.stderr)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
