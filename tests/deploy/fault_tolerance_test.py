#!/usr/bin/env python3
"""Kills, stops and restarts real baq daemons mid-job; the job must still succeed.

Issue 7 items 1-3, with real processes on 127.0.0.1 (baq-coordinator,
baq-worker, the baq CLI) and the OPT fixture at tiny calibration size
(--nsamples=4 --seqlen=64, BAQ 3 bits, sequential). Each scenario compares
the job's output with a local `baq quantize` of the same flags (computed
once and cached under --cache-dir): model.safetensors, config.json and the
tokenizer files byte for byte, quant_report.json without its timings.

  --scenario worker-kill
      3 workers. Three times: wait until a worker is busy on a block
      (baq_worker_busy = 1), SIGKILL it, restart it. The job succeeds with
      byte-identical output after 3 survived failures; prints the time from
      each kill to the coordinator's "worker lost" line (detection) and to
      the block being re-planned onto live workers (recovery). Detection
      must be < 5 s.
  --scenario worker-stop
      2 workers. SIGSTOP the busy one: its lease expires (no heartbeats) and
      its calls are fenced off < 20 s after the stop; the job finishes on the
      other worker. Then SIGCONT: the woken worker's late result for the
      block is discarded (output byte-identical), it re-registers.
  --scenario coordinator-restart
      2 workers. SIGKILL the coordinator after >= 2 blocks are checkpointed,
      start it again on the same --data_dir: the job resumes within 60 s and
      succeeds byte-identical; no finished block is recomputed (the workers'
      baq_worker_blocks_quantized_total sums to num_blocks plus at most the
      one block in flight at the kill, and the resume starts at the
      checkpointed block); a Submit retried with the same --request_id
      returns the same job.
  --scenario worker-sigterm
      3 workers, two with --shutdown_grace=30s, w3 with 0s. SIGTERM a busy
      worker with grace mid-block, as an autoscaler or a node drain does: it
      stops heartbeating, finishes the call in flight, logs that, and exits 0
      within its grace. Then SIGTERM w3 while busy: its grace runs out at
      once, the call in flight is cancelled (the block handed back) and it
      exits 0 within seconds. The coordinator counts at most one loss per
      stopped worker (none of the others), re-plans their blocks onto the
      live workers, and the job succeeds byte-identical. Prints the time
      from each SIGTERM to the worker's exit.

Exit 77 (CTest: skipped) when a binary or the shared fixture is missing.

Usage: fault_tolerance_test.py --scenario S --coordinator BIN --worker BIN
                               --cli BIN --data DIR --cache-dir DIR
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

NUM_BLOCKS = 6  # opt-fixture: num_hidden_layers.
JOB_TIMEOUT_S = 600


def arg(name, default=""):
    if name in sys.argv:
        i = sys.argv.index(name)
        if i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return default


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print("[%8.2f] %s" % (time.monotonic() - T0, msg), flush=True)


T0 = time.monotonic()


def quant_flags(data, out):
    return ["--model=%s/models/opt-fixture" % data,
            "--calib=%s/corpus/tiny_shakespeare.txt" % data,
            "--nsamples=4", "--seqlen=64", "--bits=3", "--out=%s" % out]


def metric(port, name, labels=""):
    """Sum of the samples of `name` (whose label text contains `labels`), or None."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    total, seen = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) == name and labels in (m.group(2) or ""):
            total += float(m.group(3))
            seen = True
    return total if seen else None


