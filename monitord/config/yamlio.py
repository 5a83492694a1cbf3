"""YAML loading that remembers where every key came from, and ``include:``.

The config loader validates plain dicts, then asks ``locate`` for the file
and line of a key path, so every error names file, line and key.
An ``{include: path}`` mapping is replaced by the file it names (a list
included into a list is spliced in); the included nodes keep their own file.
Whatever the file holds — a bad date, ``!!float "abc"``, a NUL byte, nesting
or aliases that would expand without bound — is a ``file:line key: message``
error, never a traceback: aliases may expand to at most ``MAX_NODES`` nodes.
Values that came from ``${ENV}`` and values of keys named like secrets are
masked in every message (``mask``), so ``monitord check`` never prints a token.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import yaml

from monitord.core.errors import ConfigError

Mark = tuple[str, int]  # file, 1-based line
#: how many nodes a file may expand to through aliases; the largest real site has ~100 k
MAX_NODES = 1_000_000


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
        where = f"{_short(key_node.start_mark.name)}:{key_node.start_mark.line + 1}"
        key = _construct(loader, key_node, where, "(key)")
        try:
            if key in result:
                raise ConfigError([f"{where} {key}: duplicate key"])
        except TypeError:  # a list or mapping as a key
            raise ConfigError([f"{where} {_text(key)}: a key must be a plain value"]) from None
        result[key] = _construct(loader, value_node, where, key)
        result.marks[key] = (key_node.start_mark.name, key_node.start_mark.line + 1)
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(
        _construct(loader, child, f"{_short(child.start_mark.name)}:{child.start_mark.line + 1}", f"[{i}]")
        for i, child in enumerate(node.value)
    )
    result.mark = (node.start_mark.name, node.start_mark.line + 1)
    result.marks = {i: (c.start_mark.name, c.start_mark.line + 1) for i, c in enumerate(node.value)}
    return result


def _construct(loader: _Loader, node: yaml.Node, where: str, key: Any) -> Any:
    """One value; a scalar its tag cannot hold (``!!float "abc"``, 2024-13-45) is a config error."""
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(
            [f"{where} {_text(key)}: cannot read {node.tag.rsplit(':', 1)[-1]}: {exc}"]
        ) from None


def _text(key: Any) -> str:
    return repr(key)[:60] if not isinstance(key, str) else key[:60]


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _short(name: str) -> str:
    """File names in messages: relative to the working directory when inside it."""
    return _short_from(name, os.getcwd())


@functools.lru_cache(maxsize=256)
def _short_from(name: str, cwd: str) -> str:
    # Every key of a file asks for the same answer: resolving the path once per file and folder
    # makes loading a 3,000-asset site about a quarter faster.
    try:
        return str(Path(name).resolve().relative_to(cwd))
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
    where = _short(str(path))
    try:
        loader = _Loader(text)
        loader.name = str(path)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _bounded(node, where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError([f"{where}:{line} YAML syntax: {exc.problem}"]) from None
    except yaml.reader.ReaderError as exc:  # a NUL or other control character
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(
            [f"{where}:{line} YAML syntax: character U+{exc.character:04X} is not allowed"]
        ) from None
    except RecursionError:
        raise ConfigError([f"{where}:1 YAML syntax: nested too deeply"]) from None


def _bounded(root: yaml.Node, where: str) -> None:
    """Refuse a document whose aliases expand to more than ``MAX_NODES`` nodes (an alias bomb)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias counts once
        n = 1
        if isinstance(node, yaml.MappingNode):
            n += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            n += sum(size(c) for c in node.value)
        sizes[id(node)] = n
        return n

    total = size(root)
    if total <= MAX_NODES:
        return
    line, key = root.start_mark.line + 1, ""
    if isinstance(root, yaml.MappingNode):  # name the top-level key that grows the most
        k, _v = max(root.value, key=lambda kv: size(kv[1]))
        line, key = k.start_mark.line + 1, f" {getattr(k, 'value', '')}"
    raise ConfigError(
        [f"{where}:{line}{key}: aliases expand to {total:,} nodes (at most {MAX_NODES:,}); not loaded"]
    )


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


def expand_env(
    node: Any, loc: tuple[Any, ...] = (), root: Any = None, secrets: dict[str, str] | None = None
) -> list[str]:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string, in place; problems for unset names.

    Secrets (tokens, robot URLs) stay out of the YAML this way. ``secrets`` collects each expanded
    value and the text it came from, so that messages can show ``${NAME}`` instead (``mask``).
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
            if secrets is not None:
                for m in _ENV.finditer(value):
                    secrets[os.environ.get(m.group(1), m.group(2) or "")] = m.group(0)
                secrets[node[key]] = value
            problems += [
                problem(root, (*loc, key), f"environment variable {name} is not set") for name in missing
            ]
        elif isinstance(value, dict | list):
            problems += expand_env(value, (*loc, key), root, secrets)
    return problems


#: keys whose values are secrets wherever they appear (``token``, ``password``, ``robot_key``, ...)
SECRET_KEY = re.compile(r"(?i)(token|passw|secret|api_?key|robot|sign|webhook|credential|private|community)")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:key|token|access_token|secret|sign|password)=)[^&\s'\"]+")
_MIN_SECRET = 4  # shorter expanded values ("1", "on") are not worth hiding and would garble messages


def is_secret_key(loc: tuple[Any, ...]) -> bool:
    """Whether the value at this key path is a secret by its name."""
    return any(isinstance(k, str) and SECRET_KEY.search(k) for k in loc[-1:])


def mask(lines: list[str], secrets: dict[str, str]) -> list[str]:
    """Messages with every expanded ``${ENV}`` value shown as its ``${NAME}`` and URL keys as ***."""
    out = []
    for line in lines:
        for value, source in sorted(secrets.items(), key=lambda kv: -len(kv[0])):
            if len(value) >= _MIN_SECRET and value != source:
                line = line.replace(value, source)
        out.append(_SECRET_QUERY.sub(r"\1***", line))
    return out
