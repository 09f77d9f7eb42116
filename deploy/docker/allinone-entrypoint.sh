#!/bin/bash
# allinone-entrypoint.sh: runs a one-machine baq cluster in one container —
# a coordinator and one CPU worker registered with it — for trying baq out.
# Not for production: one container, one failure domain, no restarts.
#
# Stops cleanly on SIGTERM/SIGINT: the worker first (it stops taking work and
# lets in-flight block RPCs finish), then the coordinator. If either
# daemon exits on its own, the other is stopped and the container exits with
# that daemon's status, so `docker run --restart` or the HEALTHCHECK notices.
#
# Environment (defaults in brackets):
#   BAQ_DATA_DIR [/var/lib/baq]   coordinator --data_dir
#   BAQ_DEVICES  [cpu]            worker --devices
#   BAQ_THREADS  [0]              worker --threads (0: LibTorch default)
# Extra arguments are passed to the worker.
set -euo pipefail

: "${BAQ_DATA_DIR:=/var/lib/baq}"
: "${BAQ_DEVICES:=cpu}"
: "${BAQ_THREADS:=0}"

# Ports are fixed: the image's HEALTHCHECK and EXPOSE name them.
COORDINATOR_ARGS=(
  --listen=0.0.0.0:7000
  --data_dir="${BAQ_DATA_DIR}"
  --metrics_listen=0.0.0.0:9400
)
WORKER_ARGS=(
  --coordinator=127.0.0.1:7000
  --listen=127.0.0.1:7001
  --devices="${BAQ_DEVICES}"
  --threads="${BAQ_THREADS}"
  --metrics_listen=0.0.0.0:9401
)

coordinator_pid=""
worker_pid=""
# shellcheck disable=SC2317  # invoked by the trap below
stop() {
  trap - TERM INT
  for pid in "${worker_pid}" "${coordinator_pid}"; do
    if [ -n "${pid}" ]; then
      kill -TERM "${pid}" 2>/dev/null || true
      wait "${pid}" || true
    fi
  done
  exit 0
}
trap stop TERM INT

baq-coordinator "${COORDINATOR_ARGS[@]}" &
coordinator_pid=$!
# The worker registers at start; give the coordinator's port a moment.
for _ in $(seq 1 50); do
  baq-health-probe --addr=127.0.0.1:7000 --timeout=1s >/dev/null 2>&1 && break
  kill -0 "${coordinator_pid}" 2>/dev/null || break
  sleep 0.2
done
baq-worker "${WORKER_ARGS[@]}" "$@" &
worker_pid=$!

# Whichever daemon exits first takes the other down with it.
status=0
wait -n "${coordinator_pid}" "${worker_pid}" || status=$?
trap - TERM INT
kill -TERM "${worker_pid}" "${coordinator_pid}" 2>/dev/null || true
wait || true
echo "allinone: a daemon exited (status ${status}); stopping" >&2
exit "${status:-1}"
