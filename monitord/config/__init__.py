"""Config: YAML with line marks, the site schema and its cross-checks."""
