"""Typed views of the baq.v1 messages: what Client returns and takes.

States and stages are lower-case strings ("queued", "running", "succeeded",
"failed", "cancelled", "failed_gate"), as in `baq ... --output json`; a value
added by a newer coordinator reads as e.g. "job_state_7".
"""
import dataclasses
from typing import Dict, List, Optional

from baq_client._proto.baq.v1 import job_pb2, quantization_pb2

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "failed_gate"})

_FORMATS = {"fake-quant": job_pb2.OUTPUT_FORMAT_FAKE_QUANT,
            "packed": job_pb2.OUTPUT_FORMAT_PACKED,
            "gptq": job_pb2.OUTPUT_FORMAT_GPTQ}
_METHODS = {"baq": quantization_pb2.METHOD_BAQ,
            "gptq": quantization_pb2.METHOD_GPTQ,
            "rtn": quantization_pb2.METHOD_RTN}
_MODES = {"sequential": job_pb2.EXECUTION_MODE_SEQUENTIAL,
          "parallel": job_pb2.EXECUTION_MODE_PARALLEL}


def _name(enum, value, prefix):
    try:
        return enum.Name(value)[len(prefix):].lower()
    except ValueError:  # Added after these stubs were generated.
        return "%s%d" % (prefix.lower(), value)


def state_name(value):
    return _name(job_pb2.JobState, value, "JOB_STATE_")


def state_value(name):
    return job_pb2.JobState.Value("JOB_STATE_" + name.upper())


@dataclasses.dataclass
class JobSpec:
    """A quantization job. Paths are resolved by the daemons: model and
    calibration on the workers, output on the coordinator. Zero/empty means
    the coordinator's default (the `baq quantize` defaults)."""
    model_dir: str
    output_dir: str
    calibration_files: List[str]
    target_bits: float = 3.0
    method: str = "baq"                 # baq | gptq | rtn
    mode: str = "sequential"            # sequential | parallel
    formats: List[str] = dataclasses.field(default_factory=lambda: ["fake-quant"])
    num_samples: int = 0                # 0: 128 calibration windows
    seqlen: int = 0                     # 0: 2048 tokens
    seed: int = 0
    group_size: int = 0
    priority: int = 0
    tenant: str = ""                    # Ignored when the coordinator authenticates.
    labels: Dict[str, str] = dataclasses.field(default_factory=dict)

    def to_proto(self):
        unknown = [f for f in self.formats if f not in _FORMATS]
        if unknown or self.method not in _METHODS or self.mode not in _MODES:
            raise ValueError("JobSpec: unknown format %s, method %r or mode %r"
                             % (unknown, self.method, self.mode))
        spec = job_pb2.JobSpec(model_dir=self.model_dir, output_dir=self.output_dir,
                               formats=[_FORMATS[f] for f in self.formats],
                               mode=_MODES[self.mode], priority=self.priority,
                               tenant=self.tenant)
        spec.calibration.files.extend(self.calibration_files)
        spec.calibration.num_samples = self.num_samples
        spec.calibration.seqlen = self.seqlen
        spec.calibration.seed = self.seed
        spec.quantization.method = _METHODS[self.method]
        spec.quantization.target_bits = self.target_bits
        spec.quantization.group_size = self.group_size
        spec.labels.update(self.labels)
        return spec


@dataclasses.dataclass
class TargetOutput:
    output_dir: str
    target_bits: float
    achieved_bits: float
    proxy_loss: float
    published: bool


@dataclasses.dataclass
class JobSummary:
    output_dir: str
    target_bits: float
    achieved_bits: float
    allocation: str
    proxy_loss: float
    quantized_elements: int
    seconds: float
    targets: List[TargetOutput]

    @classmethod
    def from_proto(cls, s):
        return cls(s.output_dir, s.target_bits, s.achieved_bits, s.allocation,
                   s.total_proxy_loss, s.quantized_elements, s.wall_seconds,
                   [TargetOutput(t.output_dir, t.target_bits, t.achieved_bits,
                                 t.total_proxy_loss, t.published) for t in s.targets])


@dataclasses.dataclass
class JobEvent:
    job_id: str
    state: str
    stage: str
    block: int                      # -1: none
    blocks_done: int
    num_blocks: int
    percent: float
    eta_seconds: Optional[float]    # None: unknown
    elapsed_seconds: float
    achieved_bits: float
    message: str

    @property
    def terminal(self):
        return self.state in TERMINAL_STATES or self.state.startswith("job_state_")

    @classmethod
    def from_proto(cls, e):
        return cls(e.job_id, state_name(e.state), _name(job_pb2.JobStage, e.stage, "JOB_STAGE_"),
                   e.block, e.blocks_done, e.num_blocks, e.percent,
                   None if e.eta_seconds < 0 else e.eta_seconds, e.elapsed_seconds,
                   e.achieved_bits, e.message)


@dataclasses.dataclass
class Job:
    id: str
    request_id: str
    state: str
    error_code: str                 # Canonical code name once failed/cancelled; "" otherwise.
    error: str
    tenant: str
    priority: int
    labels: Dict[str, str]
    model_dir: str
    output_dir: str
    progress: JobEvent
    summary: Optional[JobSummary]   # Set once succeeded.
    queue_position: int             # -1 unless queued.
    memory_estimate_bytes: int
    create_time_unix_ms: int
    start_time_unix_ms: int
    end_time_unix_ms: int

    @property
    def terminal(self):
        return self.state in TERMINAL_STATES

    @classmethod
    def from_proto(cls, j):
        return cls(j.id, j.request_id, state_name(j.state), j.error_code, j.error, j.tenant,
                   j.priority, dict(j.spec.labels), j.spec.model_dir, j.spec.output_dir,
                   JobEvent.from_proto(j.progress),
                   JobSummary.from_proto(j.summary) if j.HasField("summary") else None,
                   j.queue_position, j.memory_estimate_bytes, j.create_time_unix_ms,
                   j.start_time_unix_ms, j.end_time_unix_ms)
