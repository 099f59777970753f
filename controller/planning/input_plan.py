"""What a job feeds its model, settled on the controller before anything is compressed or measured.

Every dynamic dimension of every input gets a value from the user (`--shape`, trtexec's syntax
`images:1x3x640x640`), from the input data (`--inputs FILE.npz`), from a symbolic name another
input already binds ("seq" shared by input_ids and attention_mask), or, for a leading batch
dimension, from the batch size. A dimension nothing resolves is refused in one line that names
the input, its declared dims and a ready example, rather than guessed: edgefarm once filled such
dims with 1 and reported a detector 33x too fast.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefarm.agent.shapes import example_dims
from edgefarm.compressors.npz_data import ModelInput, model_inputs

Shape = tuple[int, ...]
ShapeList = tuple[tuple[str, Shape], ...]
_DIMS = re.compile(r"^\d+(x\d+)*$")


class InputPlanError(ValueError):
    """Shapes or input data that do not fit the model; the message says what, where and how to fix it."""


@dataclass(frozen=True)
class InputPlan:
    """The exact shape of every input, the batch size they imply, and the user's data if any."""

    shapes: ShapeList
    batch_size: int
    inputs_npz: Path | None = None
    pinned: bool = False       # a dynamic dim other than a leading batch was resolved: the agent must honour it

    def shape_of(self, name: str) -> Shape:
        return dict(self.shapes)[name]

    def text(self) -> str:
        return shapes_text(self.shapes)


def format_shape(dims: Sequence[int]) -> str:
    return "x".join(str(d) for d in dims) if len(dims) else "scalar"


def shapes_text(shapes: Iterable[tuple[str, Sequence[int]]]) -> str:
    """images:1x3x640x640 sr:scalar: the report's input_shapes column and the nightly fingerprint's."""
    return " ".join(f"{name}:{format_shape(dims)}" for name, dims in shapes)


def parse_shape_args(values: Sequence[str]) -> ShapeList:
    """`--shape images:1x3x640x640` (repeatable; `a:1x3,b:1x8` also works, as trtexec's --shapes)."""
    parsed: dict[str, Shape] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, dims = _parse_one(item)
            if name in parsed and parsed[name] != dims:
                raise InputPlanError(f"--shape {item}: input {name!r} is given twice with different dims")
            parsed[name] = dims
    return tuple(parsed.items())


def _parse_one(item: str) -> tuple[str, Shape]:
    name, sep, dims = item.rpartition(":")  # names may hold ':' (TensorFlow's 'serving_default_x:0')
    if not sep or not name:
        raise InputPlanError(f"--shape {item}: write NAME:DIMS, e.g. --shape images:1x3x640x640")
    if dims in ("", "scalar"):
        return name, ()
    if not _DIMS.match(dims):
        raise InputPlanError(f"--shape {item}: dims {dims!r} are not whole numbers joined by 'x'; "
                             f"write e.g. {name}:1x3x640x640")
    shape = tuple(int(d) for d in dims.split("x"))
    if 0 in shape:
        raise InputPlanError(f"--shape {item}: a dimension of 0 is empty; every dimension must be >= 1")
    return name, shape


def resolve(inputs: Sequence[ModelInput], given: ShapeList, batch_size: int | None,
            model: str) -> InputPlan:
    """Every input's exact shape from `given`, shared symbols and the batch size; InputPlanError otherwise."""
    wanted = dict(given)
    names = [i.name for i in inputs]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise InputPlanError(f"--shape names input {unknown[0]!r}, but {model} has inputs "
                             f"{', '.join(_describe(i) for i in inputs)}")
    for spec in inputs:
        if spec.name in wanted:
            _check_given(spec, wanted[spec.name], model)
    symbols = _bind_symbols(inputs, wanted)
    batch = _batch_size(inputs, wanted, symbols, batch_size)
    shapes = tuple((spec.name, wanted[spec.name] if spec.name in wanted else _fill(spec, symbols, batch))
                   for spec in inputs)
    pinned = any(not _is_fixed(d) for spec in inputs for d in spec.shape[1:])
    return InputPlan(shapes, batch, pinned=pinned)


