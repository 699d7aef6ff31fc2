"""Red-team pass 3 (issue 22), the conventions scripts rely on: usage errors exit 2, `plan schema` covers
every document, help is plain text, names cannot add lines to a table, numbers are shown as they are.
Each test names the finding (or section 5/6 row) it closes.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from tests.cli_helpers import Inputs, fill, make_inputs, one_line_error, plan, tmpfs
from tpuplan.cli.common import clip, per_second
from tpuplan.cli.devices import PROVENANCE_WIDTH
from tpuplan.cli.schema import SCHEMAS
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.split.write import write_split


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("r3conventions"))


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["solve", "{profile}", "--tpus", "abc"], "--tpus must be a number or 'auto'"),
        (["solve", "missing.json", "--tpus", "abc"], "--tpus must be a number"),  # the flag before the file
        (["solve", "{profile}", "--tpus", "2", "--objective", "foo"], "--objective must be throughput or latency"),
        (["solve", "{profile}", "--tpus", "2", "--device", ""], "--device: an empty value"),
        (["solve", "{profile}", "--tpus", "2", "--device", ",,,"], "--device: an empty value"),
        (["solve", "{profile}", "--tpus", "2", "--host", ""], "--host: empty"),
        (["inspect", "{profile}", "--device", ""], "--device: empty"),
        (["schema", "foo"], "unknown document 'foo'"),
        (["run", "{root}", "--runner", "x"], "--runner must be tpuplan or pycoral"),
        (["run", "{root}", "--workers", "x"], "--workers must be threads or processes"),
        (["show", "{plan}", "--report", "{plan}"], "give --png too"),
        (["calibrate", "-o", "{root}/d.json"], "at least one sweep CSV"),
        (["calibrate", "--verify", "nocolon", "-o", "{root}/d.json"], "--verify takes PLAN.json:REPORT.json"),
    ],
)
def test_usage_errors_exit_2_everywhere(inputs: Inputs, args: list[str], text: str) -> None:
    """Section 5: `--tpus abc`, `--objective foo`, `plan schema foo` exited 1, not the documented 2."""
    given = [a.format(profile=inputs.profile, plan=inputs.plan, root=inputs.root) for a in args]
    one_line_error(plan(*given), text, 2)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_r37_every_document_has_a_schema_with_dialect_and_kind_required(name: str) -> None:
    """R37: `plan schema host` was refused; no schema for calibration, verify fit or devices; schemas had
    no `$schema` and did not require `kind`, which every reader checks first."""
    res = plan("schema", name)
    assert res.returncode == 0, res.stderr
    schema = json.loads(res.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"kind", "schema_version"} <= set(schema["required"]) and "kind" in schema["properties"]


def test_r37_the_devices_output_is_the_document_its_schema_describes() -> None:
    doc = json.loads(plan("devices", "--json").stdout)
    schema = json.loads(plan("schema", "devices").stdout)
    assert doc["kind"] == schema["properties"]["kind"]["const"] and set(schema["required"]) <= set(doc)
    assert {"host", "calibration", "verify-fit", "devices"} <= set(SCHEMAS)


def test_help_is_plain_text_without_emoji() -> None:
    """Section 5: rich turned `FILE:RUNNER:BATCH` in help into `FILE🏃BATCH` (the :runner: emoji)."""
    text = plan("calibrate", "--help").stdout
    assert "FILE:RUNNER:BATCH" in text and "\U0001f3c3" not in text and "─" not in text


def test_r36_a_name_with_control_characters_cannot_add_lines(inputs: Inputs, tmp_path: Path) -> None:
    """R36: a device name with a newline added fake lines ('period 0.001 ms ... 999999.0/s') to the plan
    table; ANSI escapes in names reached the terminal."""
    fake = "usb\nperiod      0.001 ms, set by the slowest stage   throughput 999999.0/s \x1b[31mred"
    device = tmp_path / "dev.json"
    write_doc(device, preset("edgetpu-usb").model_copy(update={"name": fake}))
    res = plan("solve", inputs.profile, "--tpus", "2", "--device", device)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert sum(ln.startswith("period") for ln in lines) == 1 and "\x1b" not in res.stdout
    assert "usb\\nperiod" in res.stdout and "\\x1b[31mred" in res.stdout
    err = plan("solve", tmp_path / "bad\nname.json", "--tpus", "2")
    assert err.returncode == 1 and err.stderr.count("\n") == 1 and "bad\\nname.json" in err.stderr


def test_throughput_below_one_per_second_is_not_shown_as_zero(inputs: Inputs, tmp_path: Path) -> None:
    """Section 5: a plan of 0.023/s printed 'throughput 0.0/s'."""
    assert (per_second(0.023), per_second(57.25), per_second(2631.6), per_second(0)) == (
        "0.023",
        "57.2",
        "2,631.6",
        "0.0",
    )
    slow = tmp_path / "slow.json"
    write_doc(slow, preset("edgetpu-usb").model_copy(update={"name": "slow", "invoke_overhead_us": 1e7}))
    res = plan("solve", inputs.profile, "--tpus", "1", "--device", slow)
    assert res.returncode == 0 and "throughput 0.0/s" not in res.stdout and "throughput 0.1/s" in res.stdout, res.stdout


def test_devices_table_cuts_between_words() -> None:
    """F46: a long column was cut at 60 characters mid-word ('... (2.048 us/KiB in'); now the provenance
    column is cut between words and marked, the whole text staying in `--json`."""
    from tpuplan.profiles.pricing.device import preset, preset_names
    from tpuplan.profiles.pricing.host import host_preset, host_preset_names

    specs = [preset(n) for n in preset_names()] + [host_preset(n) for n in host_preset_names()]
    whole = {s.name: s.calibration.provenance() for s in specs if s.calibration is not None}
    assert any(len(text) > PROVENANCE_WIDTH for text in whole.values())  # the case under test occurs
    table = plan("devices").stdout
    for name, text in whole.items():
        row = next(ln for ln in table.splitlines() if ln.startswith(name + " "))
        cell = row[row.index(text[:20]) :]
        if len(text) > PROVENANCE_WIDTH:
            assert cell.endswith("...") and len(cell) <= PROVENANCE_WIDTH and text.startswith(cell[:-3]), (cell, text)
            assert not text[len(cell) - 3].isalnum() or not text[len(cell) - 4].isalnum()
        else:
            assert cell == text
    assert clip("alpha beta gamma delta", 16) == "alpha beta..." and clip("short", 12) == "short"


def test_r29_a_full_tmpdir_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """R29: with TMPDIR on a full file system, run/verify/split said 'standard output: No space left'."""
    model = tmp_path / "fresh.tflite"
    model.write_bytes(synth_fc(24, depth=2, seed=int(time.time_ns() % 2**31)))  # never probed before
    with tmpfs(tmp_path / "full") as full:
        if full is None:
            pytest.skip("cannot mount a small file system here")
        fill(full)
        monkeypatch.setattr(tempfile, "tempdir", str(full))
        line = one_line_error(plan("split", model, "--cuts", "1", "-o", tmp_path / "segs"), "cannot write temporary")
        assert str(full) in line and "standard output" not in line and "TMPDIR" in line
        assert not (tmp_path / "segs").exists()


def test_one_interpreter_is_singular(tmp_path: Path) -> None:
    """Section 5: 'this machine ran 1 interpreters' worth of work'."""
    from tpuplan.runtime.verify import check

    assert "1 interpreter' worth" in check.cores_note(1.0, 3.0, 100.0, 90.0)
    assert "2 interpreters' worth" in check.cores_note(2.0, 3.0, 100.0, 90.0)


