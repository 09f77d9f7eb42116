#!/usr/bin/env python3
"""The coordinator's memory follows the model's width, never the activations (issue 20 item 1).

One coordinator and two CPU worker processes on 127.0.0.1 run a sequential BAQ job with
--calibration_shards=2 on a random LLaMA-shaped model (tools/scale/make_random_model.py: hidden
64, 2 blocks) whose calibration activations at a block boundary (windows x seqlen x hidden x 4 B)
are more than 4 times the coordinator's memory bound. The resident data path keeps them on the
workers; only fp64 Hessian partials, quantized weights and layer outputs pass the coordinator.

The bound is tools/deploy/memory_table.py's coordinator formula for this shape, S Hessian
partials per input group plus one block's weights, with the measured peak RSS of this
coordinator while idle (workers registered) in place of the formula's BASE_RSS_BYTES, plus
SLACK_BYTES for what a running job adds that does not depend on the model (measured 6.5 MiB).
Checks:

  1. the job succeeds, and its output is byte-identical to `baq quantize` (local mode) with the
     same --calibration_shards (quant_report.json modulo wall times), every worker accumulated
     its shard of every block and no activations crossed the wire;
  2. the coordinator's peak RSS stays under the bound: VmHWM in /proc/<pid>/status, its
     baq_process_peak_resident_memory_bytes, and process_resident_memory_bytes scraped from
     /metrics during the job;
  3. it is enforced: the coordinator runs under RLIMIT_DATA (setrlimit on the running process,
     as `prlimit --pid PID --data=` does) set, once it is idle, to its data size plus the bound's
     growth and stacks for the threads a job starts. An allocation past it fails, and the
     coordinator aborts with std::bad_alloc, so holding even one shard's activations would fail
     the job. RLIMIT_DATA counts private writable mappings (heap, arenas, mmap'd buffers, thread
     stacks), not the mapped binary or address space reserved but inaccessible, on which
     RLIMIT_AS trips; cgroup v2 memory.max needs a delegated cgroup, which CI containers (and
     the one this was written in: cgroup v1, no controllers in the unified hierarchy) do not
     give. Thread stacks are reserved whole, so the coordinator starts with 2 MiB stacks
     (RLIMIT_STACK) to keep them from dominating the cap.

Helpers (processes, output comparison, scrapes) come from cluster_test.py and shards_test.py.
Exit 0: pass; 1: fail; 77: skipped (binaries missing).

Usage: coordinator_memory_test.py --coordinator BIN --worker BIN --cli BIN --source-dir REPO
                                  [--keep]
"""

import os
import resource
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # No __pycache__ in the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_test as ct  # noqa: E402
import shards_test as st  # noqa: E402

TOTAL_TIMEOUT_S = 240  # CTest's TIMEOUT is 300 s; it used 45-50 s of CPU on 2 cores.
START_TIMEOUT_S = 30
JOB_TIMEOUT_S = 200

# The model and the calibration: LLaMA-shaped, hidden 64 (RoPE over head_dim 32), 2 blocks, so
# one block's Hessians and weights are a few hundred KiB and the bound is mostly the process;
# 2304 windows of 256 tokens are 151 MB of float32 activations at every block boundary.
HIDDEN, FFN, HEADS, BLOCKS = 64, 172, 2, 2
WINDOWS, SEQLEN, SHARDS = 2304, 256, 2
# What a running job adds to the idle coordinator, whatever the model: gRPC streams to the
# workers, the job's threads, the output writer. Measured 6.5 MiB (docs/operations.md "Sizing").
SLACK_BYTES = 16 << 20
# The activations must dwarf the bound.
MIN_ACTIVATIONS_OVER_BOUND = 4
# RLIMIT_STACK of the coordinator, hence its threads' stacks (glibc's default), and how many
# threads a job may start beyond the idle ones (observed: 3, the engine calls and the weights'
# writer).
STACK_BYTES = 2 << 20
JOB_THREADS = 8


