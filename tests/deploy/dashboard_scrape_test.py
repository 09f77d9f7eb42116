#!/usr/bin/env python3
"""Every metric and panel of the Grafana dashboard, against real daemons.

A coordinator and one CPU worker on loopback run a small sequential job
(examples/opt-fixture). Meanwhile:

  1. both /metrics endpoints are scraped every 0.2 s, and every metric name
     the dashboard's queries use must appear in some scrape (per-job series
     appear only while a job runs: the checkpoint bytes exist only during
     it). Exceptions, each with its reason: GPU_ONLY (a CPU worker exports no
     GPU series) and PENDING (series the job runner does not feed yet; when
     one shows up the test says to drop it from the list);
  2. with a Prometheus server (Debian package `prometheus`) scraping both
     daemons every second, tools/deploy/check_dashboard_queries.py runs every
     panel's query over the job's time range and each must return data,
     except the panels of the names above and of errors a healthy run does
     not make (ALLOWED_EMPTY_PANELS). Without Prometheus this part is skipped
     (noted), the scrape checks still run.

Also reports the daemons' peak resident memory (baq_process_peak_resident_memory_bytes).

Usage: dashboard_scrape_test.py --coordinator BIN --worker BIN --cli BIN
                                [--source-dir REPO] [--prometheus BIN] [--keep]
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import baq_sources as src  # noqa: E402

# Exported only by workers serving cuda devices with NVML (worker/service/gpu_collector.h);
# tests/worker/service/gpu_collector_test.cc covers them with a fake NVML.
GPU_ONLY = {"baq_worker_gpu_memory_used_bytes", "baq_worker_gpu_memory_total_bytes",
            "baq_worker_gpu_utilization_ratio", "baq_worker_nvml_up"}
# Fed by the job runner's CoordinatorMetrics::AddWireBytes calls, which the
# distributed data path (issue 16) adds.
PENDING = {"baq_coordinator_job_wire_bytes_total"}
# Panels that a healthy CPU run leaves empty, and why.
ALLOWED_EMPTY_PANELS = {
    "GPU memory used": "CPU worker", "GPU utilization": "CPU worker",
    "GPU metrics available": "CPU worker",
    "Wire bytes per block": "pending AddWireBytes", "Wire throughput": "pending AddWireBytes",
    "Worker RPC errors": "no worker RPC fails in a healthy run",
}
START_TIMEOUT_S = 30
JOB_TIMEOUT_S = 180
CALIB_BYTES = 64 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout_s=5):
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return r.read().decode("utf-8")


def wait_for(what, fn, timeout_s, procs):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError("%s: a process exited (%s)" % (what, p.returncode))
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # Not up yet.
            last = e
        time.sleep(0.2)
    raise RuntimeError("%s: timed out (%s)" % (what, last))


def metric_names(text):
    return {m.group(1) for m in re.finditer(r"^([A-Za-z_:][\w:]*)(?:\{|\s)", text, re.M)}


def samples(text, name):
    return [float(m.group(1)) for m in
            re.finditer(r"^%s(?:\{[^}]*\})?\s+(\S+)" % re.escape(name), text, re.M)]


class Scraper(threading.Thread):
    """Scrapes the endpoints until stopped; keeps every name seen and the last texts."""

    def __init__(self, urls):
        super().__init__(daemon=True)
        self.urls, self.names, self.last = urls, set(), {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for u in self.urls:
                try:
                    text = http_get(u, 2)
                except OSError:
                    continue
                self.names |= metric_names(text)
                self.last[u] = text
            time.sleep(0.2)


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coordinator")
    ap.add_argument("--worker")
    ap.add_argument("--cli")
    ap.add_argument("--source-dir", default=os.path.join(HERE, "..", ".."))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    root = os.path.abspath(args.source_dir)
    for name, path in (("baq-coordinator", args.coordinator), ("baq-worker", args.worker),
                       ("baq", args.cli)):
        if not path or not os.access(path, os.X_OK):
            print("SKIP: %s is not built (%r)" % (name, path))
            return src.SKIP
    sys.path.insert(0, os.path.join(root, "tools", "deploy"))
    import check_dashboard_queries as cdq  # noqa: E402

    report = src.Report("dashboard_scrape_test")
    with open(os.path.join(root, "deploy/grafana/baq-dashboard.json"), encoding="utf-8") as f:
        dash = json.load(f)
    tmp = tempfile.mkdtemp(prefix="baq-dash-")
    procs, logs = [], {}

    def start(name, argv):
        logs[name] = os.path.join(tmp, name + ".log")
        with open(logs[name], "w") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        cport, cmport, wport, wmport = (free_port() for _ in range(4))
        coordinator = start("coordinator", [
            args.coordinator, "--listen=127.0.0.1:%d" % cport, "--data_dir=%s/data" % tmp,
            "--metrics_listen=127.0.0.1:%d" % cmport])
        worker = start("worker", [
            args.worker, "--coordinator=127.0.0.1:%d" % cport, "--listen=127.0.0.1:%d" % wport,
            "--devices=cpu", "--threads=1", "--metrics_listen=127.0.0.1:%d" % wmport])
        urls = ["http://127.0.0.1:%d/metrics" % p for p in (cmport, wmport)]
        wait_for("coordinator sees the worker", lambda: any(
            v >= 1 for v in samples(http_get(urls[0]), "baq_coordinator_workers")),
            START_TIMEOUT_S, [coordinator, worker])

        prom_port = None
        if os.access(args.prometheus, os.X_OK):
            prom_port = free_port()
            cfg = os.path.join(tmp, "prometheus.yml")
            with open(cfg, "w") as f:
                # The namespace label stands in for the one the Prometheus Operator adds
                # (the dashboard's $namespace variable reads it).
                f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                        "scrape_configs:\n")
                for job, port in (("baq-coordinator", cmport), ("baq-worker", wmport)):
                    f.write("  - job_name: %s\n    static_configs:\n"
                            "      - targets: ['127.0.0.1:%d']\n"
                            "        labels: {namespace: baq-test}\n" % (job, port))
            prom = start("prometheus", [
                args.prometheus, "--config.file=" + cfg,
                "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                "--web.listen-address=127.0.0.1:%d" % prom_port, "--log.level=warn"])
            base = "http://127.0.0.1:%d" % prom_port
            wait_for("Prometheus scrapes both daemons", lambda: json.loads(http_get(
                base + "/api/v1/query?query=sum(up)"))["data"]["result"][0]["value"][1] == "2",
                START_TIMEOUT_S, [prom])
        else:
            report.note("Prometheus not installed (Debian package prometheus): panel queries "
                        "not evaluated")

        scraper = Scraper(urls)
        scraper.start()
        t0 = time.time()
        # A failed coordinator RPC (Get of an unknown job: NOT_FOUND) for the
        # "Coordinator RPC errors" panel.
        subprocess.run([args.cli, "status", "--coordinator=127.0.0.1:%d" % cport, "no-such-job"],
                       capture_output=True, timeout=START_TIMEOUT_S)
        calib = os.path.join(tmp, "calib.txt")
        with open(os.path.join(root, "examples/calibration.txt"), "rb") as fin, \
                open(calib, "wb") as fout:
            fout.write(fin.read(CALIB_BYTES))
        # Six blocks of a few seconds each on one CPU thread: the job (and its
        # checkpoint) lasts several scrapes.
        job = subprocess.run(
            [args.cli, "submit", "--coordinator=127.0.0.1:%d" % cport, "--wait",
             "--request_id=dash-1", "--out=" + os.path.join(tmp, "out"),
             "--model=" + os.path.join(root, "examples/opt-fixture"), "--calib=" + calib,
             "--bits=3", "--method=baq", "--mode=sequential", "--nsamples=8", "--seqlen=64",
             "--format=fake-quant"], capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
        report.check(job.returncode == 0, "baq submit --wait: rc %d\n%s%s\n--- coordinator\n%s"
                     % (job.returncode, job.stdout, job.stderr, tail(logs["coordinator"])))
        job_s = time.time() - t0
        m = re.search(r"submitted job (\S+)", job.stdout)
        job_id = m.group(1) if m else None
        time.sleep(1.5)  # A last scrape of the final state.
        scraper.stop.set()
        scraper.join()

        # 1. Every dashboard metric name in a real scrape.
        used = set()
        for _, expr, _ in cdq.dashboard_queries(dash):
            used |= src.promql_metric_names(expr)
        used -= src.PROMETHEUS_SYNTHETIC
        for name in sorted(used):
            if name in GPU_ONLY:
                report.check(name not in scraper.names, "%s in a CPU worker's scrape" % name)
                continue
            if name in PENDING:
                if name in scraper.names:
                    report.note("%s is now exported: drop it from PENDING here" % name)
                continue
            report.check(name in scraper.names, "dashboard metric %s is in no scrape of the "
                         "coordinator or the worker during a job" % name)
        report.note("job %s ran %.1f s; %d dashboard metrics, %d names scraped"
                    % (job_id, job_s, len(used), len(scraper.names)))
        for u, what in zip(urls, ("coordinator", "worker")):
            peak = samples(scraper.last.get(u, ""), "baq_process_peak_resident_memory_bytes")
            report.note("%s peak RSS %.1f MB" % (what, peak[0] / 1e6 if peak else -1))

        # 2. Every panel's query over the job, in Prometheus.
        if prom_port is not None:
            end = time.time() + 1
            results = cdq.check(dash, base, t0 - 5, end, step="1s", rate_interval="5s",
                                variables={"namespace": "baq-test"})
            for r in results:
                title = re.match(r"panel '(.*)' \[", r["where"])
                allowed = ALLOWED_EMPTY_PANELS.get(title.group(1)) if title else None
                if r["status"] == "EMPTY" and allowed:
                    report.note("empty as expected (%s): %s" % (allowed, r["where"]))
                    continue
                report.check(r["status"] == "OK", "%s: %s %s\n    %s"
                             % (r["where"], r["status"], r["error"] or "", r["expr"]))
            report.note("Prometheus: %d queries, %d returned data"
                        % (len(results), sum(r["status"] == "OK" for r in results)))
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        report.check(False, "%s\n--- coordinator\n%s--- worker\n%s" % (
            e, tail(logs.get("coordinator", "")), tail(logs.get("worker", ""))))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        if args.keep:
            report.note("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
