"""Recipes as chains of steps: PyTorch steps first, then at most one ONNX-level step.

A chain is written on one line,

    structured-prune(0.5) -> finetune(epochs=3) -> int8-static(entropy)

or in a YAML recipe file (see docs/recipes.md):

    recipes:
      prune-ft-int8:
        description: half the channels, fine-tuned, then int8   # optional
        steps:
          - structured-prune: {amount: 0.5}
          - finetune: {epochs: 3}
          - int8-static: {calibration: entropy}
      quick: sparse24 -> finetune              # a one-line chain as a YAML value

Bare values fill a step's parameters in their documented order; `name=value` names one.
Everything is checked on load: an unknown step or parameter, a value of the wrong type or
out of range, or steps in an order that cannot work is a ChainError whose one-line message
starts with the file and line (and column, inside a one-line chain) and lists the valid
choices. The PyTorch steps and their parameters are in edgefarm.compressors.torch_steps; the
ONNX-level steps are the single-step recipes (fp32, fp16, int8-dynamic, int8-static, ...).

This module only reads and checks chains; edgefarm.compressors.chain_runner runs them.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefarm import yaml_nodes as yn
from edgefarm.compressors.errors import CompressorError
from edgefarm.compressors.torch_steps import TORCH_STEPS, Param, ParamValue

if TYPE_CHECKING:
    import yaml

    from edgefarm.compressors.types import Recipe

# The built-in chains, registered in edgefarm.compressors.recipes.RECIPES under these names.
NAMED_CHAINS: dict[str, str] = {
    "unstructured50-ft": "unstructured-prune(0.5) -> finetune",
    "sparse24-ft": "sparse24 -> finetune",
    "qat-int8": "qat(epochs=3) -> int8-static",
    "prune50-ft-int8": "structured-prune(0.5) -> finetune -> int8-static",
    "distill-int8": "distill(width=0.35) -> int8-static",
}

QAT_EXPORT = "int8-static"  # the ONNX step that quantizes a model trained by qat, with the same settings
RECIPE_NAME_PATTERN = "[a-z0-9][a-z0-9._-]*"
_RECIPE_NAME = re.compile(RECIPE_NAME_PATTERN)
_STEP = re.compile(r"(?P<name>[^\s()]+)\s*(?:\((?P<args>[^()]*)\))?")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ARROW = "->"

OnnxSteps = Mapping[str, "Recipe"]  # the single-step recipes a chain may end with, by name


class ChainError(CompressorError):
    """A recipe chain that cannot be read or cannot work; one line: where: what; the valid choices."""


@dataclass(frozen=True)
class ChainStep:
    """One step with every parameter given (defaults filled in); `where` is for messages only."""

    name: str
    params: Mapping[str, ParamValue]
    where: str = field(default="", compare=False)

    @property
    def is_torch(self) -> bool:
        return self.name in TORCH_STEPS

    def text(self) -> str:
        """The step in one-line form with every parameter named: part of the cache identity."""
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{key}={_format(value)}' for key, value in self.params.items())})"


@dataclass(frozen=True)
class Chain:
    """A named sequence of steps, checked: PyTorch steps, then at most one ONNX-level step."""

    name: str
    steps: tuple[ChainStep, ...]
    description: str = ""

    @property
    def text(self) -> str:
        return f" {_ARROW} ".join(step.text() for step in self.steps)

    @property
    def torch_steps(self) -> tuple[ChainStep, ...]:
        return tuple(step for step in self.steps if step.is_torch)

    @property
    def onnx_step(self) -> ChainStep | None:
        return next((step for step in self.steps if not step.is_torch), None)


def _format(value: ParamValue) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def looks_like_chain(text: str) -> bool:
    """Whether a recipe name is meant as a one-line chain rather than a registered name."""
    return _ARROW in text or "(" in text or text.strip() in TORCH_STEPS


# --- where a problem is, for messages ----------------------------------------------------------

@dataclass(frozen=True)
class _Where:
    source: str
    line: int
    column: int | None = None  # given inside a one-line chain
    subject: str = ""          # e.g. "recipe 'quick'"

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" + (f":{self.column}" if self.column else "")

    def shifted(self, offset: int) -> _Where:
        """`offset` characters further along a one-line chain."""
        return replace(self, column=(self.column or 1) + offset)

    def error(self, message: str) -> ChainError:
        prefix = f"{self.subject}: " if self.subject else ""
        return ChainError(f"{self}: {prefix}{message}")


# --- the one-line form -------------------------------------------------------------------------

def parse_chain(
    text: str, onnx_steps: OnnxSteps, name: str | None = None, source: str = "<recipe>",
    line: int = 1, column: int = 1,
) -> Chain:
    """A checked Chain from its one-line form; `source`, `line` and `column` say where `text` starts."""
    where = _Where(source, line, column, f"recipe {name!r}" if name else "")
    steps = tuple(_parse_step(piece, where.shifted(offset), onnx_steps) for offset, piece in _pieces(text))
    _check_order(steps, where.subject)
    chain = Chain(name or "", steps)
    return chain if name else replace(chain, name=chain.text)


def _pieces(text: str) -> list[tuple[int, str]]:
    """The text between arrows, each with its offset in `text`."""
    pieces, start = [], 0
    for arrow in re.finditer(re.escape(_ARROW), text):
        pieces.append((start, text[start:arrow.start()]))
        start = arrow.end()
    pieces.append((start, text[start:]))
    return pieces


def _parse_step(piece: str, where: _Where, onnx_steps: OnnxSteps) -> ChainStep:
    stripped = piece.strip()
    if not stripped:
        raise where.error(f"a step is missing; write steps as name or name(values), joined by '{_ARROW}'")
    where = where.shifted(len(piece) - len(piece.lstrip()))
    match = _STEP.fullmatch(stripped)
    if match is None:
        raise where.error(f"cannot read step {stripped!r}; write it as name or name(value, key=value)")
    args = _parse_args(match["args"], where.shifted(match.start("args")))
    return _checked_step(match["name"], args, where, onnx_steps)


_Arg = tuple["str | None", ParamValue, _Where]  # (key or None for a bare value, value, where)


def _parse_args(text: str | None, where: _Where) -> list[_Arg]:
    if text is None or not text.strip():
        return []
    args, offset = [], 0
    for part in text.split(","):
        at = where.shifted(offset + len(part) - len(part.lstrip()))
        key, equals, value = part.partition("=")
        if not equals:
            key, value = "", key
        if (equals and not _WORD.fullmatch(key.strip())) or not value.strip():
            raise at.error(f"cannot read {part.strip()!r}; write a value or key=value")
        args.append((key.strip() or None, _scalar(value.strip(), at), at))
        offset += len(part) + 1
    return args


def _scalar(text: str, where: _Where) -> ParamValue:
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    if _WORD.fullmatch(text):
        return text
    raise where.error(f"{text!r} is neither a number nor a word")


# --- checking steps, whichever form they came in -----------------------------------------------

def _step_params(name: str, onnx_steps: OnnxSteps, where: _Where) -> tuple[Param, ...]:
    if name in TORCH_STEPS:
        return TORCH_STEPS[name].params
    if name in onnx_steps:
        choices = onnx_steps[name].choices
        return tuple(Param(key, values[0], choices=tuple(values)) for key, values in choices.items())
    raise where.error(f"unknown step {name!r}; valid steps: {', '.join(TORCH_STEPS)} (PyTorch), "
                      f"{', '.join(onnx_steps)} (ONNX)")


def _checked_step(name: str, args: list[_Arg], where: _Where, onnx_steps: OnnxSteps) -> ChainStep:
    params = _step_params(name, onnx_steps, where)
    given: dict[str, ParamValue] = {}
    for index, (key, value, at) in enumerate(args):
        if key is None and any(earlier is not None for earlier, _, _ in args[:index]):
            raise at.error(f"step {name}: a bare value after key=value; name it too")
        param = _param_for(name, params, key, index, at)
        if param.name in given:
            raise at.error(f"step {name}: {param.name} is given twice; keep one")
        given[param.name] = _checked_value(name, param, value, at)
    return ChainStep(name, {p.name: given.get(p.name, p.default) for p in params}, str(where))


def _param_for(step: str, params: tuple[Param, ...], key: str | None, index: int, where: _Where) -> Param:
    if key is None:
        if not params:
            raise where.error(f"step {step} takes no parameters")
        if index >= len(params):
            raise where.error(f"step {step} takes at most {len(params)} bare values; {_takes(params)}")
        return params[index]
    for param in params:
        if param.name == key:
            return param
    raise where.error(f"step {step} has no parameter {key!r}; {_takes(params)}")


def _checked_value(step: str, param: Param, value: ParamValue, where: _Where) -> ParamValue:
    problem = param.check(value)
    if problem:
        quoted = isinstance(value, str) and _NUMBER.fullmatch(value) and not param.choices
        hint = "; write it without quotes" if quoted else ""
        raise where.error(f"step {step}: {param.name}={_show(value)} {problem}{hint}")
    return float(value) if isinstance(param.default, float) else value


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _takes(params: tuple[Param, ...]) -> str:
    if not params:
        return "it takes no parameters"
    return "it takes " + ", ".join(_describe_param(param) for param in params)


def _describe_param(param: Param) -> str:
    if param.choices:
        return f"{param.name} ({'|'.join(param.choices)}, default {param.default})"
    kind = "integer" if isinstance(param.default, int) else "number"
    return f"{param.name} ({kind} in {param.interval()}, default {_format(param.default)})"


def _check_order(steps: tuple[ChainStep, ...], subject: str, where: _Where | None = None) -> None:
    """PyTorch steps first, at most one ONNX-level step last; a step that trains for int8 (qat) is
    followed by int8-static alone, with the same reduce_range."""
    if not steps:
        raise (where or _Where("<recipe>", 1)).error("the chain has no steps; list at least one")
    onnx_step = quantizing = None
    for step in steps:
        if onnx_step is not None:
            raise _error_at(step, subject, f"step {step.name} comes after {onnx_step.name}, an ONNX-level step; "
                                           f"PyTorch steps come first and one ONNX-level step may end the chain")
        if quantizing is not None and (step.is_torch or step.name != QAT_EXPORT):
            raise _error_at(step, subject, f"step {step.name} comes after {quantizing.name}, which trains for "
                                           f"{QAT_EXPORT}; end the chain with {quantizing.name} -> {QAT_EXPORT}")
        if not step.is_torch:
            onnx_step = step
        elif TORCH_STEPS[step.name].quantizes:
            quantizing = step
    if quantizing is not None:
        _check_qat_export(quantizing, onnx_step, subject)


def _check_qat_export(qat: ChainStep, export: ChainStep | None, subject: str) -> None:
    if export is None:
        raise _error_at(qat, subject, f"step {qat.name} trains for int8 and needs {QAT_EXPORT} after it to quantize; "
                                      f"write {qat.name} -> {QAT_EXPORT}")
    trained, exported = (str(s.params.get("reduce_range", "yes")) for s in (qat, export))
    if trained != exported:
        raise _error_at(export, subject, f"{QAT_EXPORT}(reduce_range={exported}) must match "
                                         f"{qat.name}(reduce_range={trained}): the weights trained for that range")


def _error_at(step: ChainStep, subject: str, message: str) -> ChainError:
    return ChainError(f"{step.where}: {subject + ': ' if subject else ''}{message}")


# --- the YAML file -----------------------------------------------------------------------------

def load_chain_file(path: Path | str, onnx_steps: OnnxSteps, taken: tuple[str, ...] = ()) -> dict[str, Chain]:
    """The recipes of a YAML recipe file, checked; `taken` are names a file may not reuse (built-ins)."""
    source = str(path)
    root = yn.compose(yn.read_text(Path(path), source, "check the path", ChainError), source, ChainError)
    if root is None:
        raise ChainError(f"{source}:1: the file is empty; it needs a top-level 'recipes:' mapping")
    recipes_node = _recipes_node(root, source)
    entries = _entries(recipes_node, _node_where(source, recipes_node), "'recipes'")
    if not entries:
        raise _node_where(source, recipes_node).error("'recipes' is empty; define at least one recipe")
    return {name: _read_recipe(name, key, value, source, onnx_steps, taken)
            for name, (key, value) in entries.items()}


def _recipes_node(root: yaml.Node, source: str) -> yaml.Node:
    top = _entries(root, _node_where(source, root), "the top level")
    for key, (key_node, _) in top.items():
        if key != "recipes":
            raise _node_where(source, key_node).error(f"unknown key {key!r}; the only top-level key is 'recipes'")
    if "recipes" not in top:
        raise _node_where(source, root).error("missing the top-level 'recipes:' mapping")
    return top["recipes"][1]


def _node_where(source: str, node: yaml.Node, subject: str = "") -> _Where:
    return _Where(source, node.start_mark.line + 1, subject=subject)


def _entries(node: yaml.Node, where: _Where, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping node's (key node, value node) pairs by key; non-string and duplicate keys are errors."""
    if yn.kind_of(node) != "map":
        raise where.error(f"{what} must be a mapping (key: value), got {yn.describe(node)}")
    entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        at = _Where(where.source, key.start_mark.line + 1, subject=where.subject)
        if yn.kind_of(key) != "str":
            raise at.error(f"keys must be strings, got {yn.describe(key)}")
        if key.value in entries:
            first = entries[key.value][0].start_mark.line + 1
            raise at.error(f"duplicate key {key.value!r} (first at line {first}); keep one")
        entries[key.value] = (key, value)
    return entries


