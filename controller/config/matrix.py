"""The nightly matrix file: models × recipes × targets (devices or pools), measuring
settings and the regression policy. Validated on load with file:line errors.

    models:
      - digits-cnn
      - model: models/detector.onnx       # a model with dynamic dims says what to feed it
        shapes: {images: 1x3x640x640}
        inputs: data/detector_inputs.npz   # optional: real tensors instead of synthetic data
    recipes: [fp32, int8-static]
    targets:
      - device: jetson-orin-01
      - pool: coral               # a pool from devices.yaml
    measure: {warmup_seconds: 0.5, min_seconds: 3}
    regression: {min_effect: 0.05, per_device: {rpi5-coral-01: 0.08}}
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from edgefarm import yaml_nodes as yn
from edgefarm.controller.nightly.regression import RegressionPolicy
from edgefarm.controller.planning.input_plan import InputPlanError, ShapeList, parse_shape_args
from edgefarm.controller.planning.run_plan import MeasureSettings
from edgefarm.controller.planning.scheduler import TargetRef

TOP_KEYS = ("models", "recipes", "targets", "measure", "regression", "profile")
_POSITIVE_MEASURE_KEYS = {"warmup_seconds", "min_seconds", "timeout_seconds", "min_iterations", "batch_size"}
MEASURE_KEYS = ("warmup_seconds", "min_seconds", "min_iterations", "max_iterations", "timeout_seconds",
                "batch_size")
REGRESSION_KEYS = ("min_effect", "per_device")
MODEL_KEYS = ("model", "shapes", "inputs")


@dataclass(frozen=True)
class ModelFeed:
    """What a matrix model is fed: exact shapes for its dynamic dims, and optionally the user's tensors."""

    shapes: ShapeList = ()
    inputs: str | None = None


class MatrixError(yn.ConfigError):
    pass


@dataclass(frozen=True)
class Matrix:
    models: tuple[str, ...]
    recipes: tuple[str, ...]
    targets: tuple[TargetRef, ...]
    measure: MeasureSettings = MeasureSettings()
    regression: RegressionPolicy = field(default_factory=RegressionPolicy)
    feeds: Mapping[str, ModelFeed] = field(default_factory=dict)   # by model; absent: static shapes

    def feed_of(self, model: str) -> ModelFeed:
        return self.feeds.get(model, ModelFeed())


def load_matrix(path: Path) -> Matrix:
    source = str(path)
    ctx = yn.NodeContext(source, error_type=MatrixError)
    root = yn.compose(yn.read_text(Path(path), source, "create it (see docs/nightly.md for the format)", MatrixError),
                      source, MatrixError)
    if root is None:
        raise MatrixError(f"{source}:1: the file is empty; it needs models, recipes and targets")
    top = yn.entries(root, ctx, "the top level")
    yn.check_keys(top, root, ctx, TOP_KEYS, ("models", "recipes", "targets"))
    models = _models(top["models"].value, ctx, Path(path).parent)
    return Matrix(tuple(models), _strings(top["recipes"].value, ctx, "recipes"), _targets(top["targets"].value, ctx),
                  replace(_measure(top["measure"].value, ctx) if "measure" in top else MeasureSettings(),
                          profile=_flag(top["profile"].value, ctx, "profile") if "profile" in top else False),
                  _regression(top["regression"].value, ctx) if "regression" in top else RegressionPolicy(),
                  {name: feed for name, feed in models.items() if feed != ModelFeed()})


def _models(node: yaml.Node, ctx: yn.NodeContext, base: Path) -> dict[str, ModelFeed]:
    """Each model: a name or path, or {model, shapes, inputs}; files are relative to the matrix."""
    items = yn.sequence(node, ctx, "'models'", "[digits-cnn, {model: detector.onnx, shapes: {images: 1x3x640x640}}]")
    if not items:
        raise ctx.error(node, "'models' is empty; list at least one")
    resolve = _resolve_model(base)
    models: dict[str, ModelFeed] = {}
    for item in items:
        if yn.kind_of(item) != "map":
            models[resolve(yn.string(item, ctx, "each of 'models'"))] = ModelFeed()
            continue
        entries = yn.entries(item, ctx, "a model")
        yn.check_keys(entries, item, ctx, MODEL_KEYS, ("model",))
        models[resolve(yn.string(entries["model"].value, ctx, "model"))] = ModelFeed(
            _shapes(entries["shapes"].value, ctx) if "shapes" in entries else (),
            str(base / yn.string(entries["inputs"].value, ctx, "inputs")) if "inputs" in entries else None)
    return models


