"""The fixtures and cases of benchmarks/redteam_sweep.py (issue 22's fresh red-team sweep)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from benchmarks.redteam_sweep import Case, Result

SWEEP_CSV = (
    "Hidden neurons,# MACs,On chip mem used,Off chip mem used,Inference time\n"
    "100,1,0.05,0,0.1\n200,1,0.1,0,0.2\n300,1,0.2,0,0.3\n"
)
HOSTILE = ["-1", "0", "nan", "inf", str(2**63), "abc", "9" * 5000, ""]


@dataclass
class Fixtures:
    root: Path
    tmp: Path
    originals: dict[str, bytes] = field(default_factory=dict)
    paths: set[str] = field(default_factory=set)

    def p(self, name: str) -> str:
        return str(self.root / name)

    def freeze(self) -> None:
        self.paths = {str(p) for p in self.root.rglob("*")}
        self.originals = {str(p): p.read_bytes() for p in self.root.rglob("*") if p.is_file() and not p.is_symlink()}

    def restore(self, before: dict[str, str]) -> None:
        """Undo what a case wrote: new files and directories go, changed originals come back."""
        for path in sorted(self.root.rglob("*"), key=lambda q: -len(q.parts)):
            if str(path) not in self.paths:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        for name, data in self.originals.items():
            path = Path(name)
            if not path.is_file() or path.read_bytes() != data:
                path.write_bytes(data)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _inputs(d: Path) -> None:
    d.mkdir()
    rng = np.random.default_rng(0)
    good = rng.standard_normal((5, 1, 64)).astype(np.float32)
    np.save(d / "good.npy", good)
    np.savez(d / "good.npz", input=good)
    np.save(d / "empty.npy", good[:0])
    (d / "neg.npy").write_bytes(_npy_header((-3, 1, 64)))
    (d / "huge.npy").write_bytes(_npy_header((10**12, 1, 64)) + b"\0" * 64)
    (d / "trunc.npy").write_bytes((d / "good.npy").read_bytes()[:-40])
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        bad = good.copy()
        bad[1, 0, 5] = value  # the second input: within any -n of the cases
        np.save(d / f"{name}.npy", bad)
    np.save(d / "i64.npy", good.astype(np.int64))
    np.save(d / "f64.npy", good.astype(np.float64))
    np.save(d / "big_endian.npy", good.astype(">f4"))
    np.save(d / "obj.npy", np.array([None, 1], dtype=object))
    np.save(d / "fortran.npy", np.asfortranarray(good.reshape(5, 64)))
    (d / "zero.npy").write_bytes(b"")
    (d / "text.npy").write_text("not numpy")
    (d / "zero.npz").write_bytes(b"")
    np.savez(d / "wrong_name.npz", x=good)
    data = bytearray((d / "good.npz").read_bytes())
    local, central = bytes(data).find(b"PK\x03\x04"), bytes(data).find(b"PK\x01\x02")
    enc, m9, crc = bytearray(data), bytearray(data), bytearray(data)
    enc[local + 6] |= 1
    enc[central + 8] |= 1
    m9[local + 8 : local + 10] = m9[central + 10 : central + 12] = struct.pack("<H", 9)
    crc[central - 10] ^= 0xFF
    for name, blob in (("enc.npz", enc), ("m9.npz", m9), ("crc.npz", crc)):
        (d / name).write_bytes(bytes(blob))
    with zipfile.ZipFile(d / "dup.npz", "w") as zf:
        zf.writestr("input.npy", (d / "good.npy").read_bytes())
        zf.writestr("input.npy", (d / "good.npy").read_bytes())


def _images(root: Path) -> None:
    from PIL import Image

    for name in ("img", "img16", "imgf", "imgbad", "imgempty"):
        (root / name).mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(root / "img" / f"{i}.png")
    Image.fromarray(np.full((20, 24), 40000, np.uint16)).save(root / "img16" / "a.png")
    Image.fromarray(np.full((20, 24), 0.5, np.float32)).save(root / "imgf" / "a.png", format="TIFF")
    (root / "imgbad" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "imgempty" / "notes.txt").write_text("no images")


def build_fixtures(root: Path) -> Fixtures:
    """Models, profiles, plans, splits, a verify report, documents and inputs, made here."""
    from tpuplan.planner.plan import evaluate
    from tpuplan.planner.solve import solve
    from tpuplan.profiles.build import build_profile
    from tpuplan.profiles.docio import write_doc
    from tpuplan.profiles.pricing.device import preset
    from tpuplan.profiles.pricing.host import host_preset
    from tpuplan.profiles.synth import synth_conv, synth_fc
    from tpuplan.profiles.tflite.reader import parse_model
    from tpuplan.runtime.split.write import write_split

    fx = Fixtures(root, root / "tmp")
    fx.tmp.mkdir()
    model, conv = root / "m.tflite", root / "conv.tflite"
    model.write_bytes(synth_fc(64, depth=3))
    conv.write_bytes(synth_conv(8, 2, 16, 3))
    loaded = parse_model(model.read_bytes(), model)
    prof, cprof = build_profile(loaded, preset("edgetpu-usb")), build_profile(loaded, preset("cpu"))
    write_doc(root / "prof.json", prof)
    write_doc(root / "plan.json", solve(prof, 2))
    write_doc(root / "cprof.json", cprof)
    cplan = solve(cprof, 2)
    write_doc(root / "cplan.json", cplan)
    write_split(loaded, root / "segs", plan=cplan)
    rplan = evaluate(prof, None, [3], copies=[2, 1])
    write_doc(root / "rplan.json", rplan)
    write_split(loaded, root / "rsegs", plan=rplan)
    write_split(parse_model(conv.read_bytes(), conv), root / "csegs", cuts=[1])
    write_doc(root / "host.json", host_preset("tpuplan"))
    write_doc(root / "dev.json", preset("edgetpu-usb"))
    (root / "fc_single_tpu.csv").write_text(SWEEP_CSV)
    exe = [str(Path(sys.executable).parent / "plan")]
    subprocess.run(
        [*exe, "verify", fx.p("cplan.json"), "-m", str(model), "-n", "3", "-q", "-o", fx.p("report.json")],
        check=False,
        capture_output=True,
    )
    subprocess.run(
        [*exe, "profile", str(model), "--measure", "--repeats", "1", "-q", "-o", fx.p("mprof.json")],
        check=True,
        capture_output=True,
    )
    _inputs(root / "in")
    _images(root)
    fx.freeze()
    return fx


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
    return [
        Case(
            "concurrency",
            "5 x solve -o, no --force",
            ["solve", p("prof.json"), "--tpus", "2", "-o", p("race.json")],
            (0, 1),
            parallel=5,
        ),
        Case(
            "concurrency",
            "3 x run -o, no --force",
            ["run", p("segs"), "-n", "200", "-o", p("race.npz")],
            (0, 1),
            parallel=3,
        ),
        Case(
            "concurrency",
            "3 x split, no --force",
            ["split", p("m.tflite"), p("cplan.json"), "-o", p("racesegs")],
            (0, 1),
            parallel=3,
        ),
    ]


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
