"""Client of the baq quantization service (baq.v1.JobService).

    from baq_client import Client, JobSpec
    client = Client("127.0.0.1:7000")
    result = client.submit(JobSpec(...), request_id="run-42").wait()

Client: submit, get, list, watch, cancel, delete. JobSpec: what to quantize.
Job, JobEvent, JobSummary, TargetOutput: typed results (dataclasses). Errors
are grpc.RpcError (the coordinator's canonical code) and JobFailed (wait() on
a job that did not succeed).
"""
from baq_client.client import Client, JobFailed, SubmittedJob, TlsConfig
from baq_client.types import Job, JobEvent, JobSpec, JobSummary, TargetOutput, TERMINAL_STATES

__all__ = ["Client", "JobFailed", "SubmittedJob", "TlsConfig", "Job", "JobEvent", "JobSpec",
           "JobSummary", "TargetOutput", "TERMINAL_STATES"]
__version__ = "0.1.0"