def _shapes(node: yaml.Node, ctx: yn.NodeContext) -> ShapeList:
    shapes = []
    for name, entry in yn.entries(node, ctx, "'shapes'").items():
        if yn.kind_of(entry.value) not in ("str", "int"):
            got = yn.describe(entry.value)
            raise ctx.error(entry.value, f"shapes: {name} must be dims like 1x3x640x640, got {got}")
        try:
            shapes += parse_shape_args([f"{name}:{entry.value.value}"])
        except InputPlanError as exc:
            raise ctx.error(entry.value, str(exc).replace("--shape ", "shapes: ")) from None
    return tuple(shapes)


def _resolve_model(base: Path):
    """Model files are relative to the matrix file; registry names stay as they are."""
    return lambda name: str(base / name) if Path(name).suffix else name


def _strings(node: yaml.Node, ctx: yn.NodeContext, what: str, convert=lambda s: s) -> tuple[str, ...]:
    items = yn.sequence(node, ctx, f"'{what}'", "[a, b]")
    if not items:
        raise ctx.error(node, f"'{what}' is empty; list at least one")
    return tuple(convert(yn.string(item, ctx, f"each of '{what}'")) for item in items)


def _targets(node: yaml.Node, ctx: yn.NodeContext) -> tuple[TargetRef, ...]:
    refs = []
    for item in yn.sequence(node, ctx, "'targets'", "[{device: NAME}, {pool: NAME}]"):
        entries = yn.entries(item, ctx, "a target")
        yn.check_keys(entries, item, ctx, ("device", "pool"))
        if len(entries) != 1:
            raise ctx.error(item, "a target is either {device: NAME} or {pool: NAME}")
        (kind, entry), = entries.items()
        refs.append(TargetRef(**{kind: yn.string(entry.value, ctx, kind)}))
    if not refs:
        raise ctx.error(node, "'targets' is empty; list at least one device or pool")
    return tuple(refs)


def _flag(node: yaml.Node, ctx: yn.NodeContext, what: str) -> bool:
    if yn.kind_of(node) != "bool":
        raise ctx.error(node, f"{what} must be true or false, got {yn.describe(node)}")
    return node.value.lower() in ("true", "yes", "on")


def _measure(node: yaml.Node, ctx: yn.NodeContext) -> MeasureSettings:
    entries = yn.entries(node, ctx, "'measure'")
    yn.check_keys(entries, node, ctx, MEASURE_KEYS)
    values = {key: _number(entry.value, ctx, f"measure.{key}") for key, entry in entries.items()}
    for key in _POSITIVE_MEASURE_KEYS & set(values):
        if values[key] <= 0:  # on the wire 0 means "unset": the board would silently use its own default
            raise ctx.error(entries[key].value, f"measure.{key} must be > 0, got {values[key]:g} "
                                                "(0 would make the board fall back to its own default)")
    ints = {k: int(v) for k, v in values.items() if k in ("min_iterations", "max_iterations", "batch_size")}
    return MeasureSettings(**{**values, **ints})


def _regression(node: yaml.Node, ctx: yn.NodeContext) -> RegressionPolicy:
    entries = yn.entries(node, ctx, "'regression'")
    yn.check_keys(entries, node, ctx, REGRESSION_KEYS)
    min_effect = _number(entries["min_effect"].value, ctx, "regression.min_effect") if "min_effect" in entries \
        else RegressionPolicy().min_effect
    per_device: Mapping[str, float] = {}
    if "per_device" in entries:
        per_device = {name: _number(e.value, ctx, f"regression.per_device.{name}")
                      for name, e in yn.entries(entries["per_device"].value, ctx, "'per_device'").items()}
    return RegressionPolicy(min_effect=min_effect, per_device=per_device)


def _number(node: yaml.Node, ctx: yn.NodeContext, what: str) -> float:
    if yn.kind_of(node) not in ("int", "float"):
        raise ctx.error(node, f"{what} must be a number, got {yn.describe(node)}")
    value = float(node.value)
    if value < 0:
        raise ctx.error(node, f"{what} must be >= 0, got {value}")
    return value