def test_split_refuses_dash_and_empty_cuts_as_usage(inputs: Inputs, tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(synth_fc(16, depth=2))
    write_split(parse_model(model.read_bytes(), model), tmp_path / "ok", cuts=[1])
    one_line_error(plan("split", model, "--cuts", "1,", "-o", tmp_path / "s"), "an empty item", 2)


def test_sweep_bounds_on_counts_and_synthetic_models(inputs: Inputs, tmp_path: Path) -> None:
    """Found by this issue's sweep: `plan verify -n 2^63` built every input in memory (16 GB before it was
    stopped), `plan run -n 2^63` would end in a RunResult traceback, `synth --depth 2^24` in MemoryError,
    and `synth conv --size 2^24` wrote a model tpuplan's own reader refuses."""
    for argv in (["verify", inputs.plan, "-m", inputs.model, "-n", "10001"], ["run", inputs.root, "-n", str(2**31)]):
        res = plan(*argv)
        assert res.returncode == 2 and "Traceback" not in res.stderr and "-n" in res.stderr, res.stderr
    out = tmp_path / "deep.tflite"
    one_line_error(plan("synth", "fc", "--width", "1", "--depth", str(2**24), "-o", out), "at most 16,384 layers")
    one_line_error(
        plan("synth", "conv", "--size", str(2**24), "--filters", "1", "--layers", "1", "-o", out), "not written"
    )
    assert not out.exists()
