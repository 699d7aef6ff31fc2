"""The fixtures of benchmarks/redteam_sweep.py: models, plans, splits, documents and hostile inputs, made
in a scratch directory (nothing from ../shared), and undone after every case."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SWEEP_CSV = (
    "Hidden neurons,# MACs,On chip mem used,Off chip mem used,Inference time\n"
    "100,1,0.05,0,0.1\n200,1,0.1,0,0.2\n300,1,0.2,0,0.3\n"
)


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
    from tpuplan.planner.plan_build import evaluate
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
