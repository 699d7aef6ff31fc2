"""Issue 13, "no number crashes us" and "wrong answers with exit 0": one test per item, and the siblings.

Numbers come from documents (extremes in every field: tests/cli/test_hostile_docs.py), from models (huge
shapes here), from the command line, and from the solver's own arithmetic (exact integers below 2^53).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_helpers import Inputs, make_inputs, one_line_error, plan
from tests.hostile_docs import strict_json
from tests.model_builders import float_model, shaped_model
from tpuplan.planner.plan_build import evaluate
from tpuplan.planner.solve import solve
from tpuplan.profiles.build import price
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_OBJECTIVE, MAX_OP_US
from tpuplan.profiles.model import load_profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import resolve_host

SHAPE_CASES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("numbers"))


def _edited_profile(inputs: Inputs, tmp: Path, path: list[str | int], value: object) -> Path:
    doc = json.loads(inputs.profile.read_text())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    out = tmp / "edited.json"
    out.write_text(json.dumps(doc, allow_nan=True))
    return out


@pytest.mark.parametrize(
    ("path", "value", "text"),
    [
        (["ops", 1, "measured_us"], -1e6, "ops.1.measured_us: Input should be greater than or equal to 0"),
        (["ops", 1, "measured_us"], float("nan"), "ops.1.measured_us: Input should be a finite number"),
        (["ops", 1, "macs"], 1e300, "ops.1.macs"),
        (["device", "invoke_overhead_us"], float("inf"), "device.invoke_overhead_us: Input should be a finite"),
        (["device", "op_costs", "fc", "us_per_op"], 1e15, "device.op_costs.fc.us_per_op: Input should be less"),
        (["input_bytes"], 10**18, "input_bytes: Input should be less than or equal to"),
        (["cuts"], [], "cuts must be numbered"),
        (["cuts"], [{"index": 0, "bytes": 10, "tensors": []}], "cuts must be numbered"),
    ],
)
def test_profile_numbers_are_one_line_errors_naming_file_and_field(
    inputs: Inputs, tmp_path: Path, path: list[str | int], value: object, text: str
) -> None:
    edited = _edited_profile(inputs, tmp_path, path, value)
    line = one_line_error(plan("solve", edited, "--tpus", "2"), text)
    assert str(edited) in line


def test_5001_digit_integer_names_the_field(inputs: Inputs, tmp_path: Path) -> None:
    edited = _edited_profile(inputs, tmp_path, ["ops", 1, "macs"], "HUGE")
    edited.write_text(edited.read_text().replace('"HUGE"', "9" * 5001))
    one_line_error(plan("solve", edited, "--tpus", "2"), "ops.1.macs: a number of 5,001 digits is out of range")


def test_host_bus_rate_1e_300_is_refused(inputs: Inputs, tmp_path: Path) -> None:
    host = json.loads(json.dumps(resolve_host("pycoral").model_dump(mode="json")))
    host["bus_bytes_per_us"] = 1e-300
    path = tmp_path / "host.json"
    path.write_text(json.dumps(host))
    one_line_error(plan("solve", inputs.profile, "--host", path, "--tpus", "2"), "bus_bytes_per_us")


def test_nan_is_never_written_back(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    assert plan("solve", inputs.profile, "--tpus", "2", "-o", out).returncode == 0
    strict_json(out.read_text())
    edited = _edited_profile(inputs, tmp_path, ["device", "io_reserve_frac"], float("nan"))
    one_line_error(plan("solve", edited, "--tpus", "2", "-o", tmp_path / "never.json"), "io_reserve_frac")
    assert not (tmp_path / "never.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--workers", "1e10"], 2, "--workers"),
        (["--workers", "100000"], 2, "--workers"),
        (["--seed", "1e20"], 2, "--seed"),
        (["--seed", str(2**70)], 2, "--seed"),
        (["--time-limit", "inf"], 2, "--time-limit must be more than 0 and at most 86400 s (got inf)"),
        (["--time-limit", "1e300"], 2, "(got 1e+300)"),
        (["--time-limit", "nan"], 2, "(got nan)"),
        (["--time-limit", "-1"], 2, "(got -1)"),
        (["--batch", "1e7"], 2, "--batch"),
        (["--batch", "0"], 2, "--batch"),
        (["--max-tpus", "1e3", "--tpus", "auto"], 2, "--max-tpus"),
        (["--tolerance", "nan", "--tpus", "auto"], 2, "--tolerance"),
        (["--tolerance", "inf", "--tpus", "auto"], 2, "--tolerance"),
    ],
)
def test_command_line_numbers(inputs: Inputs, args: list[str], code: int, text: str) -> None:
    res = (
        plan("solve", inputs.profile, "--tpus", "2", *args)
        if "--tpus" not in args
        else plan("solve", inputs.profile, *args)
    )
    assert res.returncode == code and "Traceback" not in res.stderr, res.stderr
    if res.stderr.startswith("plan: error:"):
        one_line_error(res, text, code)
    else:
        assert text in res.stderr


@pytest.mark.parametrize("flag", ["--tpus", "--cuts"])
def test_a_5000_digit_value_is_echoed_short(inputs: Inputs, flag: str) -> None:
    line = one_line_error(plan("solve", inputs.profile, flag, "9" * 5000), "(5,000 characters)", code=2)
    assert len(line) < 300


def test_time_limit_is_checked_by_the_library_too(inputs: Inputs) -> None:
    for bad in (float("inf"), float("nan"), 1e300, 0.0):
        with pytest.raises(TpuplanError, match="the time limit must be more than 0"):
            solve(load_profile(inputs.profile), 2, time_limit_s=bad)


def test_objective_stays_exact_or_is_refused(inputs: Inputs, tmp_path: Path) -> None:
    """Op times at the bound, a batch of 1,000,000: the objective would pass 2^53 us, where CP-SAT's double
    and the reference's integers disagree by a microsecond; refused before any search. Without the batch
    the same profile solves, and the plan's objective is the exact integer the tables give."""
    prof = load_profile(inputs.profile)
    ops = [op.model_copy(update={"measured_us": float(MAX_OP_US)}) for op in prof.ops]
    cpu = preset("cpu")
    heavy = price(prof.model_copy(update={"ops": ops, "source": "measured"}), cpu, resolve_host(None))
    path = tmp_path / "heavy.json"
    write_doc(path, heavy)
    one_line_error(
        plan("solve", path, "--tpus", "2", "--batch", "1000000"),
        f"beyond the {MAX_OBJECTIVE:,} us the planner computes exactly",
    )
    res = plan("solve", path, "--tpus", "2", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["solver"]["objective"] == evaluate(heavy, [cpu], doc["cuts"]).solver.objective


@pytest.mark.parametrize("shape", [[2**28] * 8, [2**20, 2**20], [2**10] * 4])
def test_huge_shapes_give_a_line_or_a_plan(tmp_path: Path, shape: list[int]) -> None:
    for op in ("ADD", "BATCH_MATMUL"):
        path = tmp_path / f"{op}.tflite"
        path.write_bytes(shaped_model(op, shape))
        res = plan("solve", path, "--tpus", "1", "--json")
        if res.returncode != 0:
            assert str(path) in one_line_error(res)
        else:
            assert json.loads(res.stdout)["n_ops"] == 1


def test_any_shape_up_to_8_dimensions_of_2_to_the_28(tmp_path: Path) -> None:
    """Hypothesis draws shapes from 1 to 2^28 per dimension, up to 8 dimensions (the reader's bounds)."""
    dims = st.sampled_from([1, 3, 2**10, 2**16, 2**20, 2**28])

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(op=st.sampled_from(["ADD", "BATCH_MATMUL"]), shape=st.lists(dims, min_size=1, max_size=8))
    def case(op: str, shape: list[int]) -> None:
        path = tmp_path / "shaped.tflite"
        path.write_bytes(shaped_model(op, shape))
        res = plan("inspect", path, "--json")
        SHAPE_CASES["cases"] += 1
        if res.returncode:
            assert str(path) in one_line_error(res)
            SHAPE_CASES["refused"] += 1
        else:
            strict_json(res.stdout)

    case()
    print(f"\nhuge shapes: {SHAPE_CASES['cases']} models, {SHAPE_CASES['refused']} refused in one line")
    assert 0 < SHAPE_CASES["refused"] < SHAPE_CASES["cases"]


def test_float_model_says_it_runs_wholly_on_the_host(tmp_path: Path) -> None:
    path = tmp_path / "float.tflite"
    path.write_bytes(float_model())
    for args in (["--tpus", "2"], ["--tpus", "auto"]):
        line = one_line_error(plan("solve", path, *args), "the Edge TPU runs none of this model's 2 ops")
        assert str(path) in line and "float32, not 8-bit quantised" in line and "quantise the model to int8" in line
    one_line_error(plan("compare", path, "--tpus", "2"), "quantise the model to int8")


def test_measured_profile_on_an_edge_tpu_says_what_is_measured(inputs: Inputs, tmp_path: Path) -> None:
    prof = load_profile(inputs.profile)
    ops = [op.model_copy(update={"measured_us": 5.0}) for op in prof.ops]
    measured = price(prof.model_copy(update={"ops": ops, "source": "measured"}), preset("cpu"), resolve_host(None))
    path = tmp_path / "measured.json"
    write_doc(path, measured)
    res = plan("solve", path, "--tpus", "2", "--device", "edgetpu-usb", "--json")
    notes = " ".join(json.loads(res.stdout)["notes"])
    assert "Edge TPU op(s) are predicted by the edgetpu-usb cost model, not measured" in notes
    cpu = json.loads(plan("solve", path, "--tpus", "2", "--json").stdout)
    assert not any("measured profile on Edge TPUs" in n for n in cpu["notes"])
    assert "2 stage(s) on the host CPU" in plan("solve", path, "--cuts", "2").stdout
