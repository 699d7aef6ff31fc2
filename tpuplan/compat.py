"""What Python 3.9 lacks and tpuplan uses, in one place.

The runtime (split, run, verify, the Edge TPU delegate, the pycoral runner) runs on the Python that Coral
hosts have: 3.9 on Raspberry Pi OS bullseye and Debian 11, where Google's pycoral and tflite-runtime wheels
stop. The planner needs 3.10 or newer (OR-Tools' CP-SAT and its own code). On 3.10 and newer these are the
standard library's own; on 3.9 they are small stand-ins with the same behaviour.

- `zip_strict(a, b, ...)` is `zip(a, b, ..., strict=True)`: an iterable that ends before the others is a
  bug, and silently dropping the rest would hide it.
- `pairwise(xs)` is `itertools.pairwise`.
- `resolve_annotations(fn)` turns a function's string annotations (`from __future__ import annotations`)
  into objects, reading `X | None` on 3.9 too: typer evaluates the annotations of every `plan` command, and
  3.9 cannot evaluate `X | None` itself (pydantic does the same through eval_type_backport on its own).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ForwardRef, TypeVar, overload

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")

__all__ = ["pairwise", "resolve_annotations", "zip_strict"]

_MISSING = object()


@overload
def zip_strict(a: Iterable[A], /) -> Iterator[tuple[A]]: ...
@overload
def zip_strict(a: Iterable[A], b: Iterable[B], /) -> Iterator[tuple[A, B]]: ...
@overload
def zip_strict(a: Iterable[A], b: Iterable[B], c: Iterable[C], /) -> Iterator[tuple[A, B, C]]: ...
@overload
def zip_strict(a: Iterable[A], b: Iterable[B], c: Iterable[C], d: Iterable[D], /) -> Iterator[tuple[A, B, C, D]]: ...
@overload
def zip_strict(*iterables: Iterable[Any]) -> Iterator[tuple[Any, ...]]: ...
def zip_strict(*iterables: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    """zip(..., strict=True): ValueError when the iterables differ in length."""
    if sys.version_info >= (3, 10):
        return zip(*iterables, strict=True)
    return _zip_strict_39(iterables)


def _zip_strict_39(iterables: tuple[Iterable[Any], ...]) -> Iterator[tuple[Any, ...]]:
    for combo in itertools.zip_longest(*iterables, fillvalue=_MISSING):
        if any(value is _MISSING for value in combo):
            raise ValueError("zip_strict: the iterables differ in length")
        yield combo


def pairwise(iterable: Iterable[A]) -> Iterator[tuple[A, A]]:
    """(s0, s1), (s1, s2), ...: itertools.pairwise (3.10)."""
    if sys.version_info >= (3, 10):
        return itertools.pairwise(iterable)
    first, second = itertools.tee(iterable)
    next(second, None)
    return zip(first, second)


def resolve_annotations(fn: Callable[..., Any]) -> None:
    """Evaluate `fn`'s string annotations in its module's namespace, in place; `X | Y` is read as
    Union[X, Y] on 3.9 (eval_type_backport, a dependency there). Nothing to do on 3.10 and newer."""
    if sys.version_info >= (3, 10):
        return
    from eval_type_backport import eval_type_backport

    namespace = getattr(fn, "__globals__", {})
    fn.__annotations__ = {
        name: eval_type_backport(ForwardRef(hint), namespace, None) if isinstance(hint, str) else hint
        for name, hint in fn.__annotations__.items()
    }
