"""The Edge TPU boundary: find the devices and load the libedgetpu delegate the way pycoral does.

Everything device-specific is imported lazily so that the planner and the CPU runtime work on a
machine with no Edge TPU, no libedgetpu and no pycoral.
"""

from __future__ import annotations

import ctypes
import importlib
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.backends.litert import tflite_module

# Coral USB Accelerator: Global Unichip ID until libedgetpu uploads the firmware, Google ID after.
CORAL_USB_IDS = frozenset({("1a6e", "089a"), ("18d1", "9302")})
_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
_DEVICE_RE = re.compile(r"^(?:(?:usb|pci)(?::\d+)?|:\d+)?$")
_RUNTIME_HINT = "install libedgetpu1-std from Coral's apt repository"


def edgetpu_library_name(system: str | None = None) -> str:
    """File name of libedgetpu for this OS, or for `system` as platform.system() names it."""
    name = platform.system() if system is None else system
    try:
        return _LIBRARIES[name]
    except KeyError:
        raise TpuplanError(f"the Edge TPU runtime does not exist for {name!r}") from None


def parse_device(spec: str) -> str:
    """Check a pycoral device string ('', ':N', 'usb', 'usb:N', 'pci', 'pci:N') and return it unchanged."""
    if not _DEVICE_RE.match(spec):
        raise TpuplanError(f"bad Edge TPU device {spec!r}: expected '', ':N', 'usb', 'usb:N', 'pci' or 'pci:N'")
    return spec


def _read_id(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip().lower()
    except (OSError, UnicodeDecodeError):
        return ""


def _natural(path: Path) -> tuple[int, str]:
    """apex_2 before apex_10."""
    return (len(path.name), path.name)


def _scan(root: Path) -> list[dict[str, str]]:
    """Devices visible in /dev and sysfs under `root`; used when pycoral is not installed."""
    found = [{"type": "pci", "path": str(p)} for p in sorted((root / "dev").glob("apex_*"), key=_natural)]
    try:
        usb = sorted((root / "sys" / "bus" / "usb" / "devices").iterdir())
    except OSError:
        usb = []
    for dev in usb:
        if (_read_id(dev / "idVendor"), _read_id(dev / "idProduct")) in CORAL_USB_IDS:
            found.append({"type": "usb", "path": str(dev)})
    return found


def list_edge_tpus(*, root: Path | None = None) -> list[dict[str, str]]:
    """Edge TPUs on this host as [{'type': 'usb'|'pci', 'path': ...}]; [] when there are none.

    With pycoral installed its own enumeration is used (the order libedgetpu numbers devices in);
    otherwise /dev/apex_* and the Coral USB IDs in sysfs are scanned. `root` scans a copy of the
    file system instead (tests) and skips pycoral.
    """
    return enumerate_edge_tpus(root=root)[0]


def enumerate_edge_tpus(*, root: Path | None = None) -> tuple[list[dict[str, str]], str]:
    """The Edge TPUs present and how they were found: libedgetpu's own enumeration through Google's
    pycoral (imported only now, and only if installed), else a scan of /dev and sysfs."""
    scanned = "a scan of /dev/apex_* and the Coral USB IDs in sysfs"
    if root is not None:
        return _scan(root), scanned
    try:  # Google's pycoral, only if the user installed it (never the unrelated PyPI package)
        coral_list: Callable[[], Any] = importlib.import_module("pycoral.utils.edgetpu").list_edge_tpus
    except (ImportError, OSError, AttributeError):
        return _scan(Path("/")), f"{scanned} (Google's pycoral is not installed)"
    try:
        found = [{"type": str(d["type"]), "path": str(d["path"])} for d in coral_list()]
    except (RuntimeError, OSError, KeyError, TypeError) as exc:
        return _scan(Path("/")), f"{scanned} (pycoral's list_edge_tpus failed: {exc})"
    return found, "libedgetpu's enumeration (pycoral.utils.edgetpu.list_edge_tpus)"


def device_strings(devices: list[dict[str, str]]) -> list[str]:
    """'usb:0', 'usb:1', 'pci:0', ... numbered per type in listing order."""
    seen: dict[str, int] = {}
    names = []
    for dev in devices:
        kind = dev["type"]
        names.append(f"{kind}:{seen.get(kind, 0)}")
        seen[kind] = seen.get(kind, 0) + 1
    return names


def require_tpus(n: int) -> list[str]:
    """Device strings for `n` pipeline stages, one Edge TPU each, or a TpuplanError saying what is missing."""
    if n < 0:
        raise TpuplanError(f"cannot ask for {n} Edge TPUs")
    present = device_strings(list_edge_tpus())
    if len(present) < n:
        listed = ", ".join(present) if present else "none found in /dev/apex_* or on USB"
        raise TpuplanError(f"{n} stages need {n} Edge TPUs but {len(present)} are present: {listed}")
    return present[:n]


def _load_delegate_fn() -> Callable[..., Any]:
    fn: Callable[..., Any] = tflite_module().load_delegate
    return fn


def _dlopen(library: str) -> None:
    """Fail early with a plain OSError; LiteRT's half-built Delegate would print a stray __del__ error."""
    ctypes.CDLL(library)


def load_edgetpu_delegate(device: str, options: dict[str, str] | None = None) -> Any:
    """Load libedgetpu for one device; pycoral passes the device string as the 'device' option.

    `device` wins over a 'device' key in `options`; '' means any Edge TPU, so no key is passed then.
    """
    parse_device(device)
    library = edgetpu_library_name()
    merged = dict(options or {})
    if device:
        merged["device"] = device
    else:
        merged.pop("device", None)
    load = _load_delegate_fn()
    try:
        _dlopen(library)
        return load(library, merged)
    except OSError as exc:
        raise TpuplanError(
            f"cannot load the Edge TPU delegate {library} for device {device!r}: {exc}; {_RUNTIME_HINT}"
        ) from exc
    except ValueError as exc:
        detail = str(exc).strip() or "libedgetpu found no such device"
        raise TpuplanError(
            f"cannot load the Edge TPU delegate {library} for device {device!r}: {detail}; "
            "check that the Edge TPU is connected and not used by another process"
        ) from exc
