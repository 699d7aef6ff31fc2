"""The bounds of every number tpuplan reads, chosen so that the planner's integer arithmetic stays exact.

The planner adds integer microseconds in int64 tables (numpy) and in CP-SAT, and multiplies a period
by a batch of up to MAX_BATCH inputs. A number past these bounds in a document, a model or a priced
table is refused with one line naming where it came from, never wrapped around or rounded:

- sizes (bytes, MACs) at most BIG: a sum over a few thousand ops stays far inside int64;
- a model's tensor and parameter bytes together at most MAX_MODEL_SUM: any stage's sum of them stays
  inside int64, however many ops it holds;
- one op's time at most MAX_OP_US: a stage is a sum of up to MAX_OPS op times (below 2^48);
- one stage's time, serialized share, bus time and one-off cost at most MAX_STAGE_US: a sum over up to
  MAX_STAGES stages stays below 2^48, exact as a float too, and far from the reference solver's INF (2^62);
- an objective J = alpha P + beta L + gamma O at most MAX_OBJECTIVE (2^53): exact as an int64, as a
  float and in CP-SAT, whatever the batch.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field

BIG: Final = 1 << 50  # bytes and MAC counts
MAX_DIM: Final = 1 << 28  # one dimension of a tensor shape (the .tflite reader's bound too)
MAX_US: Final = 1e7  # every fixed time of a device or host spec (10 s)
MAX_RATE: Final = 1e6  # every microseconds-per-unit rate of a spec
MAX_OP_US: Final = 10**10  # one op's predicted or measured time (about 2.8 hours)
MAX_STAGE_US: Final = 1 << 38  # one stage's time (about 3.2 days)
MAX_OBJECTIVE: Final = 1 << 53  # the planner's objective J, in microseconds
MAX_BATCH: Final = 1_000_000  # inputs a batch objective spreads one-off costs over
MAX_COUNT: Final = 1 << 31  # op, tensor and stage indices and counts
MAX_OPS: Final = 16_384  # ops of a model the planner plans (its tables hold the stages it can use, not n x n)
MAX_STAGES: Final = 1024  # stages (TPUs) of one plan
MAX_MODEL_SUM: Final = 1 << 60  # bytes of a model's tensors and parameters, all added up
MAX_PIPELINE_US: Final = 1 << 50  # a sum over the stages (at most MAX_STAGES of them), plus start-up


def describe(value: int | float) -> str:
    """A number for an error message, short even when it has thousands of digits."""
    if isinstance(value, int) and abs(value) >= 10**15:
        return f"about 10^{int(abs(value).bit_length() * 0.30103)}"  # str() refuses 4,300+ digits
    return f"{value:,}" if isinstance(value, int) else f"{value:.6g}"


# Field types of the documents, one per kind of number (documents also refuse NaN and infinities).
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Bytes = Annotated[int, Field(ge=0, le=BIG)]
TotalBytes = Annotated[int, Field(ge=0, le=MAX_MODEL_SUM)]  # a sum over the ops of a stage or model
Dim = Annotated[int, Field(ge=-1, le=MAX_DIM)]
OpUs = Annotated[int, Field(ge=0, le=MAX_OP_US)]
StageUs = Annotated[int, Field(ge=0, le=MAX_STAGE_US)]
PipelineUs = Annotated[int, Field(ge=0, le=MAX_PIPELINE_US)]
ObjectiveUs = Annotated[int, Field(ge=0, le=MAX_OBJECTIVE)]
Seconds = Annotated[float, Field(ge=0, le=1e9)]
Rate = Annotated[float, Field(ge=0, le=1e12)]  # per second, or a ratio of two measurements
Share = Annotated[float, Field(ge=0, le=1)]
Real = Annotated[float, Field(ge=-1e15, le=1e15)]  # a fitted or reported number that may be negative
