"""The rule language: rule specs, expression compiler, vectorised rule engine.

Depends on ``monitord``'s model and state table only. Built-in rule packs are
YAML files in ``rules/packs``.
"""

from pathlib import Path

PACKS_DIR = Path(__file__).parent / "packs"
