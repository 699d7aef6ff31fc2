"""The cases of benchmarks/redteam_sweep.py (issue 22's fresh red-team sweep), by group."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.redteam_fixtures import Fixtures

if TYPE_CHECKING:
    from benchmarks.redteam_sweep import Case, Result

HOSTILE = ["-1", "0", "nan", "inf", str(2**63), "abc", "9" * 5000, ""]


def _outputs_equal_the_model(fx: Fixtures, out: str, source: str | None) -> Callable[[Result], str | None]:
    """A check: the saved outputs are bit-identical to the unsplit model run on the same inputs."""

    def check(res: Result) -> str | None:
        from tpuplan.runtime.backends.registry import InterpreterStage
        from tpuplan.runtime.tensors.inputs import InputSpec, open_inputs

        whole = InterpreterStage("whole", (fx.root / "m.tflite").read_bytes())
        specs = [InputSpec.from_details(d) for d in whole.input_details()]
        feeds = open_inputs(Path(source) if source else None, specs, count=None if source else 5)
        saved = np.load(out)
        for i, feed in enumerate(feeds):
            for name, want in whole.run(feed).items():
                if not np.array_equal(saved[name][i], want):
                    return f"output {name} of input {i} differs from the unsplit model"
        return None

    return check


def _numeric(fx: Fixtures) -> list[Case]:
    from benchmarks.redteam_sweep import Case

    flags = [
        (["solve", fx.p("prof.json"), "--tpus", "2"], "--time-limit"),
        (["solve", fx.p("prof.json")], "--tpus"),
        (["solve", fx.p("prof.json"), "--tpus", "auto"], "--max-tpus"),
        (["solve", fx.p("prof.json"), "--tpus", "auto"], "--tolerance"),
        (["solve", fx.p("prof.json"), "--tpus", "2"], "--batch"),
        (["solve", fx.p("prof.json"), "--tpus", "2"], "--workers"),
        (["solve", fx.p("prof.json"), "--tpus", "2"], "--seed"),
        (["solve", fx.p("prof.json")], "--cuts"),
        (["solve", fx.p("prof.json"), "--cuts", "3"], "--copies"),
        (["solve", fx.p("prof.json"), "--replicate"], "--tpus"),
        (["compare", fx.p("prof.json")], "--tpus"),
        (["run", fx.p("segs")], "-n"),
        (["run", fx.p("segs"), "-n", "3"], "--queue-size"),
        (["run", fx.p("segs"), "-n", "3"], "--seed"),
        (["verify", fx.p("cplan.json"), "-m", fx.p("m.tflite")], "-n"),
        (["verify", fx.p("cplan.json"), "-m", fx.p("m.tflite"), "-n", "2"], "--tolerance"),
        (["verify", fx.p("cplan.json"), "-m", fx.p("m.tflite"), "-n", "2"], "--tolerance-floor-us"),
        (["profile", fx.p("m.tflite"), "--measure"], "--repeats"),
        (["synth", "fc", "-o", fx.p("s.tflite"), "--force"], "--width"),
        (["synth", "conv", "-o", fx.p("s.tflite"), "--force"], "--size"),
        (["split", fx.p("m.tflite"), "-o", fx.p("sp")], "--cuts"),
    ]
    cases = []
    for argv, flag in flags:
        for value in HOSTILE:
            fine = (0, 1, 2, 3) if value not in ("nan", "abc", "", "9" * 5000) else (1, 2)  # 3: verify missed
            cases.append(Case("numeric flags", f"{argv[0]} {flag} {value[:12]!r}", [*argv, flag, value], fine))
    return cases


def _documents(fx: Fixtures) -> list[Case]:
    """Numeric leaves of each document (up to 12 per document) set to hostile JSON values, then read."""
    from benchmarks.redteam_sweep import Case

    readers = {
        "plan.json": ["show", "{doc}"],
        "rplan.json": ["show", "{doc}"],
        "cprof.json": ["solve", "{doc}", "--tpus", "2"],
        "host.json": ["solve", fx.p("prof.json"), "--tpus", "2", "--host", "{doc}"],
        "dev.json": ["solve", fx.p("prof.json"), "--tpus", "2", "--device", "{doc}"],
        "report.json": ["calibrate", "--verify", fx.p("cplan.json") + ":{doc}", "-o", fx.p("out_dev.json")],
        "segs/manifest.json": ["run", "{doc}", "-n", "2"],
    }
    values: list[Any] = [float("nan"), "5", True, -1, None, "HUGE", 1e300]
    cases = []
    for name, argv in readers.items():
        src = fx.root / name
        if not src.is_file():
            continue
        for where in _numeric_leaves(json.loads(src.read_text()))[:12]:
            for value in values:
                edited = json.loads(src.read_text())
                _set(edited, where, value)
                text = json.dumps(edited, allow_nan=True).replace('"HUGE"', "9" * 5000)
                target = fx.root / "edited" / name
                doc = target.parent if name.endswith("manifest.json") else target
                label = f"{name} {'.'.join(map(str, where))}={value!r}"[:100]
                setup = _writer(src, target, text)
                cases.append(Case("documents", label, [a.format(doc=doc) for a in argv], (0, 1, 2), setup=setup))
    return cases


def _writer(src: Path, target: Path, text: str) -> Callable[[], None]:
    def setup() -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.name == "manifest.json":  # an edited split: the segments beside the edited manifest
            for f in src.parent.iterdir():
                shutil.copy(f, target.parent / f.name)
        target.write_text(text)

    return setup


def _numeric_leaves(doc: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(doc, dict):
        return [leaf for k, v in doc.items() for leaf in _numeric_leaves(v, (*where, k))]
    if isinstance(doc, list):
        return [leaf for i, v in enumerate(doc[:2]) for leaf in _numeric_leaves(v, (*where, i))]
    return [where] if isinstance(doc, (int, float)) and not isinstance(doc, bool) else []


def _set(doc: Any, where: tuple[Any, ...], value: Any) -> None:
    for key in where[:-1]:
        doc = doc[key]
    doc[where[-1]] = value


def cases_in_process(fx: Fixtures) -> list[Case]:
    return [*_numeric(fx), *_documents(fx), *_inputs_cases(fx), *_refusals(fx), *_answers(fx)]


def _inputs_cases(fx: Fixtures) -> list[Case]:
    from benchmarks.redteam_sweep import Case

    cases = []
    for f in sorted((fx.root / "in").iterdir()):
        ok = f.name in ("good.npy", "good.npz", "big_endian.npy")  # float64 for a float32 input: refused
        codes = (0,) if ok else (1,)
        cases.append(Case("input formats", f"run -i in/{f.name}", ["run", fx.p("segs"), "-i", str(f)], codes))
        cases.append(
            Case(
                "input formats",
                f"verify -i in/{f.name}",
                ["verify", fx.p("cplan.json"), "-m", fx.p("m.tflite"), "-i", str(f), "-n", "2"],
                (0, 3) if ok else (1,),
            )
        )
    for d in ("img", "img16", "imgf", "imgbad", "imgempty"):
        cases.append(
            Case("input formats", f"run -i {d}", ["run", fx.p("csegs"), "-i", fx.p(d)], (0,) if d == "img" else (1,))
        )
    cases.append(
        Case(
            "input formats",
            "verify -n 10 of 5",
            ["verify", fx.p("cplan.json"), "-m", fx.p("m.tflite"), "-i", fx.p("in/good.npy"), "-n", "10"],
            (1,),
        )
    )
    return cases


def _refusals(fx: Fixtures) -> list[Case]:
    """Edits and requests that must be refused: exit 0 would be a wrong answer given silently."""
    from benchmarks.redteam_sweep import Case

    p = fx.p
    return [
        Case("must refuse", "--cuts ''", ["solve", p("prof.json"), "--cuts", ""], (2,)),
        Case("must refuse", "--cuts 1,,2", ["solve", p("prof.json"), "--cuts", "1,,2"], (2,)),
        Case("must refuse", "--copies 1,,2", ["solve", p("prof.json"), "--cuts", "3", "--copies", "1,,2"], (2,)),
        Case("must refuse", "--device ''", ["solve", p("prof.json"), "--tpus", "2", "--device", ""], (2,)),
        Case("must refuse", "--host ''", ["solve", p("prof.json"), "--tpus", "2", "--host", ""], (2,)),
        Case(
            "must refuse", "run --plan of another split", ["run", p("segs"), "--plan", p("rplan.json"), "-n", "2"], (1,)
        ),
        Case(
            "must refuse",
            "verify --tolerance 100",
            ["verify", p("cplan.json"), "-m", p("m.tflite"), "--tolerance", "100"],
            (2,),
        ),
        Case(
            "must refuse",
            "calibrate-host --name 300",
            ["calibrate-host", p("mprof.json"), "-o", p("h2.json"), "--name", "n" * 300],
            (2,),
        ),
        Case(
            "must refuse",
            "calibrate --name 300",
            ["calibrate", p("fc_single_tpu.csv"), "-o", p("d2.json"), "--name", "n" * 300],
            (2,),
        ),
        Case("must refuse", "schema foo", ["schema", "foo"], (2,)),
    ]


def _answers(fx: Fixtures) -> list[Case]:
    """Runs whose outputs must equal the unsplit model's."""
    from benchmarks.redteam_sweep import Case

    cases = []
    for label, extra, source in (
        ("random", [], None),
        ("npy", ["-i", fx.p("in/good.npy")], fx.p("in/good.npy")),
        ("npz", ["-i", fx.p("in/good.npz")], fx.p("in/good.npz")),
        ("copies", ["-n", "5"], None),
    ):
        segs = fx.p("rsegs") if label == "copies" else fx.p("segs")
        out = fx.p(f"ans_{label}.npz")
        argv = ["run", segs, "-o", out, *(extra or ["-n", "5"])] if extra else ["run", segs, "-o", out, "-n", "5"]
        cases.append(Case("answers", f"run -o ({label})", argv, (0,), check=_outputs_equal_the_model(fx, out, source)))
    return cases


