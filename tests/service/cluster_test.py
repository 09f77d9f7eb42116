#!/usr/bin/env python3
"""Issue 6's "done when": a real cluster of processes on 127.0.0.1.

One baq-coordinator and three CPU baq-workers (--threads=1), each its own
process, on loopback ports. Then:

  1. `baq quantize` (local mode) of the OPT fixture: BAQ, 3 bits, sequential,
     a tiny calibration (--nsamples=4 --seqlen=64) so it stays fast on 2 cores
     (it runs on one core while the cluster job below uses the other);
  2. `baq submit --wait` of the same job to the cluster; while it runs,
     `baq watch JOB` follows it in a second process: both stream progress
     lines to the terminal event;
  3. the Python client example (docs/examples/submit_and_watch.py, grpcio +
     stubs that this test generates with protoc into its temp dir) submits a
     second job with a request_id (RTN, 3 bits: cheap, as BAQ's column-loss
     measurement dominates the CPU time), follows Watch to the end, and
     resubmits with the same request_id (idempotency: same job, no new run);
  4. the cluster's output is compared with the local one: every file byte for byte,
     except quant_report.json, whose per-layer "seconds" (wall times) differ
     run to run: it is compared as JSON with every "*seconds" key removed, all
     other values exactly; the achieved average bits is within 1e-3 of 3;
  5. a real Prometheus server (/usr/bin/prometheus, Debian package
     `prometheus`) on loopback scrapes all four /metrics endpoints every
     second; the test queries its HTTP API (/api/v1/query) for the jobs by
     state, the latest job's progress and achieved/target bits, the blocks
     every worker measured and quantized, bytes streamed, RPCs by code and
     the targets' `up`;
  6. a GPTQ job in parallel mode with two targets (--bits=3,4) keeps its
     measurement under a name (--measurement=cluster-m, in the coordinator's
     data dir); a later 4-bit job naming it reuses it (the coordinator logs
     so) and writes the same bytes as the first job's bits-4 output.

The coordinator runs with --min_workers=3, so each job is split over the three
workers (6 blocks: 2 per worker, activations handed worker to worker).

Skips (exit 77) when a baq binary or the fixture is missing. When only
Prometheus or the Python gRPC pieces are missing, it runs everything else and
exits 77 if that passed (it says which part did not run), 1 if anything failed.
Every child process dies with the test (PR_SET_PDEATHSIG) and is killed on any
exit; the temp dir is removed unless --keep is given.

Usage: cluster_test.py --coordinator BIN --worker BIN --cli BIN
                       --source-dir REPO [--protoc BIN] [--prometheus BIN]
                       [--python-grpc PYTHON] [--keep]
"""

import argparse
import ctypes
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.

SKIP = 77
TARGET_BITS = 3.0
# Scaled by --timeout-scale (a loaded machine); CTest's TIMEOUT is 300 s.
TOTAL_TIMEOUT_S = 290
START_TIMEOUT_S = 30
JOB_TIMEOUT_S = 240
PROMETHEUS_TIMEOUT_S = 30
CALIB_BYTES = 64 * 1024  # Tokenizing all of the corpus would dominate the test.


class Failure(Exception):
    """A check that makes the rest of the test meaningless."""


class Report:
    def __init__(self):
        self.failures, self.notes, self.checks, self.skipped = [], [], 0, []

    def check(self, ok, message):
        self.checks += 1
        if not ok:
            self.failures.append(message)
            print("FAIL: " + message, flush=True)
        return ok

    def require(self, ok, message):
        if not self.check(ok, message):
            raise Failure(message)

    def note(self, message):
        self.notes.append(message)
        print("note: " + message, flush=True)

    def skip(self, what):
        self.skipped.append(what)
        print("SKIPPED PART: " + what, flush=True)

    def finish(self):
        passed = self.checks - len(self.failures)
        print("cluster_test: %d passed, %d failed" % (passed, len(self.failures)))
        if self.failures:
            return 1
        if self.skipped:
            print("cluster_test: not run: " + "; ".join(self.skipped))
            return SKIP
        return 0


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when this test process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Children:
    """Every process the test starts; kill_all() on any exit."""

    def __init__(self):
        self.procs = []

    def start(self, args, log_path=None, limits=None, **kw):
        """`limits`, if given, runs in the child before exec (e.g. resource.setrlimit)."""
        out = open(log_path, "w") if log_path else subprocess.PIPE

        def preexec():
            die_with_parent()
            if limits is not None:
                limits()
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=preexec, **kw)
        if log_path:
            out.close()
        self.procs.append(p)
        return p

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout_s=5):
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return r.read().decode("utf-8")