def _check_given(spec: ModelInput, dims: Shape, model: str) -> None:
    if len(dims) != len(spec.shape):
        raise InputPlanError(f"--shape {spec.name}:{format_shape(dims)}: input {spec.name!r} of {model} has rank "
                             f"{len(spec.shape)} {_dims_text(spec)}, not {len(dims)}")
    for index, (declared, value) in enumerate(zip(spec.shape, dims, strict=True)):
        if isinstance(declared, int) and declared > 0 and declared != value:
            raise InputPlanError(f"--shape {spec.name}:{format_shape(dims)}: dimension {index} of {spec.name!r} is "
                                 f"fixed at {declared} in {model} {_dims_text(spec)}")


def _bind_symbols(inputs: Sequence[ModelInput], wanted: Mapping[str, Shape]) -> dict[str, tuple[int, str]]:
    """symbol -> (value, the input that set it); inputs that share a symbol must agree on it."""
    bound: dict[str, tuple[int, str]] = {}
    for spec in inputs:
        if spec.name not in wanted:
            continue
        for declared, value in zip(spec.shape, wanted[spec.name], strict=True):
            if not isinstance(declared, str):
                continue
            if declared in bound and bound[declared][0] != value:
                value_before, where = bound[declared]
                raise InputPlanError(f"symbolic dim {declared!r} is {value_before} in {where!r} but {value} in "
                                     f"{spec.name!r}; inputs that share it must agree")
            bound.setdefault(declared, (value, spec.name))
    return bound


def _batch_size(inputs: Sequence[ModelInput], wanted: Mapping[str, Shape], symbols: Mapping[str, tuple[int, str]],
                asked: int | None) -> int:
    """The batch the shapes imply (a dynamic leading dim that was given), else --batch-size (1 by default)."""
    for spec in inputs:
        if spec.shape and not _is_fixed(spec.shape[0]):
            implied = wanted[spec.name][0] if spec.name in wanted else _symbol_value(spec.shape[0], symbols)
            if implied is not None:
                if asked is not None and asked != implied:
                    raise InputPlanError(f"--batch-size {asked} contradicts the batch {implied} that the shape of "
                                         f"{spec.name!r} gives; drop one of them")
                return implied
    return asked or 1


def _fill(spec: ModelInput, symbols: Mapping[str, tuple[int, str]], batch: int) -> Shape:
    dims = []
    for index, declared in enumerate(spec.shape):
        value = declared if _is_fixed(declared) else _symbol_value(declared, symbols)
        if value is None and index == 0:
            value = batch
        if value is None:
            raise InputPlanError(unresolved(spec, batch))
        dims.append(int(value))
    return tuple(dims)


def unresolved(spec: ModelInput, batch: int) -> str:
    declared = [d if _is_fixed(d) else -1 for d in spec.shape]
    return (f"input {spec.name!r} has dynamic dims {_dims_text(spec)}: give them with "
            f"--shape {spec.name}:{example_dims(declared, batch)}")


def _symbol_value(declared: object, symbols: Mapping[str, tuple[int, str]]) -> int | None:
    return symbols[declared][0] if isinstance(declared, str) and declared in symbols else None


def _is_fixed(declared: object) -> bool:
    return isinstance(declared, int) and declared > 0


def _dims_text(spec: ModelInput) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in spec.shape) + "]"


def _describe(spec: ModelInput) -> str:
    return f"{spec.name!r} {spec.dtype}{_dims_text(spec)}"


def shapes_from_data(inputs: Sequence[ModelInput], npz: Path) -> ShapeList:
    """The shape of one sample of each input in an --inputs file: an array of the input's rank is one
    sample, one of rank + 1 a stack of them. Dtypes must match exactly; nothing is converted."""
    arrays = _read_npz(npz)
    missing = [spec.name for spec in inputs if spec.name not in arrays]
    if missing:
        raise InputPlanError(f"--inputs {npz}: no array {missing[0]!r} (it has {sorted(arrays) or 'none'}); save one "
                             f"per input: {', '.join(_describe(i) for i in inputs)}")
    extra = sorted(set(arrays) - {spec.name for spec in inputs})
    if extra:
        raise InputPlanError(f"--inputs {npz}: array {extra[0]!r} is not an input of the model; its inputs are "
                             f"{', '.join(_describe(i) for i in inputs)}")
    shapes = tuple((spec.name, _sample_shape(spec, arrays[spec.name], npz)) for spec in inputs)
    _check_sample_counts(inputs, arrays, npz)
    return shapes


