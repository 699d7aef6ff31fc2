"""`plan split`: cut a model into the segment files of a plan (or of explicit cuts)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import JSON_HELP, check_output, mib, parse_cuts, read_model, shown, table
from tpuplan.runtime.progress import QUIET_HELP, progress_bar
from tpuplan.runtime.split.flags import COMPILER_FLAGS

if TYPE_CHECKING:
    from tpuplan.runtime.split.manifest import SegmentManifest

COMPILER_ARGS_HELP = (
    "With --compile: flags passed on to edgetpu_compiler and recorded in the manifest, e.g. "
    "'--min_runtime_version 13 --search_delegate'. Accepted: " + ", ".join(COMPILER_FLAGS) + "."
)


def _names(specs: list[str], width: int = 48) -> str:
    text = ", ".join(specs) if specs else "-"
    return text if len(text) <= width else text[: width - 3] + "..."


def split_table(manifest: SegmentManifest, out_dir: Path) -> str:
    compiled = any(s.compiled is not None for s in manifest.segments)
    head = ["#", "file", "ops", "inputs", "outputs", "bytes"]
    if compiled:
        head += ["on-chip MiB", "off-chip MiB", "CPU ops"]
    rows: list[list[object]] = []
    warnings: list[str] = []
    for s in manifest.segments:
        row: list[object] = [
            s.index,
            s.file,
            f"{s.first_op}..{s.last_op} ({s.last_op - s.first_op + 1})",
            _names([t.name for t in s.inputs]),
            _names([t.name for t in s.outputs]),
            s.bytes,
        ]
        if s.compiled is not None:
            rep = s.compiled.report
            row += [mib(rep.onchip_bytes), mib(rep.offchip_bytes), rep.ops_on_cpu if rep.ops_on_cpu else 0]
            warnings += [f"warning: segment {s.index}: {w}" for w in s.compiled.warnings]
        elif compiled:
            row += ["-", "-", "-"]
        rows.append(row)
    right = [True, False, False, False, False, True] + [True] * (len(head) - 6)
    lines = [
        f"model  {shown(manifest.model.path)}  sha256 {manifest.model.sha256[:12]}  cuts {manifest.cuts or '-'}",
        *(
            [f"compiled with edgetpu_compiler -s {shown(' '.join(manifest.compiler_args))}".rstrip()]
            if manifest.compiler_args is not None
            else []
        ),
        "",
        table(head, rows, right=right),
        "",
        *map(shown, warnings),
        f"wrote {len(manifest.segments)} segments and manifest.json to {shown(str(out_dir))}",
    ]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("split")
    def split_cmd(
        model: Annotated[Path, typer.Argument(help="The CPU .tflite model the plan was made for.")],
        plan: Annotated[
            Path | None, typer.Argument(help="Plan JSON from `plan solve` (or give --cuts instead).")
        ] = None,
        output: Annotated[Path, typer.Option("--output", "-o", help="Directory to create with the segments.")] = Path(
            "segments"
        ),
        cuts: Annotated[
            str | None, typer.Option("--cuts", help="Cuts instead of a plan: a stage ends at each op, e.g. 3,10.")
        ] = None,
        compile_: Annotated[
            bool, typer.Option("--compile", help="Also run edgetpu_compiler on every segment.")
        ] = False,
        compiler_args: Annotated[
            str | None, typer.Option("--compiler-args", help=COMPILER_ARGS_HELP, metavar="'FLAGS'")
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Replace the output directory if it holds an earlier split.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    ) -> None:
        """Write each stage of a plan as its own .tflite segment, plus manifest.json describing them."""
        from tpuplan.planner.plan import load_plan
        from tpuplan.profiles.docio import dump_json
        from tpuplan.runtime.split.compiler import parse_compiler_args
        from tpuplan.runtime.split.write import write_split

        if (plan is None) == (cuts is None):
            raise typer.BadParameter("give exactly one of PLAN or --cuts")
        if compiler_args is not None and not compile_:
            raise typer.BadParameter("--compiler-args goes with --compile")
        flags = parse_compiler_args(compiler_args or "")
        check_output(output, force=force, inputs=[model] + ([plan] if plan else []), directory=True)
        cut_list = parse_cuts(cuts) if cuts is not None else None
        plan_doc = load_plan(plan) if plan is not None else None
        with progress_bar(quiet) as progress:
            manifest = write_split(
                read_model(model),
                output,
                plan=plan_doc,
                cuts=cut_list,
                compile=compile_,
                compiler_args=flags,
                force=force,
                progress=progress,
            )
        if as_json:
            sys.stdout.write(dump_json(manifest))
        else:
            typer.echo(split_table(manifest, output))
