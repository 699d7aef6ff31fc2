"""`plan schema`: the JSON Schema of every document tpuplan reads or writes.

Each schema names its dialect (`$schema`) and requires `kind` and `schema_version`, which every reader
checks first: a document without them is refused, so a schema that let them out would accept it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tpuplan.cli.common import FORCE_HELP, check_output, is_stdout, write_output
from tpuplan.profiles.errors import UsageError

# Document name -> (module, class): only the document asked for is imported (its module may be large).
SCHEMAS: dict[str, tuple[str, str]] = {
    "profile": ("tpuplan.profiles.model", "Profile"),
    "device": ("tpuplan.profiles.pricing.device", "DeviceSpec"),
    "host": ("tpuplan.profiles.pricing.host", "HostSpec"),
    "plan": ("tpuplan.planner.plan", "Plan"),
    "comparison": ("tpuplan.planner.comparison", "Comparison"),
    "manifest": ("tpuplan.runtime.split.manifest", "SegmentManifest"),
    "run": ("tpuplan.runtime.run", "RunResult"),
    "report": ("tpuplan.runtime.verify.report", "VerifyReport"),
    "calibration": ("tpuplan.profiles.calibration.result", "CalibrationResult"),
    "verify-fit": ("tpuplan.runtime.verify.refit", "VerifyFit"),
    "devices": ("tpuplan.runtime.backends.catalog", "DevicesDoc"),
}
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_of(document: str) -> dict[str, Any]:
    """The JSON Schema of the document named `document` (one of SCHEMAS), with its dialect, and `kind`
    and `schema_version` required."""
    if document not in SCHEMAS:
        raise UsageError(f"unknown document {document!r} (known: {', '.join(SCHEMAS)})")
    module, name = SCHEMAS[document]
    schema: dict[str, Any] = getattr(importlib.import_module(module), name).model_json_schema()
    required = list(schema.get("required", []))
    for field in ("schema_version", "kind"):
        if field in schema.get("properties", {}) and field not in required:
            required.insert(0, field)
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
        text = json.dumps(schema_of(document), indent=2) + "\n"
        if output is not None:
            write_output(output, text.encode(), force=force)
        if not is_stdout(output):
            typer.echo(text, nl=False)