def _sample_shape(spec: ModelInput, array: np.ndarray, npz: Path) -> Shape:
    where = f"--inputs {npz}: array {spec.name!r}"
    if array.dtype != spec.dtype:
        raise InputPlanError(f"{where} is {array.dtype}, input {spec.name!r} takes {spec.dtype}; "
                             f"save it with .astype(np.{spec.dtype})")
    rank = len(spec.shape)
    if array.ndim not in (rank, rank + 1) or (array.ndim == rank + 1 and len(array) == 0):
        raise InputPlanError(f"{where} has shape {list(array.shape)}; input {spec.name!r} is {_dims_text(spec)}: "
                             f"give one sample of rank {rank} or a stack of samples of rank {rank + 1}")
    return tuple(int(d) for d in (array.shape if array.ndim == rank else array.shape[1:]))


def _check_sample_counts(inputs: Sequence[ModelInput], arrays: Mapping[str, np.ndarray], npz: Path) -> None:
    counts = {spec.name: len(arrays[spec.name]) for spec in inputs if arrays[spec.name].ndim == len(spec.shape) + 1}
    if len(set(counts.values())) > 1:
        raise InputPlanError(f"--inputs {npz}: the stacked arrays hold different sample counts {counts}; "
                             "give every stacked input the same number of samples")


def _read_npz(npz: Path) -> dict[str, np.ndarray]:
    import zipfile

    if not Path(npz).is_file():
        raise InputPlanError(f"--inputs {npz} does not exist; check the path")
    try:
        with np.load(npz, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputPlanError(f"--inputs {npz} is not an .npz of plain arrays ({exc}); write it with np.savez") \
            from None


def plan_inputs(inputs: Sequence[ModelInput], given: ShapeList, batch_size: int | None, inputs_npz: Path | None,
                model: str) -> InputPlan:
    """The input plan of a run: from the data when there is some (and --shape must agree), else from shapes."""
    if inputs_npz is None:
        return resolve(inputs, given, batch_size, model)
    from_data = dict(shapes_from_data(inputs, inputs_npz))
    for name, dims in given:
        if name in from_data and from_data[name] != dims:
            raise InputPlanError(f"--shape {name}:{format_shape(dims)} contradicts --inputs {inputs_npz}, whose "
                                 f"{name!r} samples are {format_shape(from_data[name])}; drop --shape or fix the data")
    plan = resolve(inputs, tuple(from_data.items()), batch_size, model)
    return InputPlan(plan.shapes, plan.batch_size, Path(inputs_npz), plan.pinned)


def declared_inputs(model_path: Path) -> list[ModelInput] | None:
    """The inputs a model file declares; None for a .tflite when no LiteRT runtime is installed here
    (the agent then resolves and refuses on its own)."""
    if Path(model_path).suffix in (".pte", ".ovir"):
        return None  # no ONNX graph to read here: the agent's runtime resolves and refuses on its own
    if Path(model_path).suffix != ".tflite":
        return model_inputs(Path(model_path))
    interpreter = _tflite_interpreter(model_path)
    if interpreter is None:
        return None
    return [ModelInput(d["name"], tuple(int(x) if x > 0 else None for x in d.get("shape_signature", d["shape"])),
                       np.dtype("float32") if d["quantization"][0] else np.dtype(d["dtype"]))
            for d in interpreter.get_input_details()]


def _tflite_interpreter(model_path: Path):  # -> an Interpreter, or None
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            interpreter_class = __import__(module, fromlist=["Interpreter"]).Interpreter
        except ImportError:
            continue
        return interpreter_class(model_path=str(model_path))
    return None