def _targets(fx: Fixtures) -> list[tuple[str, str, bool, tuple[int, ...]]]:
    """(label, target, --force, exit codes allowed) for the outputs of one writer."""
    long_ok = "q" * 250
    return [
        ("existing, no --force", fx.p("existing.out"), False, (1,)),
        ("existing, --force", fx.p("existing.out"), True, (0, 1, 3)),
        ("an input, --force", "{input}", True, (1,)),
        ("inside an input dir, --force", fx.p("segs/x.out"), True, (0, 1, 3)),
        ("a directory", fx.p("in"), True, (1,)),
        ("a symlink, --force", fx.p("link.out"), True, (1,)),
        ("/dev/null, --force", "/dev/null", True, (1,)),
        ("/dev/full, --force", "/dev/full", True, (1,)),
        ("a FIFO, --force", fx.p("fifo.out"), True, (1,)),
        ("no such directory", fx.p("nodir/x.out"), False, (1,)),
        ("250-byte name", fx.p(long_ok), False, (0, 1, 3)),
        ("256-byte name", fx.p("q" * 256), False, (1,)),
        ("not UTF-8", os.fsdecode(os.fsencode(fx.p("o")) + b"\xff.out"), False, (0, 1, 3)),
        ("standard output", "-", False, (0, 1, 2, 3)),
    ]


