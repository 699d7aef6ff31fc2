"""`plan schema`: the JSON Schema of every document tpuplan reads or writes."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from pydantic import BaseModel

from tpuplan.planner.baselines import Comparison
from tpuplan.planner.plan import Plan
from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.runtime.manifest import SegmentManifest
from tpuplan.runtime.run import RunResult
from tpuplan.runtime.verify import VerifyReport

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
    def schema_cmd(document: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCHEMAS)}.")]) -> None:
        """Print the JSON Schema of a tpuplan document, for build systems that read our output."""
        if document not in SCHEMAS:
            raise TpuplanError(f"unknown document {document!r} (known: {', '.join(SCHEMAS)})")
        typer.echo(json.dumps(SCHEMAS[document].model_json_schema(), indent=2))
