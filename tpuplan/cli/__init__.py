"""The `plan` command: a thin shell over the library, and the only place TpuplanError is caught.

Each command group lives in its own module named after it and registers itself on `app`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import typer

from tpuplan.cli import (
    calibrate,
    calibrate_host,
    devices,
    profile,
    run,
    schema,
    show,
    signals,
    solve,
    split,
    synth,
    verify,
)
from tpuplan.profiles.errors import TpuplanError, printable

app = typer.Typer(
    name="plan",
    help=(
        "Split one TFLite model into pipeline segments over several Coral Edge TPUs.\n\n"
        "model -> `plan profile` -> `plan solve` -> `plan split` -> `plan run` / `plan verify`.\n"
        "Exit codes: 0 ok, 1 bad input or impossible request (one line on stderr), 2 usage error, "
        "3 `plan verify` found a prediction outside tolerance."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no emoji for ':runner:', no markup, no boxes (NO_COLOR, pipes)
)
for _module in (profile, schema, devices, solve, show, split, run, verify, synth, calibrate, calibrate_host):
    _module.register(app)


@functools.cache
def _command() -> Callable[..., object]:
    """The click command behind `app`, built once: typer would build it again on every call (0.1 s)."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: errors become one line on stderr and exit code 1 (2: usage);
    SIGTERM and SIGHUP end in `plan: terminated` and 128 + n after the same clean-up as Ctrl-C; a reader
    of standard output that went away ends it quietly (`cli.signals`)."""
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
    have turned it into another error (an import cut short is an ImportError) or typer into exit 130."""
    try:
        _command()(args=argv, standalone_mode=True, prog_name="plan")
    except BaseException as exc:
        signum = signals.received()
        if signum is not None:
            signals.end(signum)
        if signals.broken_stdout(exc):  # click turns a closed stdout into a silent exit 1
            signals.quiet_broken_pipe()
        raise
