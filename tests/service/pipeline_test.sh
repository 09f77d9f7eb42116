#!/usr/bin/env bash
# A pipeline step the way a CI system runs baq (issue 21): every decision is
# taken from `--output json` (parsed with jq) and exit codes, never from text.
#
# One baq-coordinator (its own process, a free loopback port, --data_dir in a
# temp dir) and, later, one CPU baq-worker. Then:
#   1. submit --json with --request_id derived from the pipeline run id:
#      exit 0, a job id; the same step retried (same request_id, same spec)
#      gets the same job; the same request_id with another spec exits 3;
#   2. watch --json follows the job in the background; the coordinator is
#      SIGKILLed mid-watch and restarted on the same port and data dir: the
#      watch reconnects (it says so on stderr) instead of failing;
#   3. after the restart the retried submit still returns the same job (the
#      request_id index is rebuilt from the data dir);
#   4. a worker starts, the job runs; watch exits 0 and its last JSON line is
#      {"ok": true, "job": {"state": "succeeded", ...}};
#   5. status --json reads the output dir; eval --json computes a perplexity
#      of the result (a finite number, exit 0);
#   6. list --state --label finds the job; delete --delete_outputs removes it
#      and its output; status of it then exits 3; status with the coordinator
#      stopped exits 7; watch with a short --reconnect_deadline exits 7.
#
# The job is the OPT fixture (examples/opt-fixture), RTN 4 bits, 4 windows of
# 64 tokens: seconds on one core.
#
# Exit 77 (CTest: skipped) when a binary, jq or the fixture is missing.
#
# Usage: pipeline_test.sh COORDINATOR_BIN WORKER_BIN BAQ_BIN SOURCE_DIR
set -uo pipefail

COORDINATOR_BIN=${1:?coordinator binary}
WORKER_BIN=${2:?worker binary}
BAQ=${3:?baq binary}
SRC=${4:?source dir}
MODEL="$SRC/examples/opt-fixture"
for bin in "$COORDINATOR_BIN" "$WORKER_BIN" "$BAQ"; do
  [[ -x $bin ]] || { echo "SKIP: $bin is not built"; exit 77; }
done
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }
[[ -f $MODEL/model.safetensors ]] || { echo "SKIP: no OPT fixture in $MODEL"; exit 77; }

