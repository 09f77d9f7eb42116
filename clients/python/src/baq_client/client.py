"""Client: the calls of baq.v1.JobService with deadlines, retries and typed results.

Every call has a deadline (`timeout`, seconds). Reads (get, list) and cancel
are retried on UNAVAILABLE by the channel's retry policy; submit is retried
with its request_id (safe: the coordinator returns the job the key created);
watch reconnects across coordinator restarts until the job ends or
`reconnect_deadline` seconds pass without an event (docs/api.md, "Deadlines").

Thread-safe as gRPC channels are; one Client per coordinator is enough.
"""
import dataclasses
import json
import random
import time
import uuid
from typing import Dict, Iterator, List, Optional, Union

import grpc

from baq_client._proto.baq.v1 import job_pb2, job_pb2_grpc
from baq_client.types import Job, JobEvent, JobSpec, state_value

_SERVICE_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": "baq.v1.JobService", "method": m} for m in ("Get", "List", "Cancel")],
    "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.5s", "maxBackoff": "4s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})
_SUBMIT_ATTEMPTS = 4
# A watch stream ending with these codes (or OK before the terminal event)
# is opened again: the coordinator restarted or shut down.
_RECONNECT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


@dataclasses.dataclass
class TlsConfig:
    """TLS to the coordinator: `ca_file` verifies it (None: the system roots);
    `cert_file`/`key_file` are the client certificate under mutual TLS."""
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None


class JobFailed(Exception):
    """wait() on a job that ended failed, failed_gate or cancelled; `.job` is it."""

    def __init__(self, job):
        super().__init__("job %s %s: %s %s" % (job.id, job.state, job.error_code, job.error))
        self.job = job


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """`authorization: Bearer TOKEN` on every call (call credentials need TLS)."""

    def __init__(self, token):
        self._metadata = (("authorization", "Bearer " + token),)

    def _add(self, details):
        return details._replace(metadata=tuple(details.metadata or ()) + self._metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._add(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._add(details), request)


class SubmittedJob:
    """A job this client submitted: `.id`, `.job` (as Submit returned it), wait()."""

    def __init__(self, client, job):
        self._client = client
        self.job = job
        self.id = job.id

    def wait(self, timeout=None, on_event=None, raise_on_failure=True):
        """Follows the job (watch) until it ends; returns its final Job.
        `timeout` (seconds, None: no limit) bounds the whole wait and raises
        TimeoutError; `on_event(JobEvent)` sees every event. Raises JobFailed
        when the job did not succeed, unless raise_on_failure is False."""
        for event in self._client.watch(self.id, deadline=timeout):
            if on_event is not None:
                on_event(event)
        job = self._client.get(self.id)
        if raise_on_failure and job.state != "succeeded":
            raise JobFailed(job)
        return job


class Client:
    """Client("host:port", token=None, tls=None, timeout=30).

    `tls`: None or False for plaintext, True for TLS verified by the system
    roots, or a TlsConfig. `token`: the bearer token (--auth_token_file on
    the coordinator)."""

    def __init__(self, target, token=None, tls: Union[None, bool, TlsConfig] = None,
                 timeout=30.0, reconnect_deadline=3600.0):
        self.target = target
        self.timeout = timeout
        self.reconnect_deadline = reconnect_deadline
        options = [("grpc.service_config", _SERVICE_CONFIG), ("grpc.enable_retries", 1)]
        if tls:
            cfg = tls if isinstance(tls, TlsConfig) else TlsConfig()
            read = lambda p: open(p, "rb").read() if p else None  # noqa: E731
            creds = grpc.ssl_channel_credentials(read(cfg.ca_file), read(cfg.key_file),
                                                 read(cfg.cert_file))
            if token:
                creds = grpc.composite_channel_credentials(
                    creds, grpc.access_token_call_credentials(token))
            channel = grpc.secure_channel(target, creds, options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
            if token:
                channel = grpc.intercept_channel(channel, _TokenInterceptor(token))
        self._channel = channel
        self._stub = job_pb2_grpc.JobServiceStub(channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def submit(self, spec: JobSpec, request_id: Optional[str] = None) -> SubmittedJob:
        """Queues the job. `request_id`: the retry key (derive it from your
        pipeline's run id, docs/api.md); None: a random one for this call's
        own retries."""
        request = job_pb2.SubmitJobRequest(request_id=request_id or "py-" + uuid.uuid4().hex,
                                           spec=spec.to_proto())
        for attempt in range(1, _SUBMIT_ATTEMPTS + 1):
            try:
                return SubmittedJob(self, Job.from_proto(
                    self._stub.Submit(request, timeout=self.timeout)))
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == _SUBMIT_ATTEMPTS:
                    raise
                time.sleep(attempt)
        raise AssertionError("unreachable")

    def get(self, job_id) -> Job:
        return Job.from_proto(self._stub.Get(job_pb2.GetJobRequest(id=job_id),
                                             timeout=self.timeout))

    def list(self, states: Optional[List[str]] = None, tenant: str = "",
             labels: Optional[Dict[str, str]] = None, page_size: int = 100) -> Iterator[Job]:
        """Every matching job, oldest first, fetched `page_size` at a time."""
        request = job_pb2.ListJobsRequest(page_size=page_size, tenant=tenant,
                                          states=[state_value(s) for s in states or []],
                                          labels=labels or {})
        while True:
            response = self._stub.List(request, timeout=self.timeout)
            for job in response.jobs:
                yield Job.from_proto(job)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    def cancel(self, job_id) -> Job:
        return Job.from_proto(self._stub.Cancel(job_pb2.CancelJobRequest(id=job_id),
                                                timeout=self.timeout))

    def delete(self, job_id, delete_outputs=False) -> List[str]:
        """Removes a finished job; returns the paths removed."""
        response = self._stub.Delete(
            job_pb2.DeleteJobRequest(id=job_id, delete_outputs=delete_outputs),
            timeout=self.timeout)
        return list(response.removed_paths)

    def watch(self, job_id, deadline=None) -> Iterator[JobEvent]:
        """Yields the job's events until the terminal one, reconnecting with
        backoff when the coordinator goes away. `deadline` (seconds, None: no
        limit) bounds the whole watch: TimeoutError when it passes."""
        end = None if deadline is None else time.monotonic() + deadline
        last_heard = time.monotonic()
        backoff = 0.5
        while True:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("watch of job %s: deadline passed" % job_id)
            code = None
            try:
                for proto in self._stub.Watch(job_pb2.WatchJobRequest(id=job_id),
                                              timeout=remaining):
                    event = JobEvent.from_proto(proto)
                    last_heard, backoff = time.monotonic(), 0.5
                    yield event
                    if event.terminal:
                        return
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and end is not None:
                    raise TimeoutError("watch of job %s: deadline passed" % job_id) from e
                if code not in _RECONNECT_CODES:
                    raise
                if time.monotonic() - last_heard > self.reconnect_deadline:
                    raise
            pause = backoff * random.uniform(0.5, 1.0)
            if end is not None:
                pause = min(pause, max(0.0, end - time.monotonic()))
            time.sleep(pause)
            backoff = min(backoff * 2, 30.0)
