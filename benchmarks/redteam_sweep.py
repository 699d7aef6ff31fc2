"""A red-team sweep of the command line (issue 22): hostile values, targets, inputs, signals, concurrency.

Every case runs `plan` as a user would, in a scratch directory of generated fixtures, and is judged on
what a script relies on: no traceback; an error is one line on stderr with exit 1 (bad input) or 2
(usage); no file that existed before is changed or lost unless the case asked for it (`--force` on that
very output); nothing is left behind (hidden staging files, temporary directories, shared memory); no
hang; and no wrong answer given silently (exit 0 where a refusal was due, or outputs that differ from the
unsplit model's). Fast groups run in this process (`tpuplan.cli.main`, as the tests do); whatever needs
a real process (special files, signals, pipes, concurrency) runs the console script.

    python -m benchmarks.redteam_sweep            # prints the counts per group, writes results/redteam_sweep.json
    python -m benchmarks.redteam_sweep answers    # one group (or several) only: printed, not written
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_results
from benchmarks.redteam_cases import cases_in_process, cases_in_subprocess
from benchmarks.redteam_fixtures import Fixtures, build_fixtures

PLAN_BIN = Path(sys.executable).parent / "plan"
TIMEOUT_S = 90.0


@dataclass
class Case:
    """One command and what may come of it."""

    group: str
    name: str
    argv: list[str]
    codes: tuple[int, ...] = (0, 1, 2)  # exit codes that are not a wrong answer
    may_change: tuple[Path, ...] = ()  # files the case is allowed to write (its own --force output)
    check: Callable[[Result], str | None] | None = None  # a silent wrong answer, said in words
    send: tuple[int, float] | None = None  # a signal and when (s after start); subprocess only
    stdout_closed_after: float | None = None  # close the reader of stdout after this long; subprocess only
    parallel: int = 1  # run this many at once (subprocess only): without --force exactly one may succeed
    setup: Callable[[], None] | None = None  # writes the case's own edited inputs


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Outcome:
    group: str
    name: str
    code: int
    problems: list[str] = field(default_factory=list)


def _before_main(res: Result) -> bool:
    """A signal that ended the process before `plan` had installed its handlers: killed by it outright, or
    a KeyboardInterrupt traceback through the imports of the console script."""
    return res.code < 0 or ("KeyboardInterrupt" in res.stderr and "from tpuplan.cli import main" in res.stderr)


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every regular file under root (symbolic links are not followed)."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(root: Path, shm_before: set[str]) -> list[str]:
    left = [str(p) for p in root.rglob("*") if p.name.startswith((".tpuplan-", "tpuplan-"))]
    shm = Path("/dev/shm")
    if shm.is_dir():
        left += [f"/dev/shm/{n}" for n in sorted({p.name for p in shm.iterdir()} - shm_before)]
    return left


class Hung(BaseException):
    """A case in this process that took longer than TIMEOUT_S."""


def _hung(signum: int, frame: Any) -> None:
    raise Hung


def run_in_process(argv: list[str]) -> Result:
    from tpuplan import cli

    out, err = io.StringIO(), io.StringIO()
    code, started = 0, time.monotonic()
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Hung:
        err.write("\nHUNG")
        code = 124
    except BaseException as exc:  # what main let through is a traceback for a user (MemoryError too)
        err.write(f"Traceback (in process): {type(exc).__name__}: {exc}\n")
        code = 99
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Result(code, out.getvalue(), err.getvalue(), time.monotonic() - started)


def run_subprocess(case: Case, env: dict[str, str]) -> list[Result]:
    exe = [str(PLAN_BIN)] if PLAN_BIN.is_file() else [sys.executable, "-m", "tpuplan"]
    started = time.monotonic()
    children = []
    reads: list[int] = []
    for _ in range(case.parallel):
        if case.stdout_closed_after is not None:
            read, write = os.pipe()
            child = subprocess.Popen(
                [*exe, *case.argv], stdout=write, stderr=subprocess.PIPE, env=env, text=True, errors="replace"
            )
            os.close(write)
            reads.append(read)
        else:
            child = subprocess.Popen(
                [*exe, *case.argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, errors="replace"
            )
        children.append(child)
    if case.send is not None:
        time.sleep(case.send[1])
        for child in children:
            child.send_signal(case.send[0])
    if case.stdout_closed_after is not None:
        time.sleep(case.stdout_closed_after)
        for read in reads:
            os.close(read)
    results = []
    for child in children:
        try:
            out, err = child.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            results.append(Result(124, out or "", (err or "") + "\nHUNG", time.monotonic() - started))
            continue
        results.append(Result(child.returncode, out or "", err or "", time.monotonic() - started))
    return results


def judge(case: Case, res: Result, lost: list[str], left: list[str]) -> list[str]:
    if case.send is not None and _before_main(res):
        return ["start-up (R15)"]  # the signal came while Python imported tpuplan: issue-startup's to close
    problems = []
    text = res.stdout + res.stderr
    if "Traceback" in text or res.code == 99:
        problems.append("traceback")
    if "HUNG" in res.stderr:
        problems.append("hang")
    if res.code in (1, 2):
        lines = res.stderr.strip().splitlines()
        errors = [ln for ln in lines if ln.startswith("plan: error:")]
        usage = res.code == 2 and lines[:1] and lines[0].startswith("Usage: plan") and lines[-1].startswith("Error:")
        if not usage and (len(errors) != 1 or lines[-1] != errors[0]):  # click's own usage errors keep its form
            problems.append("not one line")
    if res.code not in case.codes:
        problems.append("wrong answer" if res.code == 0 else f"exit {res.code}")
    if lost:
        problems.append("file lost")
    if left:
        problems.append("left behind")
    if case.check is not None and not problems:
        wrong = case.check(res)
        if wrong:
            problems.append("wrong answer")
    return problems


def sweep(fx: Fixtures, cases: list[Case], in_process: bool) -> Iterator[Outcome]:
    env = {**os.environ, "TMPDIR": str(fx.tmp)}
    for case in cases:
        before = snapshot(fx.root)
        if case.setup is not None:
            case.setup()
        shm_before = {p.name for p in Path("/dev/shm").iterdir()} if Path("/dev/shm").is_dir() else set()
        results = [run_in_process(case.argv)] if in_process else run_subprocess(case, env)
        time.sleep(0.05 if in_process else 0.3)  # a stage process's shared memory goes a moment after it
        after = snapshot(fx.root)
        allowed = {str(p) for p in case.may_change}
        lost = [p for p, digest in before.items() if p not in allowed and after.get(p) != digest]
        left = leftovers(fx.root, shm_before)
        for path in left:  # clean up so one case does not count for the next
            if Path(path).is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                Path(path).unlink(missing_ok=True)
        outcomes = [Outcome(case.group, case.name, res.code, judge(case, res, lost, left)) for res in results]
        if case.parallel > 1 and sum(res.code == 0 for res in results) != 1:
            outcomes[0].problems.append("wrong answer")  # none, or more than one, wrote the one output
        yield from outcomes
        fx.restore(before)


MEMORY_LIMIT = 6 << 30  # a case that would take all the memory of a shared machine fails instead


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="rt-sweep-") as scratch:
        fx = build_fixtures(Path(scratch))
        tempfile.tempdir = str(fx.tmp)
        only = set(sys.argv[1:])  # group names to run (all when none given)
        chosen_in = [c for c in cases_in_process(fx) if not only or c.group in only]
        outcomes += sweep(fx, chosen_in, True)
        summarize(outcomes, write=not only)  # written after each phase: a long sweep keeps what it found
        chosen_sub = [c for c in cases_in_subprocess(fx) if not only or c.group in only]
        outcomes += sweep(fx, chosen_sub, False)
    summarize(outcomes, write=not only)


def summarize(outcomes: list[Outcome], *, write: bool) -> None:
    """Print the counts per group and the cases with a problem; with `write`, the results JSON too."""
    groups = sorted({o.group for o in outcomes})
    kinds = ["traceback", "file lost", "wrong answer", "hang", "left behind", "not one line", "start-up (R15)"]
    rows: list[dict[str, Any]] = []
    for g in groups:
        mine = [o for o in outcomes if o.group == g]
        count = Counter(p if not p.startswith("exit ") else "exit" for o in mine for p in o.problems)
        rows.append({"group": g, "runs": len(mine), **{k: count.get(k, 0) for k in [*kinds, "exit"]}})
    total = {"group": "all", "runs": len(outcomes), **{k: sum(int(r[k]) for r in rows) for k in [*kinds, "exit"]}}
    head = ["group", "runs", *kinds, "exit"]
    print("  ".join(f"{h:>12}" for h in head))
    for r in [*rows, total]:
        print("  ".join(f"{r[h]!s:>12}" for h in head))
    bad = [o for o in outcomes if o.problems]
    for o in bad[:60]:
        print(f"  {o.group}: {o.name[:90]} -> exit {o.code}: {', '.join(o.problems)}")
    problems = [{"group": o.group, "case": o.name[:200], "exit": o.code, "problems": o.problems} for o in bad]
    if write:
        write_results("redteam_sweep", {"counts": [*rows, total], "problems": problems})
    sys.stdout.flush()


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
