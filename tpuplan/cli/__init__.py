"""The `plan` command: a thin shell over the library, and the only place TpuplanError is caught.

Each command group lives in its own module named after it and registers itself on `app`.

Start-up is lazy, for two reasons. Speed: a build calls `plan` once per model and K, and OR-Tools
(with pandas), numpy, matplotlib and the document models cost more than most commands' work, so each
command imports the library it needs in its body, and `plan --help` or `plan show` pays for none of
what it does not use. Quiet interrupts: this module imports only the standard library, the one
exception family and `cli.signals`, so that a Ctrl-C, SIGTERM or SIGHUP arriving while typer and the
library load reaches `main`'s handlers (one line, exit 130 or 128 + n) instead of printing a traceback
through import frames.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tpuplan.cli import signals
from tpuplan.profiles.errors import TpuplanError, printable

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
        name="plan",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain help: no emoji for ':runner:', no markup, no boxes (NO_COLOR, pipes)
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: errors become one line on stderr and exit code 1 (2: usage);
    SIGTERM and SIGHUP end in `plan: terminated` and 128 + n after the same clean-up as Ctrl-C; a reader
    of standard output that went away ends it quietly (`cli.signals`). The handlers are in place before
    typer and the library are imported (inside `_run`), so an early signal is as quiet."""
    try:
        with signals.handled():
            _run(argv)
    except TpuplanError as exc:
        print(f"plan: error: {printable(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("plan: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # writing to stdout on a full disk, a closed pipe, ...
        if isinstance(exc, BrokenPipeError) and signals.reader_gone():
            signals.quiet_broken_pipe()
        print(f"plan: error: {exc.filename or 'standard output'}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)


def _run(argv: list[str] | None) -> None:
    """The command; once SIGTERM or SIGHUP arrived, any ending is termination: code interrupted by it may
    have turned it into another error (an import cut short is an ImportError) or typer into exit 130.
    A Ctrl-C that typer turned into exit 130 is reported as one before typer loaded: `plan: interrupted`."""
    try:
        _command()(args=argv, standalone_mode=True, prog_name="plan")
    except BaseException as exc:
        signum = signals.received()
        if signum is not None:
            signals.end(signum)
        if signals.broken_stdout(exc):  # click turns a closed stdout into a silent exit 1
            signals.quiet_broken_pipe()
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