def _read_recipe(
    name: str, key: yaml.Node, node: yaml.Node, source: str, onnx_steps: OnnxSteps, taken: tuple[str, ...]
) -> Chain:
    if not _RECIPE_NAME.fullmatch(name):
        raise _node_where(source, key).error(f"recipe name {name!r} must match {RECIPE_NAME_PATTERN} "
                                             f"(lower-case letters, digits, '.', '_', '-')")
    if name in taken:
        raise _node_where(source, key).error(f"recipe name {name!r} is a built-in recipe; choose another name")
    if yn.kind_of(node) == "str":
        line, column = _scalar_start(node)
        return parse_chain(node.value, onnx_steps, name, source, line, column)
    where = _node_where(source, node, f"recipe {name!r}")
    entries = _entries(node, where, "a recipe")
    for field_name, (field_key, _) in entries.items():
        if field_name not in ("steps", "description"):
            raise _node_where(source, field_key, where.subject).error(
                f"unknown key {field_name!r}; valid keys: steps, description")
    if "steps" not in entries:
        raise where.error("missing 'steps:'; list the steps, e.g. '- finetune: {epochs: 3}'")
    steps = _read_steps(entries["steps"][1], where, onnx_steps)
    _check_order(steps, where.subject, where)
    return Chain(name, steps, _read_description(entries.get("description"), where))