def proc_status(pid):
    """VmHWM, VmRSS and VmData in bytes, Threads, from /proc/<pid>/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "VmData"):
                out[key] = int(value.split()[0]) * 1024  # kB
            elif key == "Threads":
                out[key] = int(value)
    return out


def mib(n):
    return "%.1f MiB" % (n / 1048576.0)


def small_stacks():
    """Children.start's `limits` for the coordinator: STACK_BYTES thread stacks."""
    resource.setrlimit(resource.RLIMIT_STACK, (STACK_BYTES, STACK_BYTES))


class MetricsPoller:
    """Scrapes the coordinator's process_resident_memory_bytes every 0.2 s; keeps the maximum."""

    def __init__(self, port):
        self.port, self.max_rss, self.scrapes = port, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                v = ct.gauge(ct.http_get("http://127.0.0.1:%d/metrics" % self.port),
                             "process_resident_memory_bytes")
                if v is not None:
                    self.max_rss = max(self.max_rss, v)
                    self.scrapes += 1
            except Exception:  # Between scrapes the coordinator may be gone; checked elsewhere.
                pass
            self._stop.wait(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join()


def run_job(report, children, args, coordinator, cport, out, job_flags, log_path):
    """`baq submit --wait` (output to log_path); fails at once when the coordinator dies (the
    cap), instead of waiting for a coordinator that comes back."""
    t0 = time.monotonic()
    sub = children.start([args.cli, "submit", "--coordinator=127.0.0.1:%d" % cport, "--wait",
                          "--out=" + out] + job_flags, log_path)
    while sub.poll() is None and coordinator.poll() is None:
        if time.monotonic() - t0 > JOB_TIMEOUT_S:
            break
        time.sleep(0.1)
    if sub.poll() is None:
        sub.kill()
    sub.wait()
    text = ct.tail(log_path, 40)
    report.require(coordinator.poll() is None,
                   "the coordinator died during the job (exit %s; under RLIMIT_DATA an allocation "
                   "past the cap aborts with std::bad_alloc): submit said\n%s"
                   % (coordinator.returncode, text[-2000:]))
    report.require(sub.returncode == 0, "baq submit --wait: rc %s after %.0f s\n%s"
                   % (sub.returncode, time.monotonic() - t0, text[-3000:]))
    return time.monotonic() - t0


def main():
    args, root = ct.parse_cluster_args()
    if ct.unbuilt(args):
        print("SKIP: " + ct.unbuilt(args))
        return ct.SKIP
    sys.path.insert(0, os.path.join(root, "tools", "deploy"))
    import memory_table as mt  # noqa: E402

    def scenario(report, children, tmp, logs):
        model = os.path.join(tmp, "model")
        r = subprocess.run([sys.executable, os.path.join(root, "tools/scale/make_random_model.py"),
                            "--out", model, "--hidden", str(HIDDEN), "--intermediate", str(FFN),
                            "--heads", str(HEADS), "--blocks", str(BLOCKS), "--device", "cpu"],
                           capture_output=True, text=True, timeout=START_TIMEOUT_S)
        report.require(r.returncode == 0, "make_random_model.py: %s%s" % (r.stdout, r.stderr))
        calib = ct.calibration_copy(os.path.join(root, "examples/calibration.txt"), tmp)
        job_flags = ["--model=" + model, "--calib=" + calib, "--bits=3", "--method=baq",
                     "--mode=sequential", "--nsamples=%d" % WINDOWS, "--seqlen=%d" % SEQLEN,
                     "--format=fake-quant,packed", "--calibration_shards=%d" % SHARDS]

        # 1. Local mode in the background.
        local, local_out = ct.start_local(children, args.cli, tmp, logs, job_flags)

        # 2. The cluster; the bound and the cap from the idle coordinator.
        cport, cmport, wmports, daemons = ct.start_cluster(
            children, args.coordinator, args.worker, tmp, logs, START_TIMEOUT_S, workers=SHARDS,
            coordinator_limits=small_stacks)
        coordinator = daemons[0]
        idle = proc_status(coordinator.pid)
        shape = mt.shape_numbers("test", HIDDEN, FFN, BLOCKS, HEADS, HEADS, windows=WINDOWS,
                                 seqlen=SEQLEN, calibration_shards=SHARDS)
        model_terms = shape["coordinator_peak_rss"] - mt.BASE_RSS_BYTES
        bound = idle["VmHWM"] + model_terms + SLACK_BYTES
        activations = shape["boundary_activations"]
        report.require(activations >= MIN_ACTIVATIONS_OVER_BOUND * bound,
                       "the test's activations (%s a block boundary) are not %d x the bound %s"
                       % (mib(activations), MIN_ACTIVATIONS_OVER_BOUND, mib(bound)))
        report.note("bound %s = idle peak RSS %s + Hessians and weights %s + slack %s; "
                    "activations %s a block boundary (%.1f x)"
                    % (mib(bound), mib(idle["VmHWM"]), mib(model_terms), mib(SLACK_BYTES),
                       mib(activations), activations / bound))
        cap = idle["VmData"] + (bound - idle["VmHWM"]) + JOB_THREADS * STACK_BYTES
        resource.prlimit(coordinator.pid, resource.RLIMIT_DATA, (cap, cap))
        report.require(resource.prlimit(coordinator.pid, resource.RLIMIT_DATA) == (cap, cap),
                       "RLIMIT_DATA of the coordinator did not take")
        report.note("RLIMIT_DATA %s = idle data %s + %s (one shard's activations: %s)"
                    % (mib(cap), mib(idle["VmData"]), mib(cap - idle["VmData"]),
                       mib(activations // SHARDS)))

        # 3. The job, its memory watched.
        poller = MetricsPoller(cmport)
        remote_out = os.path.join(tmp, "out-cluster")
        try:
            logs["submit"] = os.path.join(tmp, "submit.log")
            seconds = run_job(report, children, args, coordinator, cport, remote_out, job_flags,
                              logs["submit"])
        finally:
            poller.stop()
        report.note("baq submit --wait on 2 workers, 2 shards: %.1f s" % seconds)
        after = proc_status(coordinator.pid)
        text = ct.http_get("http://127.0.0.1:%d/metrics" % cmport)
        peak_metric = ct.gauge(text, "baq_process_peak_resident_memory_bytes") or 0.0
        report.note("coordinator peak RSS: VmHWM %s, baq_process_peak_resident_memory_bytes %s, "
                    "max process_resident_memory_bytes %s (%d scrapes); data %s, threads %d"
                    % (mib(after["VmHWM"]), mib(peak_metric), mib(poller.max_rss),
                       poller.scrapes, mib(after["VmData"]), after["Threads"]))
        for what, value in (("VmHWM", after["VmHWM"]),
                            ("baq_process_peak_resident_memory_bytes", peak_metric),
                            ("process_resident_memory_bytes (max scraped)", poller.max_rss)):
            report.check(0 < value <= bound, "coordinator %s %s is not within (0, bound %s]"
                         % (what, mib(value), mib(bound)))
        report.check(poller.scrapes > 0, "no /metrics scrape of the coordinator during the job")

        # 4. The same bytes as local mode, the split happened, no activations moved.
        try:
            local_rc = local.wait(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            local_rc = None
        report.require(local_rc == 0, "baq quantize --calibration_shards=%d: rc %s\n%s"
                       % (SHARDS, local_rc, ct.tail(logs["local"])))
        n = ct.compare_outputs(report, "2 workers x 1 shard", local_out, remote_out)
        report.note("compared %d output files with local mode" % n)
        accumulated = [st.rpc_count(ct.http_get("http://127.0.0.1:%d/metrics" % p),
                                    "AccumulateHessians") for p in wmports]
        report.check(accumulated == [BLOCKS] * SHARDS,
                     "AccumulateHessians OK per worker %s, expected %d each"
                     % (accumulated, BLOCKS))
        wire = st.wire_bytes(text)
        report.check(wire.get("activations", -1) == 0 and wire.get("hessian", 0) > 0,
                     "wire bytes %s: expected activations 0 and Hessians > 0" % wire)

        ct.stop_daemons(report, daemons, START_TIMEOUT_S)

    return ct.run_test("baq-coordinator-memory-", TOTAL_TIMEOUT_S, args.keep, scenario)


if __name__ == "__main__":
    sys.exit(main())
