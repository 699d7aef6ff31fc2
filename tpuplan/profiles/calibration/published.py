"""Published single-Edge-TPU times of real architectures, read in place from their README table.

../shared/models/published/README.md gives, per model file, Coral's published time of one inference on a
desktop with a USB 3.0 Accelerator and on the Dev Board (C++ benchmark, model execution only). Each
column is a calibration source of its own: the same models on another device and host. The models are
read where they are (the table names the files beside it); nothing is copied.

    column                                   device        host
    Desktop CPU + USB Accelerator (USB 3.0)  edgetpu-usb   desktop-x86 (C++, no runner)
    Dev Board                                edgetpu-pci   arm-a53 (C++, no runner)
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tpuplan.profiles.calibration.measurements import MeasuredFile, Measurement, RunSpec, Sweep
from tpuplan.profiles.docio import read_bytes
from tpuplan.profiles.errors import TpuplanError

README = "README.md"
COLUMNS = {
    "usb3": ("published-usb3", RunSpec(host="desktop-x86", device="edgetpu-usb", group="published")),
    "devboard": ("published-devboard", RunSpec(host="arm-a53", device="edgetpu-pci", group="published")),
}
_ROW = re.compile(r"^\|\s*`(?P<file>[^`]+\.tflite)`\s*\|(?P<rest>.*)\|\s*$")


def _times(cells: list[str], where: str) -> tuple[float, float]:
    """The row's last two cells: the USB 3.0 desktop time and the Dev Board time, in ms."""
    try:
        usb, board = float(cells[-2]), float(cells[-1])
    except (ValueError, IndexError):
        raise TpuplanError(f"{where}: expected two times in ms at the end of the row") from None
    if not (0 < usb <= 1e6 and 0 < board <= 1e6):
        raise TpuplanError(f"{where}: times out of range")
    return usb, board


def read_published(folder: Path) -> list[MeasuredFile]:
    """The two sources of a published table: one row per model file, each source with its device and host."""
    path = Path(folder) / README
    raw = read_bytes(path, what="published-times README", max_bytes=1 << 20)
    digest = hashlib.sha256(raw).hexdigest()
    rows: dict[str, list[Measurement]] = {key: [] for key in COLUMNS}
    for line_no, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        m = _ROW.match(line.strip())
        if not m:
            continue
        where = f"{path}:{line_no}"
        model = Path(folder) / m["file"]
        if not model.is_file():
            raise TpuplanError(f"{where}: {m['file']} is not beside the table")
        usb, board = _times([c.strip() for c in m["rest"].split("|")], where)
        index = len(rows["usb3"])
        for key, ms in (("usb3", usb), ("devboard", board)):
            rows[key].append(Measurement("model", index, 0, (0.0,), (0.0,), ms, line_no, str(model)))
    if not rows["usb3"]:
        raise TpuplanError(f"{path}: no table rows of model files and times")
    return [MeasuredFile(Sweep(name, digest, "model", 1, rows[key]), run) for key, (name, run) in COLUMNS.items()]
