"""``monitord rules explain``: why a rule fires, or does not, for one asset.

Replays the store's recent samples (long enough to fill the rule's windows)
through the rule, then prints the value of every term of ``when`` and
``clear`` for the asset, the quality and age of each point the rule reads,
and the alert's state. Terms are the expression's own sub-expressions,
compiled with the same compiler, so what is shown is what the engine computes.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from monitord.alerting.tracker import FIRING, PENDING
from monitord.config.site import SiteConfig
from monitord.core.errors import MonitordError
from monitord.core.model import Frame, Quality
from monitord.daemon.core import Core
from monitord.rules.engine import CompiledRule
from monitord.rules.expr import CompiledExpr, compile_expression, in_seconds, original_column, truthy
from monitord.rules.spec import RuleSpec
from monitord.rules.windows import EventWindow, Window
from monitord.store.sqlite import SqliteStore
from monitord.tools.replay import replay

_OPERATIONS = (ast.BoolOp, ast.Compare, ast.Call, ast.BinOp, ast.UnaryOp)


@dataclass
class Term:
    text: str
    expr: CompiledExpr


def terms_of(text: str) -> list[Term]:
    """The expression and its interesting sub-expressions, outermost first, no duplicates.

    Parsed as the compiler parses it (durations such as ``5m`` as seconds), shown as written."""
    source, shifts = in_seconds(text)
    tree = ast.parse(source, mode="eval")
    seen: dict[str, Term] = {}
    for node in ast.walk(tree.body):
        # the whole expression always (``offline`` alone is a rule), then its operations
        if node is tree.body or isinstance(node, _OPERATIONS):
            start = original_column(node.col_offset + 1, shifts) - 1
            end = original_column((node.end_col_offset or len(source)) + 1, shifts) - 1
            segment = text[start:end]
            if segment and segment not in seen:
                seen[segment] = Term(segment, compile_expression(segment))
    return list(seen.values())


def _show(value: float | bool) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return "no value" if math.isnan(value) else f"{value:.6g}"


def explain(config: SiteConfig, rule_id: str, asset: str, source: Iterable[Frame]) -> list[str]:
    spec = next((r for r in config.rules if r.id == rule_id), None)
    if spec is None:
        raise KeyError(f"no rule {rule_id!r} in {config.source or 'the config'}")
    texts = [("when", spec.when), *((("clear", spec.clear),) if spec.clear else ())]
    terms = {key: terms_of(text) for key, text in texts}

    def rule_of(core: Core) -> CompiledRule:
        found = next((r for r in core.engine.rules if r.spec.id == rule_id and asset in r.assets), None)
        if found is None:
            raise KeyError(f"rule {rule_id!r} does not apply to asset {asset!r}")
        # Bind each term like the rule itself, so windowed terms keep their own history.
        return found

    values: dict[str, float | bool] = {}

    def on_tick(core: Core, now: float) -> None:
        rule = rule_of(core)
        ctx = core.engine.context(rule, now)
        i = rule.assets.index(asset)
        for group in terms.values():
            for term in group:
                out = np.broadcast_to(np.asarray(term.expr.fn(ctx)), (len(rule.assets),))[i]
                values[term.text] = bool(out) if out.dtype == np.bool_ else float(out)

    result = replay(config.model_copy(update={"rules": [spec]}), source, on_tick=on_tick)
    replayed = result.core
    if replayed is None or not values:
        return [f"no samples for {asset} in the store"]  # replay() met no batch at all
    rule = rule_of(replayed)
    i = rule.assets.index(asset)
    now = replayed.clock.now()
    lines = [f"{rule_id} on {asset} at the last sample ({result.batches:,} batches replayed)"]
    for key, _text in texts:
        lines.append(f"  {key}:")
        for term in terms[key]:
            value = values.get(term.text, math.nan)
            if not isinstance(value, bool) and term.expr.fn is not None and _is_condition(term.text):
                value = bool(truthy(np.array([value]))[0])
            lines.append(f"    {term.text:60} = {_show(value)}")
    t = rule.table
    row = t.row[asset]
    fresh = t.fresh(now)[row]
    lines.append("  points:")
    for p in sorted(rule.when.points | (rule.clear.points if rule.clear else set())):
        j = t.col[p]
        age = now - t.ts[row, j]
        lines.append(
            f"    {p:30} {_show(float(t.value[row, j])):>12}  {Quality(int(t.quality[row, j])).label:12}"
            f" age {_show(age)} s{'' if fresh[j] else ' (stale)'}"
        )
    state = replayed.tracker.state_of(rule.key, i)
    lines.append(f"  alert: {'firing' if state == FIRING else 'pending' if state == PENDING else 'inactive'}")
    return lines


def _is_condition(text: str) -> bool:
    node = ast.parse(in_seconds(text)[0], mode="eval").body
    return isinstance(node, ast.BoolOp | ast.Compare) or (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    )


def rule_windows(spec: RuleSpec) -> list[Window | EventWindow]:
    """The time windows ``when`` and ``clear`` read (``avg(x, 5m)``: five minutes of history)."""
    return [w for text in (spec.when, spec.clear) if text for w in compile_expression(text).windows]


def horizon(config: SiteConfig, rule_id: str) -> float:
    """Seconds of history to replay so every window of the rule is full: the longest window,
    at least ten polls, plus a minute."""
    windows = [w.seconds for r in config.rules if r.id == rule_id for w in rule_windows(r)]
    return max([*windows, 10 * config.poll]) + 60


def explain_store(config: SiteConfig, rule_id: str, asset: str, store: SqliteStore) -> list[str]:
    """``explain`` over the store's most recent samples, just enough to fill the rule's windows."""
    last = store.last_sample_time()
    if last is None:
        raise MonitordError(f"no samples for {asset} in {store.path}")
    try:
        return explain(config, rule_id, asset, store.frames(since=last - horizon(config, rule_id)))
    except KeyError as exc:
        raise MonitordError(str(exc.args[0])) from None