def cases_in_subprocess(fx: Fixtures) -> list[Case]:
    from benchmarks.redteam_sweep import Case

    (fx.root / "existing.out").write_text("precious")
    (fx.root / "existing.npz").write_text("precious")
    for suffix in ("out", "npz"):
        (fx.root / f"link.{suffix}").symlink_to(fx.root / "host.json")
        os.mkfifo(fx.root / f"fifo.{suffix}")
    fx.freeze()
    p = fx.p
    writers: dict[str, tuple[list[str], str | None]] = {  # the command, and one of its own inputs
        "solve -o": (["solve", p("prof.json"), "--tpus", "2", "-o"], p("prof.json")),
        "compare -o": (["compare", p("prof.json"), "--tpus", "2", "-o"], p("prof.json")),
        "profile -o": (["profile", p("m.tflite"), "-o"], p("m.tflite")),
        "show -o": (["show", p("plan.json"), "-o"], p("plan.json")),
        "show --png": (["show", p("plan.json"), "--png"], p("plan.json")),
        "schema -o": (["schema", "plan", "-o"], None),
        "devices -o": (["devices", "-o"], None),
        "synth -o": (["synth", "fc", "--width", "8", "-o"], None),
        "calibrate -o": (["calibrate", p("fc_single_tpu.csv"), "-o"], p("fc_single_tpu.csv")),
        "calibrate-host -o": (["calibrate-host", p("mprof.json"), "-o"], p("mprof.json")),
        "run -o": (["run", p("segs"), "-i", p("in/good.npz"), "-n", "3", "-o"], p("in/good.npz")),
        "verify -o": (["verify", p("cplan.json"), "-m", p("m.tflite"), "-n", "2", "-q", "-o"], p("m.tflite")),
    }
    cases = []
    for writer, (argv, own) in writers.items():
        for label, target, force, codes in _targets(fx):
            if target == "{input}":
                if own is None:
                    continue
                target = own
            if writer == "run -o" and label.startswith("inside"):
                codes = (1,)  # segs is its input directory
            if writer == "run -o" and target not in ("-", "/dev/null", "/dev/full"):
                target = target.replace(".out", ".npz") if target.endswith(".out") else target
            touched = (Path(target),) if force and target != "-" else ()
            cases.append(
                Case(
                    "output targets",
                    f"{writer} {label}",
                    [*argv, target, *(["--force"] if force else [])],
                    codes,
                    may_change=touched,
                )
            )
    cases += _signals(fx) + _concurrency(fx) + _pipes(fx)
    return cases


