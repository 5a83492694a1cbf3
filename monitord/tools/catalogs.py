"""Message extraction from YAML: rule-pack summaries and the names of profiles' coded values.

Tools layer; Babel calls ``extract_packs`` for ``rules/packs/*.yaml`` and
``extract_profiles`` for ``config/profiles/*.yaml`` (see babel.cfg and ``make
catalogs``), beside its own Python and Jinja2 extractors. The pipeline looks a
written summary up in the site's catalog before filling it, and a coded
value's name (``{door:name}``) with the point's name as context (a door's
"open" is not a circuit's), so the English text is the msgid and a catalog
gives the other language (docs/i18n.md).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

import yaml


def extract_packs(
    fileobj: IO[bytes], keywords: Mapping[str, Any], comment_tags: Collection[str], options: Mapping[str, Any]
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    """Babel extractor: (line, funcname, msgid, comments) for every rule summary of a pack file."""
    root = yaml.compose(fileobj.read().decode("utf-8"))
    if not isinstance(root, yaml.SequenceNode):
        return
    for rule in root.value:
        if not isinstance(rule, yaml.MappingNode):
            continue
        fields = {k.value: v for k, v in rule.value if isinstance(k, yaml.ScalarNode)}
        summary, rule_id = fields.get("summary"), fields.get("id")
        if isinstance(summary, yaml.ScalarNode) and summary.value:
            # The comment tells the translator which rule, and that {fields} must stay as they are.
            name = rule_id.value if isinstance(rule_id, yaml.ScalarNode) else "?"
            note = f"rule {name}: keep every {{field}} as written"
            yield summary.start_mark.line + 1, None, summary.value, [note]


def extract_profiles(
    fileobj: IO[bytes], keywords: Mapping[str, Any], comment_tags: Collection[str], options: Mapping[str, Any]
) -> Iterator[tuple[int, str, tuple[str, str], list[str]]]:
    """Babel extractor: each name under a point's ``states:``, as pgettext(point, name)."""
    root = yaml.compose(fileobj.read().decode("utf-8"))
    points = _get(root, "points")
    if not isinstance(points, yaml.MappingNode):
        return
    profile = _get(root, "profile")
    name = profile.value if isinstance(profile, yaml.ScalarNode) else "?"
    for key, point in points.value:
        states = _get(point, "states")
        if not isinstance(states, yaml.MappingNode):
            continue
        for code, state in states.value:
            if isinstance(state, yaml.ScalarNode) and state.value:
                note = f"profile {name}, point {key.value}, code {code.value}"
                yield state.start_mark.line + 1, "pgettext", (key.value, state.value), [note]


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """A mapping node's value under ``key`` (None when not a mapping or not there)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