def gauge(text, name, labels=""):
    """Value of sample `name{labels}` in a Prometheus text scrape, or None."""
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) == name and (m.group(2) or "") == labels:
            return float(m.group(3))
    return None


def wait_for(what, fn, timeout_s, procs=()):
    """Polls fn() until it returns a value that is not None; Failure on timeout."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise Failure("%s: process %s exited with %s" % (what, p.args[0], p.returncode))
        try:
            v = fn()
            if v is not None:
                return v
        except Exception as e:  # Not up yet.
            last = e
        time.sleep(0.2)
    raise Failure("%s: timed out after %d s (%s)" % (what, timeout_s, last))


def tail(path, n=25):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --- Output comparison -----------------------------------------------------

def without_times(value):
    """The JSON value with every key ending in "seconds" (wall times) removed."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if not k.endswith("seconds")}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def tree(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            path = os.path.join(dirpath, n)
            files[os.path.relpath(path, root)] = path
    return files


def compare_outputs(report, what, local_dir, other_dir, target_bits=TARGET_BITS):
    """Every file byte-identical; quant_report.json equal modulo wall times."""
    a, b = tree(local_dir), tree(other_dir)
    report.check(sorted(a) == sorted(b), "%s: files differ from local mode: %s vs %s"
                 % (what, sorted(a), sorted(b)))
    reports = 0
    for rel in sorted(set(a) & set(b)):
        with open(a[rel], "rb") as fa, open(b[rel], "rb") as fb:
            da, db = fa.read(), fb.read()
        if os.path.basename(rel) == "quant_report.json":
            reports += 1
            ja, jb = json.loads(da), json.loads(db)
            report.check(without_times(ja) == without_times(jb),
                         "%s: %s differs from local mode beyond wall times" % (what, rel))
            bits = jb.get("achieved_bits", -1)
            report.check(abs(bits - target_bits) <= 1e-3, "%s: %s achieved_bits %r, target %g"
                         % (what, rel, bits, target_bits))
        else:
            report.check(da == db, "%s: %s is not byte-identical to local mode (%d vs %d bytes)"
                         % (what, rel, len(da), len(db)))
    report.check(reports > 0, "%s: no quant_report.json in %s" % (what, other_dir))
    return len(a)


# --- Progress lines --------------------------------------------------------

# tools/cli/progress_bar.cc, one line per event on stderr with --progress when not a terminal:
# "[#####-----]  42.0% quantizing block 3/6      3.000 bits  elapsed 2s  eta 3s"
PROGRESS = re.compile(r"^\[[#-]+\]\s+(\d+\.\d)% (\w+)(?: block (\d+)/(\d+))?")


def check_progress(report, what, text, job_id, num_blocks):
    events = [PROGRESS.match(l) for l in text.splitlines()]
    events = [(float(m.group(1)), m.group(2), m.group(3), m.group(4)) for m in events if m]
    if not report.check(len(events) >= 2, "%s: %d progress lines:\n%s"
                        % (what, len(events), text)):
        return
    percents = [e[0] for e in events]
    report.check(percents == sorted(percents), "%s: progress goes backwards: %s"
                 % (what, percents))
    report.check(events[0][0] < 100.0, "%s: the first event is already 100%%: %s"
                 % (what, events[0]))
    report.check(events[-1][:2] == (100.0, "done"), "%s: the last event is %s, not 100%% done"
                 % (what, events[-1]))
    stages = {e[1] for e in events}
    report.check(stages & {"measuring", "quantizing"}, "%s: no block stage among %s"
                 % (what, sorted(stages)))
    totals = {e[3] for e in events if e[3]}
    report.check(totals == {str(num_blocks)}, "%s: blocks out of %s, the model has %d"
                 % (what, totals, num_blocks))
    report.check(re.search(r"job %s succeeded: 3\.0000 bits \(target 3\)" % re.escape(job_id),
                           text) is not None,
                 "%s: no 'job %s succeeded: 3.0000 bits' line:\n%s" % (what, job_id, text))
    report.note("%s: %d progress lines, stages %s" % (what, len(events), sorted(stages)))


