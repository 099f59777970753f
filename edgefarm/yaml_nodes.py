"""Reading YAML files with line numbers, so every error names file:line, what is wrong and the
valid choices. devices.yaml, the nightly matrix and recipe files all read through here.

Controller and compressors code only: it needs PyYAML, which the board's agent never installs."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # PyYAML loads only when a file is read: a cached recipe needs none of it
    import yaml
    from yaml.constructor import SafeConstructor

_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML_TAG_PREFIX + "merge"


@cache
def _safe() -> SafeConstructor:
    """Only used for YAML's int syntax and merge keys (<<)."""
    from yaml.constructor import SafeConstructor

    return SafeConstructor()


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line: file:line: what; how to fix."""


def read_text(path: Path, source: str, missing: str, error_type: type[Exception] = ConfigError) -> str:
    """missing: what to do about a file that is not there, e.g. "check the path"."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_type(f"{source}: no such file; {missing}") from None
    except UnicodeDecodeError as error:
        raise error_type(f"{source}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise error_type(f"{source}: cannot read it: {error.strerror}") from None


def compose(text: str, source: str, error_type: type[Exception] = ConfigError) -> yaml.Node | None:
    import yaml

    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise yaml_error(error, source, error_type) from None


def yaml_error(error: yaml.YAMLError, source: str, error_type: type[Exception] = ConfigError) -> Exception:
    """PyYAML's multi-line report as one line, at the line of the problem."""
    import yaml
    from yaml.constructor import ConstructorError

    if not isinstance(error, yaml.MarkedYAMLError):
        return error_type(f"{source}: YAML error: {' '.join(str(error).split())}")
    kind = "YAML error" if isinstance(error, ConstructorError) else "YAML syntax error"
    problem_line = error.problem_mark.line + 1 if error.problem_mark else None
    context_line = error.context_mark.line + 1 if error.context_mark else None
    where = f"{source}:{problem_line or context_line}" if problem_line or context_line else source
    context = f" ({error.context} at line {context_line})" if context_line not in (None, problem_line) else ""
    return error_type(f"{where}: {kind}: {error.problem}{context}")


@dataclass(frozen=True)
class NodeContext:
    """Which file, and which part of it (e.g. "device 'local'"), an error is about."""

    source: str
    subject: str = ""
    error_type: type[ConfigError] = ConfigError     # each file kind raises its own subclass

    def about(self, subject: str) -> NodeContext:
        return NodeContext(self.source, f"{self.subject}: {subject}" if self.subject else subject, self.error_type)

    def error(self, node: yaml.Node, message: str) -> ConfigError:
        prefix = f"{self.subject}: " if self.subject else ""
        return self.error_type(f"{self.source}:{line_of(node)}: {prefix}{message}")


class Entry(NamedTuple):
    key: yaml.Node
    value: yaml.Node


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def kind_of(node: yaml.Node) -> str:
    """The YAML type a node resolved to: str, int, float, bool, null, map, seq, ... or its own tag."""
    return node.tag[len(_YAML_TAG_PREFIX):] if node.tag.startswith(_YAML_TAG_PREFIX) else node.tag


_PLAIN_WORDS = {"map": "a mapping", "seq": "a list", "null": "no value"}
_SCALAR_NOUNS = {"int": "the integer", "float": "the number", "bool": "the boolean", "timestamp": "the date"}


def describe(node: yaml.Node) -> str:
    """What a node holds, for "got ..." in messages."""
    kind = kind_of(node)
    if kind in _PLAIN_WORDS:
        return _PLAIN_WORDS[kind]
    if kind == "str":
        return f"the string {node.value!r}"
    if kind in _SCALAR_NOUNS:
        return f"{_SCALAR_NOUNS[kind]} {node.value}"
    return f"a value tagged {kind}"


def entries(node: yaml.Node, ctx: NodeContext, what: str) -> dict[str, Entry]:
    """A mapping node's entries by key; non-string and duplicate keys are errors."""
    if kind_of(node) != "map":
        raise ctx.error(node, f"{what} must be a mapping (key: value), got {describe(node)}")
    import yaml

    _check_duplicate_keys(node, ctx)
    try:
        _safe().flatten_mapping(node)   # merge keys (<<: *anchor); the mapping's own keys win
    except yaml.YAMLError as error:
        raise yaml_error(error, ctx.source, ctx.error_type) from None
    return {_key(key, ctx): Entry(key, value) for key, value in node.value}


def _check_duplicate_keys(node: yaml.MappingNode, ctx: NodeContext) -> None:
    # PyYAML itself keeps the last of two equal keys without a word.
    first_lines: dict[str, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = _key(key_node, ctx)
        if key in first_lines:
            raise ctx.error(key_node, f"duplicate key {key!r} (first at line {first_lines[key]}); keep one")
        first_lines[key] = line_of(key_node)


def _key(node: yaml.Node, ctx: NodeContext) -> str:
    if kind_of(node) != "str":
        raise ctx.error(node, f"keys must be strings, got {describe(node)}{_quote_hint(node)}")
    return node.value


def check_keys(entries: Mapping[str, Entry], node: yaml.Node, ctx: NodeContext,
                valid: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    for key, entry in entries.items():
        if key not in valid:
            raise ctx.error(entry.key, f"unknown key {key!r}; valid keys: {', '.join(valid)}")
    missing = [key for key in required if key not in entries]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ctx.error(node, f"missing required key{plural} {', '.join(map(repr, missing))}; "
                              f"required keys: {', '.join(required)}")


def sequence(node: yaml.Node, ctx: NodeContext, what: str, example: str) -> list[yaml.Node]:
    if kind_of(node) != "seq":
        raise ctx.error(node, f"{what} must be a list, e.g. {example}, got {describe(node)}")
    return node.value


def _quote_hint(node: yaml.Node) -> str:
    if kind_of(node) in ("int", "float", "bool", "timestamp"):
        return f"; quote it to keep it as written: '{node.value}'"
    return ""


def string(node: yaml.Node, ctx: NodeContext, what: str) -> str:
    if kind_of(node) != "str":
        raise ctx.error(node, f"{what} must be a string, got {describe(node)}{_quote_hint(node)}")
    return node.value


def integer(node: yaml.Node, ctx: NodeContext, what: str, low: int, high: int | None = None) -> int:
    wanted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    if kind_of(node) != "int":
        quoted = kind_of(node) == "str" and node.value.strip().lstrip("+-").isdigit()
        hint = "; write it without quotes" if quoted else ""
        raise ctx.error(node, f"{what} must be {wanted}, got {describe(node)}{hint}")
    value = _safe().construct_yaml_int(node)
    if value < low or (high is not None and value > high):
        raise ctx.error(node, f"{what} must be {wanted}, got {value}")
    return value


def choice(node: yaml.Node, ctx: NodeContext, what: str, choices: tuple[str, ...], note: str = "") -> str:
    value = string(node, ctx, what)
    if value not in choices:
        raise ctx.error(node, f"unknown {what} {value!r}; valid {what}s: {', '.join(choices)}{note}")
    return value
