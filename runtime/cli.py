"""The `plan` command: a thin layer over the library; the only place TpuplanError is caught."""

from __future__ import annotations

import sys

import typer

from profiles.errors import TpuplanError

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


def _register() -> None:
    import importlib

    for name in ("runtime.cli_profile", "runtime.cli_plan", "runtime.cli_run", "runtime.cli_verify",
                 "runtime.cli_synth"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: errors become one line on stderr and exit code 1."""
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except TpuplanError as exc:
        print(f"plan: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("plan: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
