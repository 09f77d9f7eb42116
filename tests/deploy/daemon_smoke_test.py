#!/usr/bin/env python3
"""Starts the real daemons as the deploy artifacts do, and scrapes them.

A one-machine cluster on loopback ports: baq-coordinator (--listen,
--data_dir, --metrics_listen) and one CPU baq-worker (--coordinator,
--listen, --devices=cpu, --metrics_listen), with the flags the Dockerfiles
and the Helm chart render. Then:

  * both /metrics endpoints answer; every baq_* family in the scrape is one
    the sources build, with the same TYPE; the unlabelled ones are all there;
    every metric the Grafana dashboard queries is there, except labelled
    families that have seen no traffic yet (prometheus-cpp omits a family
    until its first observation) - so the static parse of the C++ that the
    dashboard test relies on is confirmed by the running binaries;
  * the worker registers: baq_coordinator_workers reaches 1;
  * baq-health-probe (the images' HEALTHCHECK) reports both SERVING;
  * SIGTERM stops the worker, then the coordinator, each well inside the
    grace periods the chart gives them.

Skips (exit 77) when the binaries are not built (coordinator/main.cc or
worker/main.cc not there yet). Only loopback addresses are used.

Usage: daemon_smoke_test.py --coordinator BIN --worker BIN [--probe BIN]
                            [--source-dir REPO]
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baq_sources as src  # noqa: E402

START_TIMEOUT_S = 30
REGISTER_TIMEOUT_S = 30
WORKER_STOP_TIMEOUT_S = 60  # The chart gives workers 900 s; idle ones need far less.
COORDINATOR_STOP_TIMEOUT_S = 25  # The chart gives the coordinator 30 s.


def arg(name):
    if name in sys.argv:
        i = sys.argv.index(name)
        if i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return ""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode("utf-8")


def parse_exposition(text):
    """({family: type}, {sample name: [(labels text, value)]})."""
    types, samples = {}, {}
    for line in text.splitlines():
        m = re.match(r"^# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            samples.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return types, samples


def wait_for(fn, timeout_s, proc_list):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        for p in proc_list:
            if p.poll() is not None:
                return None, "process exited with %s" % p.returncode
        try:
            v = fn()
            if v is not None:
                return v, None
        except Exception as e:  # Not up yet.
            last = e
        time.sleep(0.2)
    return None, "timed out (%s)" % last


def stop(proc, timeout_s):
    """SIGTERM; returns (seconds to exit, exit code) or (None, None) if it hung."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=timeout_s)
        return time.monotonic() - t0, rc
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, None


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def main():
    root = src.repo_root()
    coordinator_bin, worker_bin, probe_bin = arg("--coordinator"), arg("--worker"), arg("--probe")
    for name, path in (("baq-coordinator", coordinator_bin), ("baq-worker", worker_bin)):
        if not path or not os.access(path, os.X_OK):
            print("SKIP: %s is not built (%r); it is once its main.cc exists" % (name, path))
            return src.SKIP
    report = src.Report("daemon_smoke_test")
    cflags = src.accepted_flags(os.path.join(root, "coordinator/main.cc")) or set()
    wflags = src.accepted_flags(os.path.join(root, "worker/main.cc")) or set()
    for f in ("listen", "data_dir", "metrics_listen"):
        report.check(f in cflags, "coordinator/main.cc has no --%s, which deploy/ uses" % f)
    for f in ("coordinator", "listen", "devices", "metrics_listen"):
        report.check(f in wflags, "worker/main.cc has no --%s, which deploy/ uses" % f)
    if report.failures:
        return report.finish()

    tmp = tempfile.mkdtemp(prefix="baq-smoke-")
    cport, cmport, wport, wmport = free_port(), free_port(), free_port(), free_port()
    cargs = [coordinator_bin, "--listen=127.0.0.1:%d" % cport, "--data_dir=%s/data" % tmp,
             "--metrics_listen=127.0.0.1:%d" % cmport]
    wargs = [worker_bin, "--coordinator=127.0.0.1:%d" % cport, "--listen=127.0.0.1:%d" % wport,
             "--devices=cpu", "--metrics_listen=127.0.0.1:%d" % wmport]
    if "threads" in wflags:
        wargs.append("--threads=1")
    clog, wlog = os.path.join(tmp, "coordinator.log"), os.path.join(tmp, "worker.log")
    procs = []
    try:
        with open(clog, "w") as c_out:
            coordinator = subprocess.Popen(cargs, stdout=c_out, stderr=subprocess.STDOUT)
        procs.append(coordinator)
        text, err = wait_for(lambda: scrape(cmport), START_TIMEOUT_S, [coordinator])
        if not report.check(text is not None, "coordinator /metrics: %s\n%s" % (err, tail(clog))):
            return report.finish()
        with open(wlog, "w") as w_out:
            worker = subprocess.Popen(wargs, stdout=w_out, stderr=subprocess.STDOUT)
        procs.append(worker)
        wtext, err = wait_for(lambda: scrape(wmport), START_TIMEOUT_S, [coordinator, worker])
        if not report.check(wtext is not None, "worker /metrics: %s\n%s" % (err, tail(wlog))):
            return report.finish()

        def registered():
            _, s = parse_exposition(scrape(cmport))
            vals = [v for _, v in s.get("baq_coordinator_workers", [])]
            return vals if vals and vals[0] >= 1 else None
        vals, err = wait_for(registered, REGISTER_TIMEOUT_S, [coordinator, worker])
        report.check(vals is not None, "the worker never registered (baq_coordinator_workers): "
                     "%s\n--- coordinator\n%s--- worker\n%s" % (err, tail(clog), tail(wlog)))

        ctypes, csamples = parse_exposition(scrape(cmport))
        wtypes, wsamples = parse_exposition(scrape(wmport))
        types = dict(ctypes, **wtypes)
        scraped = set(csamples) | set(wsamples) | set(types)
        source = src.exported_metrics(root)
        for name, kind in sorted(types.items()):
            if name.startswith("baq_"):
                report.check(source.get(name) == kind, "%s: scraped TYPE %s, the sources say %s"
                             % (name, kind, source.get(name)))
        for name in sorted(src.unlabelled_metrics(root)):
            report.check(name in types, "%s is registered without labels but not in the scrape"
                         % name)
        unseen = sorted(set(source) - set(types))
        if unseen:
            report.note("labelled families not observed yet (no traffic): " + ", ".join(unseen))
        dash = json.loads(src.read(os.path.join(root, "deploy/grafana/baq-dashboard.json")))
        for p in dash["panels"]:
            for t in p.get("targets", []):
                for name in src.promql_metric_names(t.get("expr", "")):
                    if name in src.PROMETHEUS_SYNTHETIC:
                        continue
                    # prometheus-cpp leaves a labelled family out of the scrape until
                    # its first observation; those are listed as unseen above.
                    family = re.sub(r"_(bucket|sum|count)$", "", name)
                    if family in unseen:
                        continue
                    report.check(name in scraped or family in types,
                                 "dashboard panel %r: %s is not in the scrape" % (p["title"], name))
        extra = sorted(n for n in types if not n.startswith("baq_"))
        if extra:
            report.note("other families in the scrape: " + ", ".join(extra))

        if probe_bin and os.access(probe_bin, os.X_OK):
            for what, port in (("coordinator", cport), ("worker", wport)):
                r = subprocess.run([probe_bin, "--addr=127.0.0.1:%d" % port, "--timeout=5s"],
                                   capture_output=True, text=True)
                report.check(r.returncode == 0, "baq-health-probe %s: rc %d %s%s"
                             % (what, r.returncode, r.stdout, r.stderr))
        else:
            report.note("baq-health-probe not built; gRPC health not probed")

        secs, rc = stop(worker, WORKER_STOP_TIMEOUT_S)
        report.check(secs is not None, "worker ignored SIGTERM for %d s\n%s"
                     % (WORKER_STOP_TIMEOUT_S, tail(wlog)))
        if secs is not None:
            report.note("worker stopped %.1f s after SIGTERM, exit %s" % (secs, rc))
            report.check(rc == 0, "worker exited %s on SIGTERM\n%s" % (rc, tail(wlog)))
        secs, rc = stop(coordinator, COORDINATOR_STOP_TIMEOUT_S)
        report.check(secs is not None, "coordinator ignored SIGTERM for %d s\n%s"
                     % (COORDINATOR_STOP_TIMEOUT_S, tail(clog)))
        if secs is not None:
            report.note("coordinator stopped %.1f s after SIGTERM, exit %s" % (secs, rc))
            report.check(rc == 0, "coordinator exited %s on SIGTERM\n%s" % (rc, tail(clog)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
