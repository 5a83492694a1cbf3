"""The rule engine: every rule compiled once, evaluated over whole columns.

Third stage of the pipeline. ``RuleEngine.evaluate`` reads the state table and
returns, per rule, two boolean arrays over the rule's assets: where ``when``
holds and where ``clear`` holds. Both are gated on the points the rule reads
being good and fresh, so a failed or stale read can neither raise nor clear a
process alert; device health (``offline``) is always known and needs no gate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

import numpy as np
import numpy.typing as npt

from monitord.core.assets import Asset
from monitord.ingest.state import StateTable, TypeTable

from .expr import Array, CompiledExpr, EvalContext, Fn, compile_expression, truthy
from .spec import AppliesTo, RuleSpec, TicketPolicy

Bools = npt.NDArray[np.bool_]
log = logging.getLogger(__name__)
#: The alert a rule raises when it fails at run time (it is then disabled; the daemon keeps running).
RULE_ERROR = RuleSpec(
    id="monitord.rule_error",
    applies_to=AppliesTo(),
    when="False",
    severity="major",
    ticket=TicketPolicy(priority="P2", skill="it"),
    summary="a rule failed and is disabled",
)


class RuleError(ValueError):
    pass


@dataclass
class CompiledRule:
    spec: RuleSpec
    when: CompiledExpr
    clear: CompiledExpr | None
    table: TypeTable
    rows: npt.NDArray[np.intp]
    assets: list[str]
    params: dict[str, npt.NDArray[np.float64]]
    when_alts: list[Alternative]
    clear_alts: list[Alternative] | None

    @property
    def select(self) -> slice | npt.NDArray[np.intp]:
        """The rule's rows: a plain slice when it covers the whole table in order (no copy)."""
        return self._select

    def __post_init__(self) -> None:
        n = len(self.table.assets)
        whole = len(self.rows) == n and bool((self.rows == np.arange(n)).all())
        self._select: slice | npt.NDArray[np.intp] = slice(None) if whole else self.rows
        # Rows whose profile feeds some alternative of `clear`; elsewhere the alert clears on `not when`.
        self.clear_fed: Bools = (
            np.logical_or.reduce([a.fed for a in self.clear_alts])
            if self.clear_alts
            else np.zeros(len(self.rows), dtype=bool)
        )

    @property
    def history_bytes(self) -> int:
        return self.when.history_bytes + (self.clear.history_bytes if self.clear else 0)

    @property
    def key(self) -> str:
        """One alert series per rule and asset type (a rule may span types)."""
        return f"{self.spec.id}#{self.table.asset_type}"


@dataclass(frozen=True)
class RuleResult:
    rule: CompiledRule
    fire: Bools
    clear: Bools


class _Context:
    """Columns of one type table, restricted to one rule's rows."""

    def __init__(
        self, rule: CompiledRule, now: float, valid: Bools, offline: Bools, tz: tzinfo | None
    ) -> None:
        self.rule, self.now, self._valid, self._offline, self._tz = rule, now, valid, offline, tz

    def column(self, point: str) -> npt.NDArray[np.float64]:
        t = self.rule.table
        values: npt.NDArray[np.float64] = t.value[self.rule.select, t.col[point]]
        return values

    def age(self, point: str) -> npt.NDArray[np.float64]:
        t = self.rule.table
        ages: npt.NDArray[np.float64] = self.now - t.ts[self.rule.select, t.col[point]]
        return ages

    def param(self, name: str) -> npt.NDArray[np.float64]:
        return self.rule.params[name]

    def health(self, name: str) -> Array:
        off = self._offline[self.rule.select]
        if name == "stale_points":
            t, rows = self.rule.table, self.rule.select
            stale = t.has[rows] & ~self._valid[rows]
            # Points stop "alone" only while the device sends: a quiet one (offline, or silent while
            # its status says online: it reports on change) has no point that stopped by itself.
            quiet = off | ~((self.now - t.last_good[rows]) <= t.stale_after[rows])
            counts: npt.NDArray[np.float64] = np.where(quiet, 0, stale.sum(axis=1)).astype(np.float64)
            return counts
        return off if name == "offline" else ~off

    def newest(self, points: frozenset[str]) -> npt.NDArray[np.float64]:
        t = self.rule.table
        if not points:
            return np.full(len(self.rule.rows), self.now)
        cols = t.columns_of(tuple(sorted(points)))
        ts = t.ts[self.rule.select][:, cols]
        newest: npt.NDArray[np.float64] = np.nan_to_num(ts, nan=-np.inf).max(axis=1)
        return newest

    def valid(self, points: frozenset[str]) -> Bools:
        if not points:
            return np.ones(len(self.rule.rows), dtype=bool)
        cols = self.rule.table.columns_of(tuple(sorted(points)))
        ok: Bools = np.asarray(self._valid[self.rule.select][:, cols].all(axis=1), dtype=bool)
        return ok

    def has(self, point: str) -> Bools:
        t = self.rule.table
        provided: Bools = t.has[self.rule.select, t.col[point]]
        return provided

    def local_hours(self) -> float:
        moment = datetime.fromtimestamp(self.now, self._tz)
        return moment.hour + moment.minute / 60 + moment.second / 3600


