"""Rule expressions: a whitelisted Python subset compiled once to numpy.

``compile_expression`` parses with ``ast`` (never ``eval``), checks every node
against a whitelist, and returns a ``CompiledExpr`` whose ``fn`` maps an
``EvalContext`` (columns of the state table for the rule's rows) to one numpy
array: one call evaluates the rule for every matching asset.

Durations such as ``5m`` are written as numbers of seconds before parsing.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .windows import EventWindow, Window

Array = npt.NDArray[np.float64] | npt.NDArray[np.bool_]
Fn = Callable[["EvalContext"], Array]

_DURATION = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(ms|s|m|h|d)\b")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: Names that are not points: device health, provided by the state table.
RESERVED = frozenset({"offline", "online", "stale_points"})


class EvalContext(Protocol):
    now: float

    def column(self, point: str) -> npt.NDArray[np.float64]: ...
    def age(self, point: str) -> npt.NDArray[np.float64]: ...
    def param(self, name: str) -> npt.NDArray[np.float64]: ...
    def health(self, name: str) -> Array: ...
    def newest(self, points: frozenset[str]) -> npt.NDArray[np.float64]:
        """Per row, the time of the newest sample among ``points``."""
        ...

    def valid(self, points: frozenset[str]) -> npt.NDArray[np.bool_]:
        """Per row, whether every one of ``points`` is good and fresh."""
        ...

    def local_hours(self) -> float:
        """Hours since local midnight at the site (0 ≤ h < 24)."""
        ...

    def has(self, point: str) -> npt.NDArray[np.bool_]:
        """Per row, whether the asset's own profile provides ``point``."""
        ...


class ExpressionError(ValueError):
    def __init__(self, message: str, column: int) -> None:
        self.column = column  # 1-based, within the expression text
        super().__init__(message)


@dataclass
class CompiledExpr:
    text: str
    fn: Fn
    points: set[str] = field(default_factory=set)  # points whose quality gates the result
    aged_points: set[str] = field(default_factory=set)  # points used only through age()
    params: set[str] = field(default_factory=set)
    windows: list[Window | EventWindow] = field(default_factory=list)  # history this expression keeps
    provided: set[str] = field(default_factory=set)  # points asked about only through has()
    #: A top-level ``a or b or …``: each alternative and the points it reads. The engine drops, per
    #: asset, an alternative that reads a point the asset's profile does not provide, so a device
    #: that reports its own verdict (a fault code) is judged on it even without the other signals.
    branches: list[tuple[Fn, frozenset[str]]] = field(default_factory=list)

    @property
    def history_bytes(self) -> int:
        return sum(w.nbytes for w in self.windows)


_BINOPS: dict[type[ast.operator], Callable[[Array, Array], Array]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Mod: np.mod,
    ast.Pow: np.power,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Array, Array], Array]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}


def _between(x: Array, lo: Array, hi: Array) -> Array:
    return np.logical_and(np.greater_equal(x, lo), np.less_equal(x, hi))


def _imbalance(*phases: Array) -> Array:
    """Largest deviation from the mean ÷ the mean (unbalance without sequence values)."""
    stack = np.stack(np.broadcast_arrays(*phases))
    mean = stack.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: Array = np.abs(stack - mean).max(axis=0) / mean
    return result


_FUNCTIONS: dict[str, tuple[int, Callable[..., Array]]] = {
    "abs": (1, np.abs),
    "min": (2, np.minimum),
    "max": (2, np.maximum),
    "between": (3, _between),
}
#: Windowed functions: name → what the window aggregates.
_WINDOWED = {
    "avg_over": "avg",
    "min_over": "min",
    "max_over": "max",
    "stddev_over": "stddev",
    "delta": "delta",
    "rate": "rate",
    "count_true": "sum",
    "zscore": "zscore",
}
#: Exact event counts (rules/windows.EventWindow): name → what counts as one event.
_EVENTS = {"rises": "rises", "increase": "increase", "changes": "changes"}
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def truthy(a: Array) -> npt.NDArray[np.bool_]:
    """Numbers as conditions: non-zero is true, NaN (no value) is false."""
    arr = np.asarray(a)
    if arr.dtype == np.bool_:
        return arr.astype(np.bool_, copy=False)
    return np.asarray(np.nan_to_num(arr, nan=0.0) != 0, dtype=np.bool_)


