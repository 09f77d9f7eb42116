#!/usr/bin/env python3
"""Submits a quantization job to a baq coordinator and follows it to the end.

A minimal client of the public job API (baq.v1.JobService, docs/api.md) with
grpcio and stubs generated from proto/baq/v1/*.proto. It shows the three
things every client should do:

  * send a client-chosen request_id with Submit and retry UNAVAILABLE with the
    SAME id, so a retry after a lost reply returns the job the first call
    created instead of starting a second one;
  * put a deadline on every call (unary calls: --timeout; the Watch stream:
    --watch-timeout, as long as the job may take);
  * follow Watch until the terminal event, re-watching after UNAVAILABLE (a
    coordinator restart), then Get the job for its summary or error.

Generate the stubs once (Debian 12: python3-grpcio, python3-protobuf,
protobuf-compiler, protobuf-compiler-grpc), from the repository root:

  mkdir -p /tmp/baq-stubs
  protoc -I proto --python_out=/tmp/baq-stubs --grpc_python_out=/tmp/baq-stubs \\
      --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin proto/baq/v1/*.proto

(with pip's grpcio-tools instead: python3 -m grpc_tools.protoc -I proto
--python_out=... --grpc_python_out=... proto/baq/v1/*.proto). Then:

  PYTHONPATH=/tmp/baq-stubs python3 docs/examples/submit_and_watch.py \\
      --coordinator=127.0.0.1:7000 --model="$PWD/examples/opt-fixture" \\
      --calib="$PWD/examples/calibration.txt" --bits=3 --out=/tmp/opt-baq3-py

Against a secured coordinator (docs/service.md, "Security") add --tls-ca=CA.pem
(and --tls-client-cert/--tls-client-key under mutual TLS) and
--auth-token-file=FILE or $BAQ_AUTH_TOKEN (sent as `authorization: Bearer`).
Paths are resolved by the daemons (model and calibration on the workers, the
output on the coordinator): pass absolute paths. Prints one line per progress
event and a final line; exits 0 only if the job succeeded (1 failed or
cancelled, 2 bad usage or stubs missing, 3 an RPC failed).
"""

import argparse
import os
import sys
import time
import uuid

try:
    import grpc
    from baq.v1 import job_pb2, job_pb2_grpc, quantization_pb2
except ImportError as e:  # grpcio missing, or the stubs are not on PYTHONPATH.
    print("submit_and_watch: %s\n(needs grpcio and the stubs generated from proto/baq/v1; "
          "see this file's docstring)" % e, file=sys.stderr)
    sys.exit(2)

SUBMIT_ATTEMPTS = 4
WATCH_RECONNECTS = 5

FORMATS = {
    "fake-quant": job_pb2.OUTPUT_FORMAT_FAKE_QUANT,
    "packed": job_pb2.OUTPUT_FORMAT_PACKED,
    "gptq": job_pb2.OUTPUT_FORMAT_GPTQ,
}
METHODS = {
    "baq": quantization_pb2.METHOD_BAQ,
    "gptq": quantization_pb2.METHOD_GPTQ,
    "rtn": quantization_pb2.METHOD_RTN,
}
MODES = {
    "sequential": job_pb2.EXECUTION_MODE_SEQUENTIAL,
    "parallel": job_pb2.EXECUTION_MODE_PARALLEL,
}
# Every state but these is terminal: SUCCEEDED, FAILED, CANCELLED, and any
# terminal state a newer coordinator adds (enum values are only ever added).
NOT_TERMINAL = (job_pb2.JOB_STATE_UNSPECIFIED, job_pb2.JOB_STATE_QUEUED,
                job_pb2.JOB_STATE_RUNNING)


def terminal(state):
    return state not in NOT_TERMINAL


def enum_name(enum, value, prefix):
    try:
        return enum.Name(value).replace(prefix, "").lower()
    except ValueError:  # A value added after these stubs were generated.
        return "%s%d" % (prefix.lower(), value)


def state_name(state):
    return enum_name(job_pb2.JobState, state, "JOB_STATE_")


def stage_name(stage):
    return enum_name(job_pb2.JobStage, stage, "JOB_STAGE_")


def build_spec(args):
    spec = job_pb2.JobSpec(
        model_dir=args.model,
        output_dir=args.out,
        formats=[FORMATS[f] for f in args.format.split(",") if f],
        mode=MODES[args.mode],
    )
    spec.calibration.files.extend(f for f in args.calib.split(",") if f)
    spec.calibration.num_samples = args.nsamples
    spec.calibration.seqlen = args.seqlen
    spec.calibration.seed = args.seed
    spec.quantization.method = METHODS[args.method]
    spec.quantization.target_bits = args.bits
    return spec


def submit(stub, request, timeout_s):
    """Submit, retrying UNAVAILABLE with the same request_id (safe: idempotent)."""
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        try:
            return stub.Submit(request, timeout=timeout_s)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == SUBMIT_ATTEMPTS:
                raise
            time.sleep(attempt)
    raise AssertionError("unreachable")