def _read_description(entry: tuple[yaml.Node, yaml.Node] | None, where: _Where) -> str:
    if entry is None:
        return ""
    if yn.kind_of(entry[1]) != "str":
        raise _node_where(where.source, entry[1], where.subject).error(
            f"description must be a string, got {yn.describe(entry[1])}")
    return entry[1].value


def _scalar_start(node: yaml.Node) -> tuple[int, int]:
    """Line and column where a one-line scalar's text starts (after an opening quote)."""
    quote = 1 if node.style in ("'", '"') else 0
    return node.start_mark.line + 1, node.start_mark.column + 1 + quote


def _read_steps(node: yaml.Node, where: _Where, onnx_steps: OnnxSteps) -> tuple[ChainStep, ...]:
    at = _node_where(where.source, node, where.subject)
    if yn.kind_of(node) != "seq":
        raise at.error(f"'steps' must be a list, e.g. '- finetune: {{epochs: 3}}', got {yn.describe(node)}")
    if not node.value:
        raise at.error("'steps' is empty; list at least one step")
    return tuple(_read_step(item, where, onnx_steps) for item in node.value)


def _read_step(node: yaml.Node, recipe: _Where, onnx_steps: OnnxSteps) -> ChainStep:
    at = _node_where(recipe.source, node, recipe.subject)
    if yn.kind_of(node) == "str":
        line, column = _scalar_start(node)
        if _ARROW in node.value:
            raise at.error(f"one step per list item; split {node.value!r} at '{_ARROW}'")
        return _parse_step(node.value, replace(at, line=line, column=column), onnx_steps)
    if yn.kind_of(node) != "map":
        raise at.error(f"a step must be 'name: {{parameter: value}}' or 'name', got {yn.describe(node)}")
    entries = _entries(node, at, "a step")
    if len(entries) != 1:
        raise at.error(f"a list item holds one step, this one {len(entries)} ({', '.join(entries)}); "
                       f"give each step its own '- ' item")
    ((name, (key, value)),) = entries.items()
    key_at = _node_where(recipe.source, key, recipe.subject)
    if yn.kind_of(value) not in ("null", "map"):
        raise _node_where(recipe.source, value, recipe.subject).error(
            f"step {name}: parameters must be a mapping such as {{epochs: 3}}, got {yn.describe(value)}")
    args = [] if yn.kind_of(value) == "null" else _yaml_args(name, value, key_at)
    return _checked_step(name, args, key_at, onnx_steps)


def _yaml_args(step: str, node: yaml.Node, where: _Where) -> list[_Arg]:
    args = []
    for key, (_, value) in _entries(node, where, f"step {step}'s parameters").items():
        at = _node_where(where.source, value, where.subject)
        args.append((key, _yaml_value(step, key, value, at), at))
    return args


def _yaml_value(step: str, key: str, node: yaml.Node, where: _Where) -> ParamValue:
    """A parameter's value as written: numbers unquoted (1e-3 too, as YAML 1.2 reads it), words as strings."""
    kind = yn.kind_of(node)
    if kind in ("map", "seq", "null"):
        raise where.error(f"step {step}: {key} must be a single value, got {yn.describe(node)}")
    if node.style is None and _NUMBER.fullmatch(node.value):
        return int(node.value) if _INTEGER.fullmatch(node.value) else float(node.value)
    if kind == "bool":
        raise where.error(f"step {step}: {key}={node.value} must be a number or a word, not a boolean")
    return node.value