def in_seconds(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with every duration written as seconds (Python syntax), and the shifts that
    map a column of the result back to ``text`` (see ``original_column``)."""
    shifts: list[tuple[int, int]] = []  # (position in rewritten text, length change)

    def seconds(m: re.Match[str]) -> str:
        value = repr(float(m.group(1)) * _SECONDS[m.group(2)])
        shifts.append((m.start() + sum(d for _, d in shifts), len(value) - len(m.group(0))))
        return value

    return _DURATION.sub(seconds, text), shifts


def compile_expression(text: str, *, known_points: set[str] | None = None) -> CompiledExpr:
    """Compile ``text``; ``known_points`` (when given) rejects unknown names."""
    source, shifts = in_seconds(text)
    try:
        tree = ast.parse(source, mode="eval")
        out = CompiledExpr(text=text, fn=lambda ctx: np.zeros(0))
        compiler = _Compiler(out, known_points)
        body = tree.body
        if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.Or):
            out.branches = [compiler.part(v) for v in body.values]
            out.fn = _fold([fn for fn, _points in out.branches], np.logical_or)
        else:
            out.fn = compiler.visit(body)
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", original_column(exc.offset or 1, shifts)) from None
    except ExpressionError as exc:
        exc.column = original_column(exc.column, shifts)
        raise
    return out


def _fold(parts: list[Fn], combine: Callable[[Array, Array], Array]) -> Fn:
    """``a and b and …`` (``np.logical_and``) or ``a or b or …`` (``np.logical_or``), as truth values."""

    def run(ctx: EvalContext) -> Array:
        acc: Array = truthy(parts[0](ctx))
        for p in parts[1:]:
            acc = combine(acc, truthy(p(ctx)))
        return acc

    return run


def original_column(column: int, shifts: list[tuple[int, int]]) -> int:
    """Map a column of the rewritten text back to the text the user wrote."""
    return column - sum(d for pos, d in shifts if pos < column - 1)


def _near(name: str, known: set[str]) -> str:
    """`` (did you mean 'suction_pressure'?)`` for a misspelt point, else nothing."""
    near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


class _Compiler:
    def __init__(self, out: CompiledExpr, known: set[str] | None) -> None:
        self.out = out
        self.known = known

    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        return ExpressionError(message, getattr(node, "col_offset", 0) + 1)

    def visit(self, node: ast.expr) -> Fn:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"{type(node).__name__} is not allowed in a rule expression")
        fn: Fn = method(node)
        return fn

    def visit_Constant(self, node: ast.Constant) -> Fn:
        if isinstance(node.value, bool | int | float):
            value = float(node.value)
            return lambda ctx: np.float64(value)  # type: ignore[return-value]
        raise self.fail(node, f"constant {node.value!r} is not a number")

    def visit_Name(self, node: ast.Name) -> Fn:
        name = node.id
        if name in ("True", "False"):
            value = name == "True"
            return lambda ctx: np.bool_(value)  # type: ignore[return-value]
        if name in RESERVED:
            return lambda ctx: ctx.health(name)
        if self.known is not None and name not in self.known:
            raise self.fail(node, f"unknown point {name!r}{_near(name, self.known)}")
        self.out.points.add(name)
        return lambda ctx: ctx.column(name)

    def visit_Attribute(self, node: ast.Attribute) -> Fn:
        if isinstance(node.value, ast.Name) and node.value.id == "param":
            pname = node.attr
            self.out.params.add(pname)
            return lambda ctx: ctx.param(pname)
        raise self.fail(node, "only param.<name> attributes are allowed")

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Fn:
        inner = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda ctx: np.logical_not(truthy(inner(ctx)))
        if isinstance(node.op, ast.USub):
            return lambda ctx: np.negative(inner(ctx))
        if isinstance(node.op, ast.UAdd):
            return inner
        raise self.fail(node, "operator not allowed")

    def visit_BinOp(self, node: ast.BinOp) -> Fn:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(node, f"operator {type(node.op).__name__} not allowed")
        left, right = self.visit(node.left), self.visit(node.right)
        return lambda ctx: op(left(ctx), right(ctx))

    def visit_BoolOp(self, node: ast.BoolOp) -> Fn:
        parts = [self.visit(v) for v in node.values]
        return _fold(parts, np.logical_or if isinstance(node.op, ast.Or) else np.logical_and)

    def part(self, node: ast.expr) -> tuple[Fn, frozenset[str]]:
        """Compile a sub-expression on its own: its function and the points it reads (gated ones)."""
        inner = CompiledExpr(text="", fn=lambda ctx: np.zeros(0))
        fn = _Compiler(inner, self.known).visit(node)
        self.out.points |= inner.points
        self.out.aged_points |= inner.aged_points
        self.out.provided |= inner.provided
        self.out.params |= inner.params
        self.out.windows += inner.windows
        return fn, frozenset(inner.points)

    def visit_Compare(self, node: ast.Compare) -> Fn:
        operands = [self.visit(node.left), *(self.visit(c) for c in node.comparators)]
        ops = []
        for op in node.ops:
            fn = _CMPOPS.get(type(op))
            if fn is None:
                raise self.fail(node, f"comparison {type(op).__name__} not allowed")
            ops.append(fn)

        def run(ctx: EvalContext) -> Array:
            values = [o(ctx) for o in operands]
            acc = ops[0](values[0], values[1])
            for i in range(1, len(ops)):
                acc = np.logical_and(acc, ops[i](values[i], values[i + 1]))
            return acc

        return run

    def visit_Call(self, node: ast.Call) -> Fn:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise self.fail(node, "only plain calls of known functions are allowed")
        name = node.func.id
        if name == "age":
            point = self._point_arg(node, name)
            self.out.aged_points.add(point)
            return lambda ctx: ctx.age(point)
        if name == "has":
            point = self._point_arg(node, name)
            self.out.provided.add(point)
            return lambda ctx: ctx.has(point)
        if name in _WINDOWED or name in _EVENTS:
            return self._windowed(node, name)
        if name == "imbalance":
            if len(node.args) < 2:
                raise self.fail(node, "imbalance() takes two or more arguments")
            parts = [self.visit(a) for a in node.args]
            return lambda ctx: _imbalance(*(p(ctx) for p in parts))
        if name == "time_of_day":
            if node.args:
                raise self.fail(node, "time_of_day() takes no arguments")
            return lambda ctx: np.float64(ctx.local_hours())  # type: ignore[return-value]
        if name == "in_hours":
            return self._in_hours(node)
        if name not in _FUNCTIONS:
            raise self.fail(node, f"unknown function {name!r}")
        arity, impl = _FUNCTIONS[name]
        if len(node.args) != arity:
            raise self.fail(node, f"{name}() takes {arity} argument(s), got {len(node.args)}")
        args = [self.visit(a) for a in node.args]
        return lambda ctx: impl(*(a(ctx) for a in args))

    def _point_arg(self, node: ast.Call, name: str) -> str:
        """The one point name that ``age()`` and ``has()`` take (not gated on its quality)."""
        if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
            raise self.fail(node, f"{name}() takes one point name")
        point = node.args[0].id
        if self.known is not None and point not in self.known:
            raise self.fail(node.args[0], f"unknown point {point!r}{_near(point, self.known)}")
        return point

    def _windowed(self, node: ast.Call, name: str) -> Fn:
        if len(node.args) != 2:
            raise self.fail(node, f"{name}() takes a series and a window, e.g. {name}(x, 5m)")
        span = node.args[1]
        if not (isinstance(span, ast.Constant) and isinstance(span.value, int | float) and span.value > 0):
            raise self.fail(span, f"the window of {name}() must be a duration such as 5m")
        source, points = self.part(node.args[0])
        if name in _EVENTS:
            return self._events(source, points, EventWindow(float(span.value), _EVENTS[name]))
        window = Window(float(span.value))
        self.out.windows.append(window)
        kind = _WINDOWED[name]

        def run(ctx: EvalContext) -> Array:
            values = np.asarray(truthy(source(ctx)) if kind == "sum" else source(ctx), dtype=np.float64)
            newest = ctx.newest(points)
            current = np.broadcast_to(values, newest.shape).astype(np.float64)
            window.add(ctx.now, current, newest, ctx.valid(points))
            if kind == "zscore":
                with np.errstate(invalid="ignore", divide="ignore"):
                    z: Array = (current - window.aggregate("avg", ctx.now)) / window.aggregate(
                        "stddev", ctx.now
                    )
                return z
            return window.aggregate(kind, ctx.now)

        return run

    def _events(self, source: Fn, points: frozenset[str], window: EventWindow) -> Fn:
        self.out.windows.append(window)

        def run(ctx: EvalContext) -> Array:
            raw = source(ctx)
            values = np.asarray(truthy(raw) if window.kind == "rises" else raw, dtype=np.float64)
            newest = ctx.newest(points)
            current = np.broadcast_to(values, newest.shape).astype(np.float64)
            window.add(current, newest, ctx.valid(points))
            return window.total(ctx.now)

        return run

    def _in_hours(self, node: ast.Call) -> Fn:
        arg = node.args[0] if len(node.args) == 1 else None
        m = _HOURS.match(arg.value) if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
        if m is None:
            raise self.fail(node, 'in_hours() takes one text such as "01:00-05:00"')
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        start, end = h1 + m1 / 60, h2 + m2 / 60
        if not (0 <= start <= 24 and 0 <= end <= 24):
            raise self.fail(node, "in_hours() times must be within 00:00-24:00")

        def run(ctx: EvalContext) -> Array:
            h = ctx.local_hours()
            inside = start <= h < end if start <= end else (h >= start or h < end)  # may wrap midnight
            return np.bool_(inside)  # type: ignore[return-value]

        return run
