"""`plan schema`: the JSON Schema of every document tpuplan reads or writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from tpuplan.cli.common import FORCE_HELP, check_output, write_output
from tpuplan.planner.baselines import Comparison
from tpuplan.planner.plan import Plan
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.runtime.run import RunResult
from tpuplan.runtime.split.manifest import SegmentManifest
from tpuplan.runtime.verify.check import VerifyReport

SCHEMAS: dict[str, type[BaseModel]] = {
    "profile": Profile,
    "device": DeviceSpec,
    "plan": Plan,
    "comparison": Comparison,
    "manifest": SegmentManifest,
    "run": RunResult,
    "report": VerifyReport,
}


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema_cmd(
        document: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCHEMAS)}.")],
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the JSON Schema here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Accepted for uniformity: a schema is JSON.")] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Print the JSON Schema of a tpuplan document, for build systems that read our output."""
        if output is not None:
            check_output(output, force=force)
        if document not in SCHEMAS:
            raise TpuplanError(f"unknown document {document!r} (known: {', '.join(SCHEMAS)})")
        text = json.dumps(SCHEMAS[document].model_json_schema(), indent=2) + "\n"
        if output is not None:
            write_output(output, text.encode())
        typer.echo(text, nl=False)