def format_event(ev):
    where = stage_name(ev.stage)
    if ev.block >= 0:
        where += " block %d/%d" % (ev.block + 1, ev.num_blocks)
    line = "%-9s %5.1f%%  %-22s" % (state_name(ev.state), ev.percent, where)
    if ev.blocks_done > 0:
        line += "  %.4f bits" % ev.achieved_bits
    if ev.eta_seconds >= 0 and not terminal(ev.state):
        line += "  eta %.0fs" % ev.eta_seconds
    return line


def watch(stub, job_id, watch_timeout_s):
    """Prints every event until the terminal one; returns the last event."""
    deadline = time.monotonic() + watch_timeout_s
    last = None
    for reconnect in range(WATCH_RECONNECTS + 1):
        try:
            for ev in stub.Watch(job_pb2.WatchJobRequest(id=job_id),
                                 timeout=max(1.0, deadline - time.monotonic())):
                print("event " + format_event(ev), flush=True)
                last = ev
            return last  # The server ends the stream OK after the terminal event.
        except grpc.RpcError as e:
            # Watch is safe to repeat: after a coordinator restart, watch again.
            if e.code() != grpc.StatusCode.UNAVAILABLE or reconnect == WATCH_RECONNECTS:
                raise
            time.sleep(reconnect + 1)
    return last


def open_channel(args):
    """Plaintext, or TLS (mutual with a client certificate); a bearer token on every call."""
    token = os.environ.get("BAQ_AUTH_TOKEN", "")
    if args.auth_token_file:
        with open(args.auth_token_file) as f:
            token = (f.read().split() or [""])[0]
    if not args.tls_ca and not args.tls_client_cert:
        if token:
            print("submit_and_watch: warning: sending a token over plaintext", file=sys.stderr)
            return grpc.intercept_channel(grpc.insecure_channel(args.coordinator),
                                          TokenInterceptor(token))
        return grpc.insecure_channel(args.coordinator)
    read = lambda path: open(path, "rb").read() if path else None  # noqa: E731
    creds = grpc.ssl_channel_credentials(root_certificates=read(args.tls_ca),
                                         private_key=read(args.tls_client_key),
                                         certificate_chain=read(args.tls_client_cert))
    if token:
        creds = grpc.composite_channel_credentials(
            creds, grpc.access_token_call_credentials(token))  # authorization: Bearer TOKEN
    return grpc.secure_channel(args.coordinator, creds)


class TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer TOKEN` to every call (gRPC's call credentials need TLS)."""

    def __init__(self, token):
        self.metadata = (("authorization", "Bearer " + token),)

    def _with_token(self, details):
        return details._replace(metadata=tuple(details.metadata or ()) + self.metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--coordinator", default="127.0.0.1:7000", help="HOST:PORT")
    p.add_argument("--model", required=True, help="model dir, as the workers see it")
    p.add_argument("--calib", required=True, help="calibration text files, comma-separated")
    p.add_argument("--out", required=True, help="output dir, as the coordinator sees it")
    p.add_argument("--bits", type=float, default=3.0)
    p.add_argument("--method", choices=sorted(METHODS), default="baq")
    p.add_argument("--mode", choices=sorted(MODES), default="sequential")
    p.add_argument("--format", default="fake-quant", help="fake-quant,packed,gptq")
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--request-id", default="",
                   help="idempotency key; default: a new UUID (reuse one to resubmit safely)")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline of unary calls, s")
    p.add_argument("--watch-timeout", type=float, default=72 * 3600.0,
                   help="deadline of the Watch stream, s")
    p.add_argument("--tls-ca", default="", help="PEM CA of the coordinator's certificate (TLS)")
    p.add_argument("--tls-client-cert", default="", help="PEM client certificate (mutual TLS)")
    p.add_argument("--tls-client-key", default="", help="PEM key of --tls-client-cert")
    p.add_argument("--auth-token-file", default="",
                   help="file whose first word is the bearer token; default: $BAQ_AUTH_TOKEN")
    args = p.parse_args()
    unknown = [f for f in args.format.split(",") if f and f not in FORMATS]
    if unknown:
        p.error("unknown --format %s" % ",".join(unknown))

    request = job_pb2.SubmitJobRequest(request_id=args.request_id or "py-" + uuid.uuid4().hex,
                                       spec=build_spec(args))
    with open_channel(args) as channel:
        stub = job_pb2_grpc.JobServiceStub(channel)
        try:
            job = submit(stub, request, args.timeout)
            print("submitted job %s (%s), request_id %s"
                  % (job.id, state_name(job.state), request.request_id), flush=True)
            last = watch(stub, job.id, args.watch_timeout)
            job = stub.Get(job_pb2.GetJobRequest(id=job.id), timeout=args.timeout)
        except grpc.RpcError as e:
            print("coordinator %s: %s: %s" % (args.coordinator, e.code().name, e.details()),
                  file=sys.stderr)
            return 3
    if last is None or not terminal(last.state):
        print("watch ended before the job did", file=sys.stderr)
        return 3
    if job.state == job_pb2.JOB_STATE_SUCCEEDED:
        s = job.summary
        print("job %s succeeded: %.4f bits (target %.4g, %s allocation), %d weights, %.1f s -> %s"
              % (job.id, s.achieved_bits, s.target_bits, s.allocation, s.quantized_elements,
                 s.wall_seconds, s.output_dir))
        return 0
    print("job %s %s: %s: %s" % (job.id, state_name(job.state), job.error_code, job.error),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