# --- The Python client -----------------------------------------------------

def find_grpc_python(preferred):
    """An interpreter that can import grpc and google.protobuf, or None."""
    for py in [preferred, sys.executable, "/usr/bin/python3"]:
        if not py or not os.access(py, os.X_OK):
            continue
        r = subprocess.run([py, "-c", "import grpc, google.protobuf"], capture_output=True)
        if r.returncode == 0:
            return py
    return None


def generate_stubs(protoc, proto_dir, out_dir):
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    if not protoc or not os.access(protoc, os.X_OK) or not os.access(plugin, os.X_OK):
        return "protoc (%r) or grpc_python_plugin (%r) missing" % (protoc, plugin)
    os.makedirs(out_dir)
    protos = sorted(os.path.join(proto_dir, "baq/v1", f)
                    for f in os.listdir(os.path.join(proto_dir, "baq/v1")) if f.endswith(".proto"))
    r = subprocess.run([protoc, "-I", proto_dir, "--python_out=" + out_dir,
                        "--grpc_python_out=" + out_dir,
                        "--plugin=protoc-gen-grpc_python=" + plugin] + protos,
                       capture_output=True, text=True)
    return None if r.returncode == 0 else "protoc failed: " + r.stderr


# --- Prometheus ------------------------------------------------------------

