"""Numbers the cost formula can be evaluated on during a fit: linear forms and dual numbers.

The fit does not spell the formula out again: it evaluates `profiles.pricing.formula` itself. Each term
of a measured stage is linear in the fitted coefficients once the caching is fixed, so evaluating the
terms on `Lin` coefficients gives their linear forms, built once. The composition (the serialized
share is coefficient x term) and the period (a max) are not linear: they are evaluated, for all rows at
once, on `Dual` numbers (value and gradient) at every step of the fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class Lin:
    """sum_i c_i theta_i + c: coefficients over the fitted parameters, the constant last."""

    __slots__ = ("v",)
    __array_ufunc__ = None  # numpy defers to these operators instead of making arrays of objects

    def __init__(self, v: F64) -> None:
        self.v = v

    @staticmethod
    def const(n: int, value: float) -> Lin:
        v = np.zeros(n + 1)
        v[-1] = value
        return Lin(v)

    @staticmethod
    def unit(n: int, i: int) -> Lin:
        v = np.zeros(n + 1)
        v[i] = 1.0
        return Lin(v)

    def __add__(self, other: Any) -> Lin:
        if isinstance(other, Lin):
            return Lin(self.v + other.v)
        out = self.v.copy()
        out[-1] += float(other)
        return Lin(out)

    __radd__ = __add__

    def __mul__(self, other: Any) -> Lin:
        if isinstance(other, Lin):
            if np.any(other.v[:-1]) and np.any(self.v[:-1]):
                raise ValueError("a product of two fitted parameters is not a linear form")
            return Lin(self.v * other.v[-1]) if not np.any(other.v[:-1]) else Lin(other.v * self.v[-1])
        return Lin(self.v * float(other))

    __rmul__ = __mul__


def stack(forms: list[Any], n: int) -> F64:
    """Linear forms (or plain numbers) as rows of coefficients."""
    return np.array([f.v if isinstance(f, Lin) else Lin.const(n, float(f)).v for f in forms])


class Dual:
    """Values with their gradients over the parameters: value shape S, gradient shape S + (n,)."""

    __slots__ = ("g", "v")
    __array_ufunc__ = None

    def __init__(self, v: F64, g: F64) -> None:
        self.v, self.g = v, g

    @staticmethod
    def at(coefs: F64, theta: F64) -> Dual:
        """The linear forms `coefs` (..., n + 1) at the parameters theta (n,)."""
        return Dual(coefs[..., :-1] @ theta + coefs[..., -1], coefs[..., :-1].copy())

    def __add__(self, other: Any) -> Dual:
        if isinstance(other, Dual):
            return Dual(self.v + other.v, self.g + other.g)
        return Dual(self.v + other, self.g + 0.0)

    __radd__ = __add__

    def __mul__(self, other: Any) -> Dual:
        if isinstance(other, Dual):
            return Dual(self.v * other.v, self.g * other.v[..., None] + other.g * self.v[..., None])
        o = np.asarray(other, dtype=np.float64)
        return Dual(self.v * o, self.g * o[..., None])

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Dual:
        o = np.asarray(other, dtype=np.float64)
        return Dual(self.v / o, self.g / o[..., None])

    def __getitem__(self, index: Any) -> Dual:
        return Dual(self.v[index], self.g[index])

    @staticmethod
    def maximum(a: Any, b: Any) -> Dual:
        """The larger of two, with the gradient of the one taken (the first on ties)."""
        a, b = _dual(a, b), _dual(b, a)
        first = a.v >= b.v
        return Dual(np.where(first, a.v, b.v), np.where(first[..., None], a.g, b.g))

    @staticmethod
    def where(cond: npt.NDArray[np.bool_], a: Dual, b: Dual) -> Dual:
        return Dual(np.where(cond, a.v, b.v), np.where(cond[..., None], a.g, b.g))


def _dual(x: Any, like: Any) -> Dual:
    if isinstance(x, Dual):
        return x
    shape, n = like.v.shape, like.g.shape[-1]
    return Dual(np.broadcast_to(np.asarray(x, dtype=np.float64), shape).copy(), np.zeros((*shape, n)))