TMP=$(mktemp -d /tmp/baq-pipeline.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for log in "$TMP"/*.log "$TMP"/*.jsonl; do
    [[ -f $log ]] && { echo "--- $log"; tail -n 30 "$log"; }
  done
  exit 1
}

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
C="--coordinator=127.0.0.1:$PORT"
head -c 65536 "$SRC/examples/calibration.txt" > "$TMP/calib.txt"

start_coordinator() {
  "$COORDINATOR_BIN" --listen="127.0.0.1:$PORT" --data_dir="$TMP/data" --worker_wait=300s \
    >>"$TMP/coordinator.log" 2>&1 &
  COORDINATOR_PID=$!
  PIDS+=("$COORDINATOR_PID")
  for _ in $(seq 1 150); do
    "$BAQ" list "$C" --json --rpc_timeout_s=2 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "coordinator did not answer on port $PORT"
}

# The pipeline's retry key: the same for every retry of this step, different
# for every run of the pipeline (CI systems export a run id, e.g.
# $GITHUB_RUN_ID or $CI_PIPELINE_ID).
PIPELINE_RUN_ID=${CI_PIPELINE_ID:-local-$$-$RANDOM}
REQUEST_ID="quantize-opt-$PIPELINE_RUN_ID"
OUT="$TMP/out"
JOB_FLAGS=(--model="$MODEL" --calib="$TMP/calib.txt" --bits=4 --method=rtn --mode=sequential
           --nsamples=4 --seqlen=64 --format=fake-quant --out="$OUT"
           --label=pipeline="$PIPELINE_RUN_ID")

start_coordinator

# 1. Submit, and the same step retried.
"$BAQ" submit "$C" --json --request_id="$REQUEST_ID" "${JOB_FLAGS[@]}" >"$TMP/submit1.json" \
  2>>"$TMP/cli.log" || fail "submit exited $?"
JOB=$(jq -er 'select(.ok) | .job.id' "$TMP/submit1.json") || fail "submit: no job id"
"$BAQ" submit "$C" --json --request_id="$REQUEST_ID" "${JOB_FLAGS[@]}" >"$TMP/submit2.json" \
  2>>"$TMP/cli.log" || fail "retried submit exited $?"
[[ $(jq -r .job.id "$TMP/submit2.json") == "$JOB" ]] || fail "retried submit made another job"
"$BAQ" submit "$C" --json --request_id="$REQUEST_ID" "${JOB_FLAGS[@]/--bits=4/--bits=3}" \
  >"$TMP/submit3.json" 2>>"$TMP/cli.log"
rc=$?
[[ $rc == 3 ]] || fail "same request_id, other spec: exit $rc, want 3"
[[ $(jq -r .error.code "$TMP/submit3.json") == ALREADY_EXISTS ]] || fail "want ALREADY_EXISTS"
echo "ok: submit $JOB, retry deduplicated, conflicting retry refused"

# 2. Watch; the coordinator dies and comes back mid-watch.
"$BAQ" watch "$C" --json --reconnect_deadline=120s "$JOB" >"$TMP/watch.jsonl" \
  2>"$TMP/watch.log" &
WATCH_PID=$!
PIDS+=("$WATCH_PID")
for _ in $(seq 1 100); do [[ -s $TMP/watch.jsonl ]] && break; sleep 0.1; done
[[ -s $TMP/watch.jsonl ]] || fail "watch printed no event"
kill -9 "$COORDINATOR_PID"
wait "$COORDINATOR_PID" 2>/dev/null
sleep 2  # The watch finds the coordinator gone and backs off.
kill -0 "$WATCH_PID" 2>/dev/null || fail "watch exited when the coordinator died"
start_coordinator
echo "ok: coordinator SIGKILLed and restarted mid-watch"

# 3. The retried step after the restart: still the same job.
"$BAQ" submit "$C" --json --request_id="$REQUEST_ID" "${JOB_FLAGS[@]}" >"$TMP/submit4.json" \
  2>>"$TMP/cli.log" || fail "submit after restart exited $?"
[[ $(jq -r .job.id "$TMP/submit4.json") == "$JOB" ]] || fail "submit after restart: new job"

# 4. A worker; the job runs to the end and the watch sees it.
"$WORKER_BIN" --coordinator="127.0.0.1:$PORT" --listen=127.0.0.1:0 --devices=cpu --threads=1 \
  >"$TMP/worker.log" 2>&1 &
PIDS+=("$!")
wait "$WATCH_PID"
rc=$?
[[ $rc == 0 ]] || fail "watch exited $rc, want 0"
grep -q reconnecting "$TMP/watch.log" || fail "watch did not report a reconnect"
[[ $(tail -n 1 "$TMP/watch.jsonl" | jq -r '.ok and .job.state == "succeeded"') == true ]] ||
  fail "watch's last line is not a succeeded job"
jq -se 'map(select(.event == "progress")) | length > 0' "$TMP/watch.jsonl" >/dev/null || fail "no progress lines"
echo "ok: watch reconnected and ended with the job (exit 0)"

# 5. status, then eval of the result.
"$BAQ" status "$C" --json "$JOB" >"$TMP/status.json" 2>>"$TMP/cli.log" || fail "status exit $?"
[[ $(jq -r .job.state "$TMP/status.json") == succeeded ]] || fail "status: not succeeded"
OUTPUT_DIR=$(jq -er .job.summary.output_dir "$TMP/status.json") || fail "status: no output_dir"
EVAL_DIR=$OUTPUT_DIR
[[ -d $OUTPUT_DIR/fake-quant ]] && EVAL_DIR=$OUTPUT_DIR/fake-quant
"$BAQ" eval --json --model="$EVAL_DIR" --text="$TMP/calib.txt" --seqlen=64 --max_windows=2 \
  --threads=1 >"$TMP/eval.json" 2>>"$TMP/cli.log" || fail "eval exited $?"
PPL=$(jq -er 'select(.ok) | .perplexity' "$TMP/eval.json") || fail "eval: no perplexity"
python3 -c "import math,sys; v=float(sys.argv[1]); sys.exit(not (math.isfinite(v) and v > 1))" \
  "$PPL" || fail "eval: perplexity $PPL"
echo "ok: status succeeded, eval perplexity $PPL"

# 6. Clean up, and the exit codes a pipeline branches on.
"$BAQ" list "$C" --json --state=succeeded --label=pipeline="$PIPELINE_RUN_ID" \
  >"$TMP/list.json" 2>>"$TMP/cli.log" || fail "list exited $?"
[[ $(jq -c '[.jobs[].id]' "$TMP/list.json") == "[\"$JOB\"]" ]] || fail "list by label: not [$JOB]"
"$BAQ" delete "$C" --json --delete_outputs "$JOB" >"$TMP/delete.json" 2>>"$TMP/cli.log" ||
  fail "delete exited $?"
jq -e --arg out "$OUTPUT_DIR" '.ok and (.removed_paths | index($out))' "$TMP/delete.json" \
  >/dev/null || fail "delete did not remove the output"
[[ ! -e $OUTPUT_DIR ]] || fail "output dir still there after delete --delete_outputs"
"$BAQ" status "$C" --json "$JOB" >"$TMP/status-unknown.json" 2>>"$TMP/cli.log"
rc=$?
[[ $rc == 3 && $(jq -r .error.code "$TMP/status-unknown.json") == NOT_FOUND ]] ||
  fail "status of a deleted job: exit $rc, want 3 (NOT_FOUND)"
kill -9 "$COORDINATOR_PID"
wait "$COORDINATOR_PID" 2>/dev/null
"$BAQ" status "$C" --json --rpc_timeout_s=2 "$JOB" >"$TMP/status-down.json" 2>>"$TMP/cli.log"
rc=$?
[[ $rc == 7 ]] || fail "status with the coordinator down: exit $rc, want 7"
"$BAQ" watch "$C" --json --reconnect_deadline=2s "$JOB" >"$TMP/watch-down.json" \
  2>>"$TMP/cli.log"
rc=$?
[[ $rc == 7 ]] || fail "watch with the coordinator down: exit $rc, want 7"
echo "ok: list, delete; exit codes 3 (deleted job) and 7 (coordinator down, status and watch)"
echo "pipeline_test: passed"