def clean_up(children, report, logs, tmp, keep):
    """Kills every child, prints the logs' tails when something failed, and removes the temp
    dir unless --keep or $BAQ_KEEP_TEST_DIR."""
    children.kill_all()
    if report.failures:
        for name, path in sorted(logs.items()):
            print("--- %s (%s)\n%s" % (name, path, tail(path)))
    if keep or os.environ.get("BAQ_KEEP_TEST_DIR"):
        print("kept " + tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def start_cluster(children, coordinator_bin, worker_bin, tmp, logs, timeout_s, workers=3,
                  coordinator_limits=None):
    """One baq-coordinator (--min_workers=N, --data_dir in tmp; `coordinator_limits` as
    Children.start's `limits`) and N CPU baq-workers (--threads=1), each process with its
    /metrics on a free loopback port and its log in `logs`. Returns (coordinator port,
    coordinator metrics port, worker metrics ports, the processes, coordinator first) once every
    worker registered and serves /metrics."""
    cport, cmport = free_port(), free_port()
    wmports = [free_port() for _ in range(workers)]
    logs["coordinator"] = os.path.join(tmp, "coordinator.log")
    coordinator = children.start(
        [coordinator_bin, "--listen=127.0.0.1:%d" % cport,
         "--data_dir=" + os.path.join(tmp, "data"),
         "--metrics_listen=127.0.0.1:%d" % cmport, "--min_workers=%d" % workers],
        logs["coordinator"], limits=coordinator_limits)
    wait_for("coordinator /metrics", lambda: http_get("http://127.0.0.1:%d/metrics" % cmport),
             timeout_s, [coordinator])
    daemons = [coordinator]
    for i, mport in enumerate(wmports):
        logs["worker%d" % i] = os.path.join(tmp, "worker%d.log" % i)
        daemons.append(children.start(
            [worker_bin, "--coordinator=127.0.0.1:%d" % cport, "--listen=127.0.0.1:0",
             "--devices=cpu", "--threads=1", "--metrics_listen=127.0.0.1:%d" % mport],
            logs["worker%d" % i]))

    def all_registered():
        v = gauge(http_get("http://127.0.0.1:%d/metrics" % cmport), "baq_coordinator_workers")
        return v if v == workers else None
    wait_for("%d workers registered (baq_coordinator_workers)" % workers, all_registered,
             timeout_s, daemons)
    for mport in wmports:
        wait_for("worker /metrics", lambda: http_get("http://127.0.0.1:%d/metrics" % mport),
                 timeout_s, daemons)
    return cport, cmport, wmports, daemons


def calibration_copy(src, tmp):
    """The first CALIB_BYTES of `src` as tmp/calib.txt (its path)."""
    calib = os.path.join(tmp, "calib.txt")
    with open(src, "rb") as fin, open(calib, "wb") as fout:
        fout.write(fin.read(CALIB_BYTES))
    return calib


def start_local(children, cli, tmp, logs, job_flags):
    """`baq quantize --threads=1` of the job into tmp/out-local, in the background (it takes
    the other core while the cluster runs); its log is logs["local"]. Returns (process, out)."""
    out = os.path.join(tmp, "out-local")
    logs["local"] = os.path.join(tmp, "local.log")
    return children.start([cli, "quantize", "--threads=1", "--out=" + out] + job_flags,
                          logs["local"]), out


def parse_cluster_args():
    """--coordinator, --worker, --cli (the binaries), --source-dir and --keep (the temp dir).
    Returns (args, the repository root)."""
    ap = argparse.ArgumentParser()
    for a in ("--coordinator", "--worker", "--cli", "--source-dir"):
        ap.add_argument(a, default="")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    return args, os.path.abspath(args.source_dir or
                                 os.path.join(os.path.dirname(__file__), "../.."))


def unbuilt(args):
    """Why the test cannot run: the first of args.coordinator, args.worker, args.cli that is not
    an executable, or None."""
    for name, path in (("baq-coordinator", args.coordinator), ("baq-worker", args.worker),
                       ("baq", args.cli)):
        if not path or not os.access(path, os.X_OK):
            return "%s is not built (%r)" % (name, path)
    return None


def stop_daemons(report, daemons, timeout_s):
    """Orderly shutdown (docs/service.md): SIGTERM to the workers, then the coordinator
    (daemons[0]); each must exit 0."""
    for p in daemons[1:] + daemons[:1]:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
        report.check(rc == 0, "%s exited %s on SIGTERM" % (p.args[0], rc))


def run_test(prefix, total_timeout_s, keep, body):
    """The frame of a test: a Report, the Children, a temp dir named `prefix`..., a SIGALRM after
    total_timeout_s that fails the test and a SIGTERM (CTest's timeout) that still cleans up.
    Calls body(report, children, tmp, logs); a Failure or a subprocess timeout it raises becomes
    a failed check. Kills the children, removes tmp unless `keep`, returns report.finish()."""
    report = Report()
    children = Children()
    tmp = tempfile.mkdtemp(prefix=prefix)
    t_start = time.monotonic()

    def on_alarm(signum, frame):
        raise Failure("the whole test ran past %d s" % total_timeout_s)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(1))  # CTest timeout: run finally.
    signal.alarm(total_timeout_s)
    logs = {}
    try:
        body(report, children, tmp, logs)
    except Failure as e:
        if str(e) not in report.failures:  # require() has recorded its own.
            report.check(False, str(e))
    except subprocess.TimeoutExpired as e:
        report.check(False, "%s ran past %s s" % (e.cmd[:2], e.timeout))
    finally:
        signal.alarm(0)
        clean_up(children, report, logs, tmp, keep)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    report.note("total %.1f s, %.1f s CPU in the processes it ran"
                % (time.monotonic() - t_start, cpu.ru_utime + cpu.ru_stime))
    return report.finish()


def prometheus_config(path, coordinator_metrics, worker_metrics):
    targets = lambda ports: ", ".join("'127.0.0.1:%d'" % p for p in ports)  # noqa: E731
    with open(path, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n"
                "  - job_name: baq-coordinator\n"
                "    static_configs:\n      - targets: [%s]\n"
                "  - job_name: baq-worker\n"
                "    static_configs:\n      - targets: [%s]\n"
                % (targets([coordinator_metrics]), targets(worker_metrics)))