def matches(spec: RuleSpec, asset: Asset) -> bool:
    a = spec.applies_to
    return (
        (a.type is None or a.type == asset.type)
        and all(t in asset.tags for t in a.tags)
        and (not a.ids or asset.id in a.ids)
    )


def compile_rule(spec: RuleSpec, state: StateTable, assets: Sequence[Asset]) -> list[CompiledRule]:
    """Bind a rule to its assets' rows: one compiled rule per asset type it matches."""
    by_table: dict[str, list[Asset]] = {}
    for a in assets:
        if matches(spec, a) and a.id in state.where:
            by_table.setdefault(state.where[a.id][0].asset_type, []).append(a)
    return [_bind(spec, state.tables[t], chosen) for t, chosen in by_table.items()]


def _bind(spec: RuleSpec, table: TypeTable, chosen: list[Asset]) -> CompiledRule:
    known = set(table.columns)
    when = compile_expression(spec.when, known_points=known)
    clear = compile_expression(spec.clear, known_points=known) if spec.clear else None
    params: dict[str, npt.NDArray[np.float64]] = {}
    for name in when.params | (clear.params if clear else set()):
        values = []
        for a in chosen:
            v = a.params.get(name, spec.params.get(name))
            if v is None:
                raise RuleError(f"rule {spec.id}: asset {a.id} has no value for param.{name}")
            values.append(v)
        params[name] = np.array(values, dtype=np.float64)
    rows = np.array([table.row[a.id] for a in chosen], dtype=np.intp)
    return CompiledRule(
        spec=spec,
        when=when,
        clear=clear,
        table=table,
        rows=rows,
        assets=[a.id for a in chosen],
        params=params,
        when_alts=alternatives(when, table, rows),
        clear_alts=alternatives(clear, table, rows) if clear else None,
    )


@dataclass(frozen=True)
class Alternative:
    """One alternative of a rule's top-level ``a or b or …`` (the whole expression if it has none)."""

    fn: Fn
    cols: npt.NDArray[np.intp]  # the columns of the points it reads (quality-gated)
    fed: Bools  # per row of the rule: whether the asset's profile provides all of them


def alternatives(expr: CompiledExpr, table: TypeTable, rows: npt.NDArray[np.intp]) -> list[Alternative]:
    has = table.has[rows]
    out = []
    for fn, points in expr.branches or [(expr.fn, frozenset(expr.points))]:
        cols = table.columns_of(tuple(sorted(points)))
        out.append(Alternative(fn, cols, np.asarray(has[:, cols].all(axis=1), dtype=bool)))
    return out


