"""The `plan` command: a thin shell over the library, and the only place TpuplanError is caught.

Each command group lives in its own module named after it and registers itself on `app`.

Start-up is lazy, for two reasons. Speed: a build calls `plan` once per model and K, and OR-Tools
(with pandas), numpy, matplotlib and the document models cost more than most commands' work, so each
command imports the library it needs in its body, and `plan --help` or `plan show` pays for none of
what it does not use. Quiet interrupts: this module imports only the standard library and the one
exception family, so that a Ctrl-C or SIGTERM arriving while typer and the library load reaches
`main`'s handlers (one line, exit 130 or 143) instead of printing a traceback through import frames.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from tpuplan.profiles.errors import TpuplanError

if TYPE_CHECKING:
    import typer

HELP = (
    "Split one TFLite model into pipeline segments over several Coral Edge TPUs.\n\n"
    "model -> `plan profile` -> `plan solve` -> `plan split` -> `plan run` / `plan verify`.\n"
    "Exit codes: 0 ok, 1 bad input or impossible request (one line on stderr), 2 usage error, "
    "3 `plan verify` found a prediction outside tolerance."
)


@functools.cache
def _app() -> typer.Typer:
    """The typer application with every command group registered, built on first use (see above)."""
    import typer

    from tpuplan.cli import (
        calibrate,
        calibrate_host,
        devices,
        profile,
        root,
        run,
        schema,
        show,
        solve,
        split,
        synth,
        tune,
        verify,
    )

    app = typer.Typer(
        name="plan", help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )
    for module in (
        root,
        profile,
        schema,
        devices,
        solve,
        show,
        split,
        run,
        verify,
        tune,
        synth,
        calibrate,
        calibrate_host,
    ):
        module.register(app)
    return app


def __getattr__(name: str) -> Any:
    """`tpuplan.cli.app`, built when first asked for (PEP 562)."""
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _command() -> Callable[..., object]:
    """The click command behind `app`, built once: typer would build it again on every call (0.1 s).
    Typer reads every command's annotations; on Python 3.9 they are evaluated for it first."""
    import typer

    app = _app()
    _resolve(app)
    return typer.main.get_command(app)


def _resolve(group: typer.Typer) -> None:
    """Every command's annotations as objects (`X | None` too, on Python 3.9), in every sub-group."""
    from tpuplan.compat import resolve_annotations

    for info in group.registered_commands:
        if info.callback is not None:
            resolve_annotations(info.callback)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _resolve(sub.typer_instance)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C into whatever runs, so that every `finally` and context manager
    (temporary, staging and probe directories, atomic writes) cleans up before the process ends."""


_SIGTERM = threading.Event()  # set once SIGTERM arrived, whatever the interrupted code made of it


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _SIGTERM.set()
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: errors become one line on stderr and exit code 1; SIGTERM
    ends in `plan: terminated` and exit 143 after the same clean-up as Ctrl-C. The handlers are in
    place before typer and the library are imported (inside `_run`), so an early signal is as quiet."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    _SIGTERM.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        _run(argv)
    except TpuplanError as exc:
        print(f"plan: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("plan: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # writing to stdout on a full disk, a closed pipe, ...
        print(f"plan: error: {exc.filename or 'standard output'}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> None:
    """The command; once SIGTERM arrived, any ending is termination: code interrupted by it may have
    turned it into another error (an import cut short is an ImportError) or typer into exit 130.
    A Ctrl-C that typer turned into exit 130 is reported as one before typer loaded: `plan: interrupted`."""
    try:
        _command()(args=argv, standalone_mode=True, prog_name="plan")
    except BaseException as exc:
        if _SIGTERM.is_set():
            print("plan: terminated", file=sys.stderr)
            sys.exit(128 + signal.SIGTERM)
        if isinstance(exc, SystemExit) and _caused_by_interrupt(exc):
            raise KeyboardInterrupt from None
        raise


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the exceptions that led to `exc`."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False