class Cluster:
    """A coordinator and workers on loopback; logs go to files in `root`."""

    def __init__(self, root, coordinator_bin, worker_bin, cli_bin):
        self.root = root
        self.coordinator_bin, self.worker_bin, self.cli_bin = coordinator_bin, worker_bin, cli_bin
        self.data_dir = os.path.join(root, "data")
        self.port = free_port()
        self.metrics_port = free_port()
        self.coordinator = None
        self.coordinator_starts = 0
        self.workers = {}  # name -> [proc, grpc port, metrics port]

    def start_coordinator(self):
        self.coordinator_starts += 1
        logf = open(os.path.join(self.root, "coordinator.log"), "a")
        self.coordinator = subprocess.Popen(
            [self.coordinator_bin, "--listen=127.0.0.1:%d" % self.port,
             "--data_dir=%s" % self.data_dir, "--metrics_listen=127.0.0.1:%d" % self.metrics_port,
             "--worker_wait=60s"],
            stdout=logf, stderr=subprocess.STDOUT)

    def coordinator_log(self):
        with open(os.path.join(self.root, "coordinator.log")) as f:
            return f.read()

    def start_worker(self, name, *extra, env=None):
        if name in self.workers:
            port, mport = self.workers[name][1], self.workers[name][2]
        else:
            port, mport = free_port(), free_port()
        logf = open(os.path.join(self.root, "%s.log" % name), "a")
        proc = subprocess.Popen(
            [self.worker_bin, "--coordinator=127.0.0.1:%d" % self.port,
             "--listen=127.0.0.1:%d" % port, "--devices=cpu", "--threads=1",
             "--metrics_listen=127.0.0.1:%d" % mport] + list(extra),
            stdout=logf, stderr=subprocess.STDOUT,
            env=dict(os.environ, **env) if env else None)
        self.workers[name] = [proc, port, mport]

    def await_workers(self, n, timeout_s=60):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (metric(self.metrics_port, "baq_coordinator_workers") or 0) >= n:
                return
            time.sleep(0.2)
        raise AssertionError("fewer than %d workers registered in %d s" % (n, timeout_s))

    def cli(self, *args, check=True):
        r = subprocess.run([self.cli_bin] + list(args) + ["--coordinator=127.0.0.1:%d" % self.port],
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError("baq %s failed (%d): %s%s" % (args[0], r.returncode, r.stdout,
                                                               r.stderr))
        return r.stdout

    def submit(self, flags, request_id):
        out = self.cli("submit", "--request_id=%s" % request_id, *flags)
        m = re.search(r"submitted job (\S+)", out)
        assert m, out
        return m.group(1)

    def status(self, job):
        out = self.cli("status", job, check=False)
        fields = {}
        for line in out.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2:
                fields[parts[0]] = parts[1]
        return fields

    def await_job(self, job, timeout_s=JOB_TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.status(job)
            if st.get("state") in ("succeeded", "failed", "cancelled"):
                return st
            time.sleep(0.5)
        raise AssertionError("job %s not finished in %d s: %s" % (job, timeout_s, self.status(job)))

    def busy_worker(self, exclude=(), timeout_s=120):
        """Name of a live worker that is running a task, polled every 20 ms."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, (proc, _, mport) in self.workers.items():
                if name in exclude or proc.poll() is not None:
                    continue
                if (metric(mport, "baq_worker_busy") or 0) >= 1:
                    return name
            time.sleep(0.02)
        raise AssertionError("no worker became busy in %d s" % timeout_s)

    def await_log(self, pattern, count, timeout_s):
        """Time (monotonic) when the coordinator log has `count` lines matching."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.coordinator_log())) >= count:
                return time.monotonic()
            time.sleep(0.05)
        raise AssertionError("coordinator log has < %d lines matching %r after %d s:\n%s" %
                             (count, pattern, timeout_s, self.coordinator_log()[-3000:]))

    def stop(self):
        for proc, _, _ in self.workers.values():
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except OSError:
                    pass
                proc.kill()
                proc.wait()
        if self.coordinator is not None and self.coordinator.poll() is None:
            self.coordinator.kill()
            self.coordinator.wait()


def reference_output(cli_bin, data, cache_dir):
    """The local-mode output of the test's flags, computed once per build of `baq` (the cache
    key has the binary's mtime: an output made by an older build is not a reference)."""
    ref = os.path.join(cache_dir, "opt-fixture-baq3-n4-s64-%d" % int(os.path.getmtime(cli_bin)))
    if os.path.isdir(ref):
        return ref
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=cache_dir)
    t = time.monotonic()
    subprocess.run([cli_bin, "quantize", "--threads=1"] + quant_flags(data, tmp + "/out"),
                   check=True, capture_output=True, timeout=JOB_TIMEOUT_S)
    log("reference (baq quantize, local mode) took %.1f s" % (time.monotonic() - t))
    try:
        os.rename(tmp + "/out", ref)
    except OSError:  # Another test made it meanwhile.
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    return ref


def assert_same_output(got, want, layer_keys_ignored=("seconds",)):
    names = sorted(os.listdir(want))
    assert sorted(os.listdir(got)) == names, (sorted(os.listdir(got)), names)
    for name in names:
        a = open(os.path.join(got, name), "rb").read()
        b = open(os.path.join(want, name), "rb").read()
        if name == "quant_report.json":
            # Everything but the timings.
            a, b = json.loads(a), json.loads(b)
            for r in (a, b):
                r.pop("stage_seconds", None)
                for layer in r.get("layers", []):
                    for key in layer_keys_ignored:
                        layer.pop(key, None)
            differing = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            assert not differing, "quant_report.json differs in %s" % differing
        assert a == b, "%s differs from the undisturbed run's" % name
    log("output byte-identical to the undisturbed run (%s)" % ", ".join(names))


def blocks_done(c, job):
    try:
        with open(os.path.join(c.data_dir, "jobs", job, "manifest.json")) as f:
            return json.load(f)["blocks_done"]
    except (OSError, ValueError, KeyError):
        return 0


def await_checkpoint(c, job, n, timeout_s=JOB_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while blocks_done(c, job) < n:
        assert time.monotonic() < deadline, "no checkpoint of %d blocks in %d s" % (n, timeout_s)
        time.sleep(0.05)


def await_block_work(c, job, timeout_s=JOB_TIMEOUT_S):
    """Waits until the job runs blocks (every engine has started), so the one
    busy worker is inside a Measure or Quantize call. While engines start, a
    worker whose StartJob just returned still reads busy for a moment, and a
    kill there finds no call in flight: only its lease (15 s) can tell."""
    deadline = time.monotonic() + timeout_s
    while not re.search(r"measuring|quantizing", c.status(job).get("progress", "")):
        assert time.monotonic() < deadline, "job %s ran no block in %d s" % (job, timeout_s)
        time.sleep(0.05)


# Every Measure/Quantize call of the kill scenario's workers lasts at least this long (the
# worker's failpoints), so a worker read busy is still inside its call when the SIGKILL lands:
# with an optimized BLAS a block of this tiny job takes a few milliseconds, and a kill after
# the call returned finds nothing in flight (only the lease, 15 s, would tell).
SLOW_CALLS = {"BAQ_FAILPOINTS": "worker.measure=sleep(300),worker.quantize=sleep(300)"}


def scenario_worker_kill(c, flags):
    for name in ("w1", "w2", "w3"):
        c.start_worker(name, env=SLOW_CALLS)
    c.await_workers(3)
    job = c.submit(flags, "ft-kill")
    detections, recoveries = [], []
    killed = set()
    # Kill 1 lands on the worker running block 0, kills 2 and 3 once 1 and 3
    # blocks are checkpointed: later blocks restore their inputs from the
    # checkpoint and roll back a non-empty bit budget. Every kill is mid-call
    # (mid-block), the case detected by the broken connection within 5 s.
    after_blocks = {1: 0, 2: 1, 3: 3}
    for k in range(1, 4):
        await_checkpoint(c, job, after_blocks[k])
        await_block_work(c, job)
        victim = c.busy_worker()
        proc = c.workers[victim][0]
        st = c.status(job)
        os.kill(proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        proc.wait()
        log("kill %d: SIGKILL %s (pid %d) while busy, %d blocks checkpointed; job at: %s" %
            (k, victim, proc.pid, blocks_done(c, job), st.get("progress", "?")))
        t_detect = c.await_log(r"worker lost (while starting )?\(failure", k, timeout_s=30)
        t_recover = c.await_log(r"worker lost at block|worker lost while starting", k, 60)
        detections.append(t_detect - t_kill)
        recoveries.append(t_recover - t_kill)
        log("kill %d: detected after %.2f s, block re-planned after %.2f s" %
            (k, detections[-1], recoveries[-1]))
        killed.add(victim)
        c.start_worker(victim, env=SLOW_CALLS)  # Comes back as a new lease epoch.
    st = c.await_job(job)
    assert st.get("state") == "succeeded", st
    assert len(re.findall(r"failure 3 of at most 3", c.coordinator_log())) >= 1, \
        "the job did not count 3 worker failures"
    log("job %s succeeded after 3 worker kills; detection %s s (max %.2f), recovery %s s" %
        (job, ["%.2f" % d for d in detections], max(detections),
         ["%.2f" % r for r in recoveries]))
    assert max(detections) < 5.0, "a worker crash took %.2f s to detect" % max(detections)
    return job


def scenario_worker_stop(c, flags):
    for name in ("w1", "w2"):
        c.start_worker(name)
    c.await_workers(2)
    job = c.submit(flags, "ft-stop")
    # Wait for a block (not StartJob) so the stopped call is a block's.
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while "block" not in c.status(job).get("progress", "") and time.monotonic() < deadline:
        time.sleep(0.1)
    victim = c.busy_worker()
    proc = c.workers[victim][0]
    os.kill(proc.pid, signal.SIGSTOP)
    t_stop = time.monotonic()
    log("SIGSTOP %s (pid %d) while busy; job at: %s" %
        (victim, proc.pid, c.status(job).get("progress", "?")))
    t_fence = c.await_log(r"lease expired: no heartbeat", 1, timeout_s=40)
    t_lost = c.await_log(r"worker lost at block", 1, timeout_s=40)
    log("hang detected (lease expired, calls fenced) after %.2f s; block re-planned after %.2f s"
        % (t_fence - t_stop, t_lost - t_stop))
    assert t_fence - t_stop < 20.0, "a hang took %.2f s to detect" % (t_fence - t_stop)
    time.sleep(2)
    os.kill(proc.pid, signal.SIGCONT)
    log("SIGCONT %s: it finishes its stale call and re-registers under a new epoch" % victim)
    st = c.await_job(job)
    assert st.get("state") == "succeeded", st
    # The woken worker re-registered; its old lease stays fenced.
    c.await_workers(2, timeout_s=30)
    return job


def scenario_coordinator_restart(c, flags):
    for name in ("w1", "w2"):
        c.start_worker(name)
    c.await_workers(2)
    job = c.submit(flags, "ft-restart")
    ckpt = os.path.join(c.data_dir, "jobs", job, "manifest.json")
    await_checkpoint(c, job, 2)
    c.coordinator.kill()
    c.coordinator.wait()
    t_kill = time.monotonic()
    done_at_kill = json.load(open(ckpt))["blocks_done"]
    log("SIGKILL coordinator with %d of %d blocks checkpointed" % (done_at_kill, NUM_BLOCKS))
    c.start_coordinator()
    t_start = time.monotonic()
    c.await_log(r"resuming from .*: %d of %d blocks done" % (done_at_kill, NUM_BLOCKS), 1, 60)
    t_resumed = time.monotonic()
    log("coordinator restarted; job resumed at block %d after %.2f s (%.2f s after the kill)" %
        (done_at_kill, t_resumed - t_start, t_resumed - t_kill))
    assert t_resumed - t_start < 60.0
    assert c.submit(flags, "ft-restart") == job, "a retried Submit made a new job"
    st = c.await_job(job)
    assert st.get("state") == "succeeded", st
    quantized = sum(metric(mp, "baq_worker_blocks_quantized_total") or 0
                    for _, _, mp in c.workers.values())
    log("workers quantized %d blocks in total for a %d-block model (resumed at %d)" %
        (quantized, NUM_BLOCKS, done_at_kill))
    assert NUM_BLOCKS <= quantized <= NUM_BLOCKS + 1, \
        "finished blocks were recomputed: %d Quantize calls" % quantized
    assert not os.path.exists(os.path.dirname(ckpt)), "checkpoint not removed after success"
    return job


SIGTERM_GRACE_S = 30


def sigterm(c, job, victim, grace_s, drained):
    """SIGTERMs busy worker `victim`; checks it exits 0 within its grace (plus
    10 s to interrupt its block when the grace is 0) and logs how its calls
    in flight ended: `drained` (finished) or cut off when the grace ran out."""
    proc = c.workers[victim][0]
    st = c.status(job)
    os.kill(proc.pid, signal.SIGTERM)
    t_term = time.monotonic()
    log("SIGTERM %s (pid %d, --shutdown_grace=%ds) while busy, %d blocks checkpointed; "
        "job at: %s" % (victim, proc.pid, grace_s, blocks_done(c, job), st.get("progress", "?")))
    limit_s = max(grace_s, 10)
    try:
        rc = proc.wait(timeout=limit_s + 10)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s still running %d s after SIGTERM (grace %d s)" %
                             (victim, limit_s + 10, grace_s))
    t_exit = time.monotonic() - t_term
    log("%s exited %d after %.2f s (grace %d s)" % (victim, rc, t_exit, grace_s))
    assert rc == 0, "%s exited %d after SIGTERM, want 0" % (victim, rc)
    assert t_exit < limit_s, "%s took %.2f s to exit, grace %d s" % (victim, t_exit, grace_s)
    wlog = open(os.path.join(c.root, "%s.log" % victim)).read()
    want = "calls in flight finished in" if drained else "ran out: calls in flight cancelled"
    assert re.search(r"shutting down[\s\S]*" + want, wlog), \
        "%s did not log %r:\n%s" % (victim, want, wlog[-2000:])


def scenario_worker_sigterm(c, flags):
    # w3 has no grace: its block in flight is interrupted and handed back.
    graces = {"w1": SIGTERM_GRACE_S, "w2": SIGTERM_GRACE_S, "w3": 0}
    for name, grace_s in graces.items():
        c.start_worker(name, "--shutdown_grace=%ds" % grace_s)
    c.await_workers(3)
    job = c.submit(flags, "ft-sigterm")
    # Mid-job: block 0 checkpointed, so the leaving worker's blocks restart
    # from checkpointed inputs with a non-empty bit budget.
    await_checkpoint(c, job, 1)
    await_block_work(c, job)
    # Whichever worker holds the job's shard (a one-shard job runs on one worker, and which one
    # depends on the order the workers registered in): excluding w3 here waited forever when w3
    # held it.
    first = c.busy_worker()
    sigterm(c, job, first, graces[first], drained=graces[first] > 0)
    # Then the survivor that took over the calibration shard (the resident data path deals an
    # orphaned shard to the survivor holding the fewest): w3 has no grace, so its call in flight
    # is interrupted and handed back; w2 drains.
    second = c.busy_worker(exclude=(first,))
    sigterm(c, job, second, graces[second], drained=graces[second] > 0)
    st = c.await_job(job)
    assert st.get("state") == "succeeded", st
    # Each loss is logged twice (the failure, then the re-plan) with its
    # number and the worker's address: at most one per SIGTERMed worker.
    clog = c.coordinator_log()
    lost = re.findall(r"worker lost (?:while starting )?\(failure (\d+) of at most \d+\): [^\n]*?@127\.0\.0\.1:(\d+)",
                      clog)
    ports = {str(c.workers[n][1]): n for n in graces}
    log("job %s succeeded; coordinator counted %d worker loss(es): %s" %
        (job, len(lost), ", ".join(ports.get(p, p) for _, p in lost) or "-"))
    assert len(lost) == len({p for _, p in lost}), "a worker was counted twice: %s" % lost
    assert all(ports.get(p) in (first, second) for _, p in lost), \
        "a loss of a worker that was not stopped: %s" % lost
    assert "gave up" not in clog
    return job


def main():
    scenario = arg("--scenario")
    bins = [arg("--coordinator"), arg("--worker"), arg("--cli")]
    data = arg("--data")
    if not all(b and os.access(b, os.X_OK) for b in bins):
        print("skipped: daemon or CLI binary not built")
        return 77
    if not os.path.isdir(os.path.join(data, "models", "opt-fixture")):
        print("skipped: no shared fixtures in %s" % data)
        return 77
    ref = reference_output(bins[2], data, arg("--cache-dir"))
    root = tempfile.mkdtemp(prefix="baq-ft-")
    c = Cluster(root, *bins)
    ok = False
    try:
        c.start_coordinator()
        out = os.path.join(root, "out")
        flags = quant_flags(data, out)
        fn = {"worker-kill": scenario_worker_kill, "worker-stop": scenario_worker_stop,
              "coordinator-restart": scenario_coordinator_restart,
              "worker-sigterm": scenario_worker_sigterm}[scenario]
        fn(c, flags)
        # A resumed job's report has no per-column level histogram for the
        # blocks read back from the checkpoint (coordinator/quant_report.h);
        # everything else, and every tensor, is identical.
        ignored = ("seconds", "bits_histogram") if scenario == "coordinator-restart" else ("seconds",)
        assert_same_output(out, ref, ignored)
        ok = True
    finally:
        c.stop()
        if not ok:
            for name in ["coordinator"] + sorted(c.workers):
                path = os.path.join(root, "%s.log" % name)
                if os.path.exists(path):
                    print("---- %s.log (tail) ----\n%s" % (name, open(path).read()[-4000:]))
        shutil.rmtree(root, ignore_errors=True)
    log("PASS %s" % scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