def prom_query(port, expr):
    """Instant query; {labels-as-tuple: value} of the vector result."""
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": expr}))
    body = json.loads(http_get(url))
    if body.get("status") != "success":
        raise RuntimeError("%s: %s" % (expr, body))
    out = {}
    for r in body["data"]["result"]:
        out[tuple(sorted(r["metric"].items()))] = float(r["value"][1])
    return out


def single(result):
    return next(iter(result.values())) if len(result) == 1 else None


def check_prometheus(report, port, jobs, num_blocks):
    """Polls until Prometheus has scraped the finished state, then checks it."""
    blocks = jobs * num_blocks
    expectations = [
        # (PromQL, predicate on the single value, what it shows)
        ('baq_coordinator_jobs{state="succeeded"}', lambda v: v == jobs, "jobs succeeded"),
        ('baq_coordinator_jobs{state="failed"}', lambda v: v == 0, "no job failed"),
        ('baq_coordinator_jobs{state="running"}', lambda v: v == 0, "no job running"),
        ("max_over_time(baq_coordinator_jobs{state=\"running\"}[10m])", lambda v: v == 1,
         "a job was seen running"),
        ("baq_coordinator_jobs_submitted_total", lambda v: v == jobs, "jobs submitted"),
        ("baq_coordinator_job_seconds_count", lambda v: v == jobs, "job durations observed"),
        ("baq_coordinator_job_progress_percent", lambda v: v == 100, "latest job at 100%"),
        ("max_over_time(baq_coordinator_job_progress_percent[10m]) - "
         "min_over_time(baq_coordinator_job_progress_percent[10m])", lambda v: v > 0,
         "progress moved while scraped"),
        ("baq_coordinator_achieved_bits", lambda v: abs(v - TARGET_BITS) <= 1e-3,
         "achieved bits"),
        ("baq_coordinator_target_bits", lambda v: v == TARGET_BITS, "target bits"),
        ("baq_coordinator_workers", lambda v: v == 3, "live worker leases"),
        ('sum(baq_coordinator_rpcs_total{method="Heartbeat",code="OK"})', lambda v: v > 0,
         "heartbeats"),
        ("sum(baq_worker_blocks_measured_total)", lambda v: v == blocks, "blocks measured"),
        ("sum(baq_worker_blocks_quantized_total)", lambda v: v == blocks, "blocks quantized"),
        # The resident data path: 4 windows make one calibration chunk, so one shard, held
        # and quantized by one worker; nothing streams to the workers (no activations, and no
        # weights of layers quantized elsewhere).
        ("count(baq_worker_blocks_quantized_total > 0)", lambda v: v == 1,
         "workers that quantized blocks"),
        ('sum(baq_worker_stream_bytes_total{direction="sent"})', lambda v: v > 0,
         "bytes sent by workers"),
        ('sum(baq_worker_stream_bytes_total{direction="received"})', lambda v: v == 0,
         "no activation bytes received by workers"),
        ('sum(baq_worker_block_seconds_count{op="quantize"})', lambda v: v == blocks,
         "block time histogram"),
        ('sum(baq_worker_rpcs_total{method="Quantize",code="OK"})', lambda v: v == blocks,
         "Quantize RPCs OK"),
        ("sum(baq_worker_engines)", lambda v: v == 0, "engines freed after the jobs"),
        ('sum(up{job="baq-worker"})', lambda v: v == 3, "worker targets up"),
        ('sum(up{job="baq-coordinator"})', lambda v: v == 1, "coordinator target up"),
    ]
    deadline = time.monotonic() + PROMETHEUS_TIMEOUT_S
    values = {}
    while True:
        pending = []
        for expr, ok, what in expectations:
            try:
                v = single(prom_query(port, expr))
            except Exception as e:  # Prometheus busy: try again.
                v = "error %s" % e
            values[expr] = v
            if not (isinstance(v, float) and ok(v)):
                pending.append((expr, what))
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    for expr, ok, what in expectations:
        v = values[expr]
        report.check(isinstance(v, float) and ok(v), "Prometheus: %s: %s = %r" % (what, expr, v))
    report.note("Prometheus saw: " + ", ".join(
        "%s=%s" % (e, values[e]) for e in ("baq_coordinator_achieved_bits",
                                           "sum(baq_worker_blocks_quantized_total)",
                                           'sum(baq_worker_stream_bytes_total{direction="sent"})')))
    per_worker = prom_query(port, "baq_worker_blocks_quantized_total")
    report.note("blocks quantized per worker: %s" % sorted(per_worker.values()))


