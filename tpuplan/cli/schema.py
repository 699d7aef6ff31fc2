"""`plan schema`: the JSON Schema of every document tpuplan reads or writes.

Each schema names its dialect (`$schema`) and requires `kind` and `schema_version`, which every reader
checks first: a document without them is refused, so a schema that let them out would accept it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from tpuplan.cli.common import FORCE_HELP, check_output, is_stdout, write_output
from tpuplan.cli.devices import DevicesDoc
from tpuplan.planner.baselines import Comparison
from tpuplan.planner.plan import Plan
from tpuplan.profiles.calibration.fit import CalibrationResult
from tpuplan.profiles.errors import UsageError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.runtime.run import RunResult
from tpuplan.runtime.split.manifest import SegmentManifest
from tpuplan.runtime.verify.check import VerifyReport
from tpuplan.runtime.verify.refit import VerifyFit

SCHEMAS: dict[str, type[BaseModel]] = {
    "profile": Profile,
    "device": DeviceSpec,
    "host": HostSpec,
    "plan": Plan,
    "comparison": Comparison,
    "manifest": SegmentManifest,
    "run": RunResult,
    "report": VerifyReport,
    "calibration": CalibrationResult,
    "verify-fit": VerifyFit,
    "devices": DevicesDoc,
}
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its dialect, and `kind` and `schema_version` required."""
    schema = model.model_json_schema()
    required = list(schema.get("required", []))
    for name in ("schema_version", "kind"):
        if name in schema.get("properties", {}) and name not in required:
            required.insert(0, name)
    return {"$schema": DIALECT, **schema, "required": required}


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema_cmd(
        document: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCHEMAS)}.")],
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the JSON Schema here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Accepted for uniformity: a schema is JSON.")] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Print the JSON Schema of a tpuplan document, for build systems that read our output."""
        if document not in SCHEMAS:
            raise UsageError(f"unknown document {document!r} (known: {', '.join(SCHEMAS)})")
        if output is not None:
            check_output(output, force=force)
        text = json.dumps(json_schema(SCHEMAS[document]), indent=2) + "\n"
        if output is not None:
            write_output(output, text.encode(), force=force)
        if not is_stdout(output):
            typer.echo(text, nl=False)
