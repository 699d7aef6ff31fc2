"""The `plan` command: a thin shell over the library, and the only place TpuplanError is caught.

Each command group lives in its own module named after it and registers itself on `app`.
"""

from __future__ import annotations

import sys

import typer

from tpuplan.cli import calibrate, calibrate_host, devices, profile, run, schema, show, solve, split, synth, verify
from tpuplan.profiles.errors import TpuplanError

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
)
for _module in (profile, schema, devices, solve, show, split, run, verify, synth, calibrate, calibrate_host):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: errors become one line on stderr and exit code 1."""
    try:
        app(args=argv, standalone_mode=True)
    except TpuplanError as exc:
        print(f"plan: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("plan: interrupted", file=sys.stderr)
        sys.exit(130)
