"""The one shape each input runs at: resolved, never guessed.

A model declares its inputs with fixed and dynamic (-1) dimensions. A job runs at exactly one
shape per input: the shape the controller sent (BackendOptions.input_shapes), or, for a model
whose only dynamic dimension is a leading batch, that dimension set to the batch size. Anything
else would be a guess (edgefarm once filled dynamic dims with 1 and reported a detector 33x too
fast), so it is refused with the flag that resolves it.
"""
from __future__ import annotations

from typing import Sequence, Tuple

from edgefarm.agent.backends.base import BadInputError

Shape = Tuple[int, ...]


def run_shape(name: str, declared: Sequence[int], batch_size: int, wanted: Sequence[int] | None = None,
              dim_names: Sequence[str] = ()) -> Shape:
    """The shape input `name` runs at; BadInputError when `wanted` contradicts the model or a dim is unresolved."""
    declared = tuple(int(d) for d in declared)
    if wanted is not None:
        return check_wanted(name, declared, tuple(int(d) for d in wanted))
    if any(d < 0 for d in declared[1:]):
        raise BadInputError(unresolved_message(name, declared, dim_names, batch_size))
    if declared and declared[0] < 0:
        return (batch_size,) + declared[1:]
    if batch_size != 1 and (not declared or declared[0] != batch_size):
        raise BadInputError(f"input {name!r} has a fixed shape {list(declared)}; batch size {batch_size} needs "
                            "a model exported with a dynamic batch dimension")
    return declared


def check_wanted(name: str, declared: Shape, wanted: Shape) -> Shape:
    if len(wanted) != len(declared):
        raise BadInputError(f"input {name!r} has rank {len(declared)} {format_dims(declared)}, "
                            f"the job asks for rank {len(wanted)} {list(wanted)}")
    if any(d < 1 for d in wanted):
        raise BadInputError(f"input {name!r}: every dimension must be >= 1, got {list(wanted)}")
    clashes = [i for i, (have, want) in enumerate(zip(declared, wanted)) if have >= 0 and have != want]
    if clashes:
        raise BadInputError(f"input {name!r} is fixed at {format_dims(declared)}; the job asks for {list(wanted)} "
                            f"(dimension {clashes[0]} differs)")
    return wanted


def shapes_text(shapes: Sequence[tuple[str, Sequence[int]]], separator: str = ";") -> str:
    """images:1x3x640x640;sr: the job's shapes in trtexec's syntax, for engine keys and TensorRT profiles."""
    return separator.join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in shapes)


def format_dims(dims: Sequence[int], names: Sequence[str] = ()) -> str:
    """[batch, 3, height, width]: symbolic names where known, '?' for an unnamed dynamic dim."""
    shown = [str(d) if d >= 0 else (names[i] if i < len(names) and names[i] else "?") for i, d in enumerate(dims)]
    return "[" + ", ".join(shown) + "]"


def example_dims(dims: Sequence[int], batch_size: int) -> str:
    """A ready-to-edit example for --shape: the batch size first, image-like sizes for spatial dims."""
    spatial = len(dims) == 4
    values = [d if d >= 0 else (batch_size if i == 0 else (224 if spatial and i >= 2 else 128))
              for i, d in enumerate(dims)]
    return "x".join(str(v) for v in values)


def unresolved_message(name: str, declared: Sequence[int], dim_names: Sequence[str], batch_size: int) -> str:
    return (f"input {name!r} has dynamic dims {format_dims(declared, dim_names)}: give them with "
            f"--shape {name}:{example_dims(declared, batch_size)} (or shapes: in the nightly matrix)")