def judge(alts: list[Alternative], valid: Bools, ctx: EvalContext) -> tuple[Bools, Bools]:
    """Per row: whether the expression holds, and whether that is known.

    An alternative counts where the asset's profile feeds it and its points are good and fresh.
    The expression holds where a counted alternative holds; it is known where it holds, or where
    every alternative the profile feeds could be judged (a bad read leaves it unknown: no verdict).
    """
    holds = np.zeros(len(valid), dtype=bool)
    judged = np.ones(len(valid), dtype=bool)
    fed_any = np.zeros(len(valid), dtype=bool)
    for alt in alts:
        counted = valid[:, alt.cols].all(axis=1) & alt.fed
        holds |= truthy(alt.fn(ctx)) & counted  # also broadcasts a constant to every row
        judged &= counted | ~alt.fed
        fed_any |= alt.fed
    return holds, (holds | judged) & fed_any


class RuleEngine:
    def __init__(
        self,
        specs: Sequence[RuleSpec],
        state: StateTable,
        assets: Sequence[Asset],
        tz: tzinfo | None = None,
    ) -> None:
        self.state = state
        self.tz = tz  # site time zone for time_of_day() / in_hours(); None: the machine's
        self.rules = [r for s in specs for r in compile_rule(s, state, assets)]
        # One rule_error series per type table: it fires on the first asset of each rule that raised.
        self.errors: dict[str, CompiledRule] = {}
        for t in dict.fromkeys(r.table.asset_type for r in self.rules):
            chosen = [a for a in assets if a.id in state.where and state.where[a.id][0].asset_type == t]
            self.errors[t] = _bind(RULE_ERROR, state.tables[t], chosen)
        self.rules += self.errors.values()
        self.broken: dict[str, str] = {}  # key of a disabled rule → what it raised
        self.log_failures = True  # `monitord check` reports failures itself

    def context(self, rule: CompiledRule, now: float) -> EvalContext:
        """The evaluation context of one rule at ``now``: for tools that look inside a rule."""
        t = rule.table
        return _Context(rule, now, t.valid(now), t.offline(now), self.tz)

    def evaluate(self, now: float) -> list[RuleResult]:
        valid: dict[str, Bools] = {}
        offline: dict[str, Bools] = {}
        out = []
        for rule in self.rules:
            t = rule.table
            if rule.spec.id == RULE_ERROR.id or rule.key in self.broken:  # the error series is set below
                continue
            if t.asset_type not in valid:
                valid[t.asset_type] = t.valid(now)
                offline[t.asset_type] = t.offline(now)
            rows_valid = valid[t.asset_type][rule.select]
            ctx = _Context(rule, now, valid[t.asset_type], offline[t.asset_type], self.tz)
            try:
                fire, known = judge(rule.when_alts, rows_valid, ctx)
                clear = ~fire & known
                if rule.clear_alts is not None:  # an explicit clear must hold and be known, too
                    holds, clear_known = judge(rule.clear_alts, rows_valid, ctx)
                    clear = np.where(rule.clear_fed, holds & clear_known & known, clear)
            except Exception as exc:  # one bad rule must not stop the others, nor the daemon
                self._disable(rule, exc)
                continue
            out.append(RuleResult(rule, fire, clear))
        return out + [self._error_result(e) for e in self.errors.values()]

    def _disable(self, rule: CompiledRule, exc: Exception) -> None:
        what = f"{type(exc).__name__}: {exc}"
        kind = rule.table.asset_type
        if self.log_failures:
            log.error("rule %s on %s assets raised %s; disabled until restart", rule.spec.id, kind, what)
        self.broken[rule.key] = what
        err = self.errors[rule.table.asset_type]
        failed = [r for r in self.rules if r.key in self.broken and r.table is rule.table]
        # The summary names every rule of this type that failed (people read it on the ticket).
        text = "; ".join(f"{r.spec.id} ({self.broken[r.key]}, {len(r.assets)} assets)" for r in failed)
        err.spec = RULE_ERROR.model_copy(update={"summary": f"rule disabled after it failed: {text}"})

    def _error_result(self, err: CompiledRule) -> RuleResult:
        """Fire on the first asset of each disabled rule of the table: one alert per failure."""
        fire = np.zeros(len(err.assets), dtype=bool)
        for r in self.rules:
            if r.key in self.broken and r.table is err.table:
                fire[err.assets.index(r.assets[0])] = True
        return RuleResult(err, fire, ~fire)