# --- The test --------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    for a in ("--coordinator", "--worker", "--cli", "--source-dir", "--protoc"):
        ap.add_argument(a, default="")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--python-grpc", default="", help="python with grpcio for the client")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--timeout-scale", type=float, default=1.0,
                    help="multiplies every timeout (a loaded machine)")
    args = ap.parse_args()
    global TOTAL_TIMEOUT_S, START_TIMEOUT_S, JOB_TIMEOUT_S, PROMETHEUS_TIMEOUT_S
    TOTAL_TIMEOUT_S, START_TIMEOUT_S, JOB_TIMEOUT_S, PROMETHEUS_TIMEOUT_S = (
        int(t * args.timeout_scale) for t in (TOTAL_TIMEOUT_S, START_TIMEOUT_S, JOB_TIMEOUT_S,
                                              PROMETHEUS_TIMEOUT_S))
    root = os.path.abspath(args.source_dir or os.path.join(os.path.dirname(__file__), "../.."))
    model = os.path.join(root, "examples/opt-fixture")
    calib_src = os.path.join(root, "examples/calibration.txt")
    if unbuilt(args):
        print("SKIP: " + unbuilt(args))
        return SKIP
    if not os.path.isfile(os.path.join(model, "model.safetensors")):
        print("SKIP: no OPT fixture in %s" % model)
        return SKIP
    with open(os.path.join(model, "config.json")) as f:
        num_blocks = int(json.load(f)["num_hidden_layers"])

    def scenario(report, children, tmp, logs):
        calib = calibration_copy(calib_src, tmp)
        job_flags = ["--model=" + model, "--calib=" + calib, "--bits=3", "--method=baq",
                     "--mode=sequential", "--nsamples=4", "--seqlen=64",
                     "--format=fake-quant,packed"]

        # 1. Local mode (coordinator and worker code in one process), in the
        # background: a sequential job keeps one worker busy at a time, so the
        # local run takes the other core.
        t_local = time.monotonic()
        local, local_out = start_local(children, args.cli, tmp, logs, job_flags)

        # 2. The cluster: a coordinator and three workers, each a process.
        cport, cmport, wmports, daemons = start_cluster(children, args.coordinator, args.worker,
                                                        tmp, logs, START_TIMEOUT_S)

        # Prometheus scrapes from before the first job, so it sees it run.
        prom_port = None
        if os.access(args.prometheus, os.X_OK):
            prom_port = free_port()
            cfg = os.path.join(tmp, "prometheus.yml")
            prometheus_config(cfg, cmport, wmports)
            logs["prometheus"] = os.path.join(tmp, "prometheus.log")
            prom = children.start(
                [args.prometheus, "--config.file=" + cfg,
                 "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                 "--web.listen-address=127.0.0.1:%d" % prom_port, "--log.level=warn"],
                logs["prometheus"])
            wait_for("Prometheus ready",
                     lambda: http_get("http://127.0.0.1:%d/-/ready" % prom_port),
                     START_TIMEOUT_S, [prom])
            wait_for("Prometheus scraped all four targets",
                     lambda: single(prom_query(prom_port, "sum(up)")) == 4 or None,
                     START_TIMEOUT_S, [prom])
        else:
            report.skip("Prometheus (%s not installed: Debian package prometheus)"
                        % args.prometheus)

        # 3. baq submit --wait, and baq watch of the same job in a second process.
        t0 = time.monotonic()
        coord = "--coordinator=127.0.0.1:%d" % cport
        remote_out = os.path.join(tmp, "out-cluster")
        submit = children.start([args.cli, "submit", coord, "--wait", "--progress",
                                 "--request_id=cluster-1",
                                 "--out=" + remote_out] + job_flags)
        submit_lines = []
        job_id = threading.Event()
        job = {}

        def read_submit():
            for line in submit.stdout:
                submit_lines.append(line)
                m = re.match(r"submitted job (\S+)", line)
                if m:
                    job["id"] = m.group(1)
                    job_id.set()
        reader = threading.Thread(target=read_submit, daemon=True)
        reader.start()
        report.require(job_id.wait(START_TIMEOUT_S) and "id" in job,
                       "baq submit printed no job id:\n" + "".join(submit_lines))
        logs["watch"] = os.path.join(tmp, "watch.log")
        # --progress: progress lines go to stderr, and only to a terminal by default.
        watch = children.start([args.cli, "watch", coord, "--progress", job["id"]], logs["watch"])
        try:
            submit_rc = submit.wait(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            submit_rc = None
        reader.join(timeout=5)
        submit_text = "".join(submit_lines)
        report.require(submit_rc == 0, "baq submit --wait: rc %s\n%s" % (submit_rc, submit_text))
        report.note("baq submit --wait on 3 workers: %.1f s" % (time.monotonic() - t0))
        try:
            watch_rc = watch.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            watch_rc = None
        watch_text = tail(logs["watch"], 10000)
        report.check(watch_rc == 0, "baq watch: rc %s\n%s" % (watch_rc, watch_text))
        check_progress(report, "baq submit --wait", submit_text, job["id"], num_blocks)
        check_progress(report, "baq watch", watch_text, job["id"], num_blocks)
        m = re.search(r"succeeded: (\d+\.\d+) bits", submit_text)
        report.check(m is not None and abs(float(m.group(1)) - TARGET_BITS) <= 1e-3,
                     "baq submit: achieved bits not within 1e-3 of 3:\n" + submit_text)
        try:
            local_rc = local.wait(timeout=max(1, JOB_TIMEOUT_S - (time.monotonic() - t_local)))
        except subprocess.TimeoutExpired:
            local_rc = None
        report.require(local_rc == 0, "baq quantize: rc %s\n%s" % (local_rc, tail(logs["local"])))
        report.note("baq quantize (local mode, concurrently): %.1f s"
                    % (time.monotonic() - t_local))
        n = compare_outputs(report, "3-worker cluster", local_out, remote_out)
        report.note("cluster output: %d files compared with local mode" % n)
        jobs_run = 1

        # 4. The Python client example, against the same live coordinator.
        py = find_grpc_python(args.python_grpc)
        stub_error = "no Python with grpcio and protobuf" if py is None else generate_stubs(
            args.protoc, os.path.join(root, "proto"), os.path.join(tmp, "stubs"))
        if stub_error:
            report.skip("Python client (%s: Debian packages python3-grpcio, python3-protobuf, "
                        "protobuf-compiler-grpc)" % stub_error)
        else:
            client = [py, os.path.join(root, "docs/examples/submit_and_watch.py"), coord,
                      "--model=" + model, "--calib=" + calib, "--bits=3", "--method=rtn",
                      "--mode=sequential", "--nsamples=4", "--seqlen=64",
                      "--format=fake-quant", "--request-id=cluster-py-1",
                      "--timeout=10", "--watch-timeout=%d" % JOB_TIMEOUT_S]
            py_out = os.path.join(tmp, "out-python")
            env = dict(os.environ, PYTHONPATH=os.path.join(tmp, "stubs"),
                       PYTHONDONTWRITEBYTECODE="1")
            t0 = time.monotonic()
            with open(os.path.join(tmp, "python.log"), "w") as log:
                r = subprocess.run(client + ["--out=" + py_out], stdout=log,
                                   stderr=subprocess.STDOUT, env=env, timeout=JOB_TIMEOUT_S,
                                   preexec_fn=die_with_parent)
            text = tail(os.path.join(tmp, "python.log"), 10000)
            report.require(r.returncode == 0, "python client: rc %s\n%s" % (r.returncode, text))
            jobs_run += 1
            report.note("python client job: %.1f s" % (time.monotonic() - t0))
            m = re.search(r"submitted job (\S+) ", text)
            py_job = m.group(1) if m else None
            report.check(py_job is not None and py_job != job["id"],
                         "python client: no new job id:\n" + text)
            ev = re.findall(r"^event (\w+)\s+(\d+\.\d)%", text, re.M)
            report.check(len(ev) >= 2 and ev[-1] == ("succeeded", "100.0"),
                         "python client: Watch events do not end at succeeded 100%%:\n" + text)
            report.check(re.search(r"succeeded: 3\.0000 bits \(target 3,", text) is not None,
                         "python client: no 'succeeded: 3.0000 bits' line:\n" + text)
            try:
                with open(os.path.join(py_out, "quant_report.json")) as f:
                    py_report = json.load(f)
            except (OSError, ValueError) as e:
                py_report = {"error": str(e)}
            report.check(py_report.get("method") == "rtn" and
                         py_report.get("achieved_bits") == TARGET_BITS,
                         "python client job: output report %s" % str(py_report)[:300])
            # Same request_id again: the same job comes back, finished; nothing re-runs.
            r = subprocess.run(client + ["--out=" + py_out], capture_output=True, text=True,
                               env=env, timeout=START_TIMEOUT_S * 2, preexec_fn=die_with_parent)
            report.check(r.returncode == 0 and
                         ("submitted job %s (succeeded)" % py_job) in r.stdout,
                         "python client resubmit with the same request_id: rc %s\n%s%s"
                         % (r.returncode, r.stdout, r.stderr))

        # 5. What Prometheus scraped.
        if prom_port is not None:
            check_prometheus(report, prom_port, jobs_run, num_blocks)

        # 6. Several targets over one measurement, kept under a name in the
        # coordinator's data dir, then reused by a later job (parallel mode;
        # GPTQ reads the Hessians and is cheap on CPU). The reused job must
        # write the bytes the multi-target job wrote for that target.
        multi_flags = ["--model=" + model, "--calib=" + calib, "--method=gptq",
                       "--mode=parallel", "--nsamples=4", "--seqlen=64", "--format=fake-quant",
                       "--measurement=cluster-m"]

        def submit_wait(bits, out, what):
            t0 = time.monotonic()
            r = subprocess.run([args.cli, "submit", coord, "--wait", "--bits=" + bits,
                                "--out=" + out] + multi_flags, capture_output=True, text=True,
                               timeout=JOB_TIMEOUT_S, preexec_fn=die_with_parent)
            report.require(r.returncode == 0, "%s: rc %s\n%s%s"
                           % (what, r.returncode, r.stdout, r.stderr))
            report.note("%s on 3 workers: %.1f s" % (what, time.monotonic() - t0))

        multi_out = os.path.join(tmp, "out-multi")
        submit_wait("3,4", multi_out, "GPTQ 3 and 4 bits over one measurement")
        for t in ("3", "4"):
            report.check(os.path.isfile(os.path.join(multi_out, "bits-" + t, "quant_report.json")),
                         "multi-target job: no output for %s bits in %s" % (t, multi_out))
        kept = os.path.join(tmp, "data", "measurements", "cluster-m", "measurement.json")
        report.check(os.path.isfile(kept), "multi-target job kept no measurement at " + kept)
        reuse_out = os.path.join(tmp, "out-reused")
        submit_wait("4", reuse_out, "GPTQ 4 bits reusing the kept measurement")
        report.check("reusing the measurement" in tail(logs["coordinator"], 100000),
                     "the coordinator did not log reusing the measurement")
        n = compare_outputs(report, "reused measurement", os.path.join(multi_out, "bits-4"),
                            reuse_out, target_bits=4.0)
        report.note("reused-measurement output: %d files identical to the multi-target job's" % n)

        stop_daemons(report, daemons, START_TIMEOUT_S)

    return run_test("baq-cluster-", TOTAL_TIMEOUT_S, args.keep, scenario)


if __name__ == "__main__":
    sys.exit(main())
