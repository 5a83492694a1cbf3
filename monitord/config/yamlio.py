"""YAML loading that remembers where every key came from, and ``include:``.

The config loader validates plain dicts, then asks ``locate`` for the file
and line of a key path, so every error names file, line and key.
An ``{include: path}`` mapping is replaced by the file it names (a list
included into a list is spliced in); the included nodes keep their own file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from monitord.core.errors import ConfigError

Mark = tuple[str, int]  # file, 1-based line


class LineDict(dict[Any, Any]):
    """A mapping that knows the line of itself and of each of its keys."""

    mark: Mark
    marks: dict[Any, Mark]


class LineList(list[Any]):
    mark: Mark
    marks: dict[int, Mark]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.mark = (node.start_mark.name, node.start_mark.line + 1)
    result.marks = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise ConfigError(
                [f"{_short(key_node.start_mark.name)}:{key_node.start_mark.line + 1} {key}: duplicate key"]
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.marks[key] = (key_node.start_mark.name, key_node.start_mark.line + 1)
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.mark = (node.start_mark.name, node.start_mark.line + 1)
    result.marks = {i: (c.start_mark.name, c.start_mark.line + 1) for i, c in enumerate(node.value)}
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _short(name: str) -> str:
    """File names in messages: relative to the working directory when inside it."""
    try:
        return str(Path(name).resolve().relative_to(Path.cwd()))
    except ValueError:
        return name


def load_yaml(path: Path, search: tuple[Path, ...] = ()) -> Any:
    """Load a YAML file, resolving ``include:`` relative to it, then to ``search``."""
    data = load_yaml_raw(path)
    return _resolve_includes(data, path.parent, search, (path.resolve(),))


def _is_include(node: Any) -> bool:
    return isinstance(node, dict) and set(node) == {"include"} and isinstance(node["include"], str)


def _resolve_includes(node: Any, base: Path, search: tuple[Path, ...], chain: tuple[Path, ...]) -> Any:
    if _is_include(node):
        return _load_include(node, base, search, chain)
    if isinstance(node, LineList):
        out = LineList()
        out.mark, out.marks = node.mark, {}
        for i, item in enumerate(node):
            value = _resolve_includes(item, base, search, chain)
            if _is_include(item) and isinstance(value, list):
                for j, sub in enumerate(value):
                    out.marks[len(out)] = getattr(value, "marks", {}).get(j, node.marks[i])
                    out.append(sub)
            else:
                out.marks[len(out)] = node.marks[i]
                out.append(value)
        return out
    if isinstance(node, LineDict):
        for key in list(node):
            node[key] = _resolve_includes(node[key], base, search, chain)
    return node


def _load_include(node: LineDict, base: Path, search: tuple[Path, ...], chain: tuple[Path, ...]) -> Any:
    name = node["include"]
    candidates = [base / name, *(s / name for s in search)]
    target = next((c for c in candidates if c.is_file()), None)
    file, line = node.marks["include"]
    if target is None:
        raise ConfigError([f"{_short(file)}:{line} include: no such file {name!r}"])
    if target.resolve() in chain:
        raise ConfigError([f"{_short(file)}:{line} include: {name!r} includes itself"])
    data = load_yaml_raw(target)
    return _resolve_includes(data, target.parent, search, (*chain, target.resolve()))


def load_yaml_raw(path: Path) -> Any:
    """One YAML file with line marks, includes left as they are."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{_short(str(path))}: cannot read: {exc.strerror}"]) from None
    loader = _Loader(text)
    loader.name = str(path)
    try:
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError([f"{_short(str(path))}:{line} YAML syntax: {exc.problem}"]) from None


def locate(root: Any, loc: tuple[Any, ...]) -> Mark | None:
    """File and line of the deepest existing node on a key path."""
    found: Mark | None = getattr(root, "mark", None)
    node = root
    for key in loc:
        marks = getattr(node, "marks", None)
        if marks is None or key not in marks:
            break
        found = marks[key]
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return found


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for key in loc:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += ("." if out else "") + str(key)
    return out


def problem(root: Any, loc: tuple[Any, ...], message: str) -> str:
    """One error line: ``file:line key.path: message``."""
    mark = locate(root, loc)
    where = f"{_short(mark[0])}:{mark[1]}" if mark else "<config>"
    path = format_path(loc)
    return f"{where} {path}: {message}" if path else f"{where} {message}"


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(node: Any, loc: tuple[Any, ...] = (), root: Any = None) -> list[str]:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string, in place; problems for unset names.

    Secrets (tokens, robot URLs) stay out of the YAML this way.
    """
    root = node if root is None else root
    problems: list[str] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, str) and "${" in value:
            missing = [
                m.group(1)
                for m in _ENV.finditer(value)
                if m.group(1) not in os.environ and m.group(2) is None
            ]
            node[key] = _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
            problems += [
                problem(root, (*loc, key), f"environment variable {name} is not set") for name in missing
            ]
        elif isinstance(value, dict | list):
            problems += expand_env(value, (*loc, key), root)
    return problems
