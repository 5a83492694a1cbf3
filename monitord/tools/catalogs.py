"""Message extraction for the rule packs: each rule's ``summary:`` is a msgid.

Tools layer; Babel calls ``extract_packs`` for ``rules/packs/*.yaml`` (see
babel.cfg and ``make catalogs``), beside its own Python and Jinja2
extractors. The pipeline looks the written summary up in the site's catalog
before filling it, so a pack's English text is the msgid and a catalog gives
the other language (docs/i18n.md).
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