def _signals(fx: Fixtures) -> list[Case]:
    from benchmarks.redteam_sweep import Case

    p = fx.p
    commands = {
        "run threads -o": ["run", p("segs"), "-n", "100000", "-q", "-o", p("sig.npz")],
        "run processes": ["run", p("segs"), "-n", "100000", "-q", "--workers", "processes"],
        "verify -o": ["verify", p("cplan.json"), "-m", p("m.tflite"), "-n", "400", "-q", "-o", p("sig.json")],
        "split": ["split", p("m.tflite"), p("cplan.json"), "-o", p("sigsegs")],
        "solve": ["solve", p("prof.json"), "--tpus", "auto", "--max-tpus", "6"],
    }
    cases = []
    for name, argv in commands.items():
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            for delay in (0.8, 1.6, 3.0, 5.0):
                codes = (0, 128 + signum) if signum != signal.SIGINT else (0, 130)
                cases.append(Case("signals", f"{name} {signum.name} at {delay} s", argv, codes, send=(signum, delay)))
    return cases


def _concurrency(fx: Fixtures) -> list[Case]:
    from benchmarks.redteam_sweep import Case

    p = fx.p
    races = {  # (what, how many at once, the command): each writes one output without --force
        "5 x solve -o": (5, ["solve", p("prof.json"), "--tpus", "2", "-o", p("race.json")]),
        "3 x run -o": (3, ["run", p("segs"), "-n", "200", "-o", p("race.npz")]),
        "3 x split": (3, ["split", p("m.tflite"), p("cplan.json"), "-o", p("racesegs")]),
    }
    return [Case("concurrency", f"{name}, no --force", argv, (0, 1), parallel=n) for name, (n, argv) in races.items()]


def _pipes(fx: Fixtures) -> list[Case]:
    from benchmarks.redteam_sweep import Case

    p = fx.p
    return [
        Case(
            "signals", "run | reader gone", ["run", p("segs"), "-n", "1000000", "-q"], (141,), stdout_closed_after=1.0
        ),
        Case(
            "signals",
            "solve auto | reader gone",
            ["solve", p("prof.json"), "--tpus", "auto"],
            (0, 141),
            stdout_closed_after=0.5,
        ),
    ]
