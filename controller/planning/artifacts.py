"""The artifacts a bisect walks: an ordered sequence of versions of one model, checked before
anything is measured.

A bisect compares each artifact's latency with the good end's, which only means something when
every artifact is the same model fed the same tensors: the same format, the same input and output
names, dtypes and ranks, and the same input shapes (dynamic dims resolved by `--shape` exactly as
`edgefarm run` resolves them, and refused the same way when nothing resolves them).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgefarm.agent.digest import sha256_file
from edgefarm.controller.planning.input_plan import InputPlan, declared_inputs, shapes_text
from edgefarm.controller.planning.job_inputs import JobInputs
from edgefarm.controller.planning.run_plan import PlanError

FORMATS = (".onnx", ".tflite")


class ArtifactSequenceError(PlanError):
    """Artifacts that cannot be bisected together; the message names the artifact and the fix."""


@dataclass(frozen=True)
class Signature:
    """What makes two artifacts versions of one model: (name, dtype, rank) of each input and output."""

    inputs: tuple[tuple[str, str, int], ...]
    outputs: tuple[tuple[str, str, int], ...]

    def text(self) -> str:
        def side(tensors: tuple[tuple[str, str, int], ...]) -> str:
            return ", ".join(f"{name} {dtype} rank {rank}" for name, dtype, rank in tensors) or "(unknown)"
        return f"inputs {side(self.inputs)}; outputs {side(self.outputs)}"


@dataclass(frozen=True)
class Artifact:
    path: Path
    label: str                   # unique within the sequence: the file name, or as much of its path as needed
    sha256: str
    size_bytes: int
    inputs: JobInputs            # the shapes (and data) every job of the bisect feeds


def artifact_paths(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """A directory (its .onnx/.tflite files sorted by name), a comma-separated list, or a sequence."""
    if isinstance(spec, str | Path) and Path(spec).is_dir():
        found = sorted(p for p in Path(spec).iterdir() if p.suffix in FORMATS and p.is_file())
        if not found:
            raise ArtifactSequenceError(f"--artifacts {spec}: no .onnx or .tflite files in this directory")
        return found
    items = [s.strip() for s in str(spec).split(",")] if isinstance(spec, str | Path) else [str(s) for s in spec]
    paths = [Path(item) for item in items if item]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ArtifactSequenceError(f"--artifacts: {missing[0]} does not exist; give existing files (a comma list) "
                                    "or a directory of them")
    return paths


def labels(paths: Sequence[Path]) -> list[str]:
    """The shortest trailing part of each path that tells the artifacts apart (ckpt-3/model.onnx)."""
    parts = [p.resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    raise ArtifactSequenceError(f"--artifacts lists {_repeated(paths)} twice; each artifact once")


def check_sequence(paths: Sequence[Path], plan_of: Callable[[Path], JobInputs]) -> list[Artifact]:
    """The artifacts, refused unless they are one model at one set of input shapes.
    plan_of(path) gives the JobInputs an `edgefarm run` of that file would use (raises on open dims)."""
    if len(paths) < 2:
        raise ArtifactSequenceError(f"--artifacts names {len(paths)} artifact(s); a bisect needs at least two "
                                    "(the good end and the bad end)")
    names = labels(paths)
    _same_format(paths, names)
    first = signature(paths[0])
    for path, name in zip(paths[1:], names[1:], strict=True):
        theirs = signature(path)
        if theirs != first:
            raise ArtifactSequenceError(f"--artifacts: {name} is another model than {names[0]}: {theirs.text()}, "
                                        f"but {names[0]} has {first.text()}; bisect versions of one model")
    artifacts = [Artifact(p, n, sha256_file(p), p.stat().st_size, plan_of(p)) for p, n in zip(paths, names,
                                                                                             strict=True)]
    _same_shapes(artifacts)
    return artifacts


def end_index(names: Sequence[str], paths: Sequence[Path], given: str | None, flag: str, default: int) -> int:
    """The position of --good / --bad: a label, a file name, a path of the sequence, or a 0-based position."""
    if given is None:
        return default
    for i, (name, path) in enumerate(zip(names, paths, strict=True)):
        if given in (name, path.name, str(path)) or Path(given).resolve() == path.resolve():
            return i
    if given.isdigit() and int(given) < len(names):
        return int(given)
    shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
    raise ArtifactSequenceError(f"{flag} {given!r} is not one of the artifacts; give one of {shown} "
                                f"or a position 0..{len(names) - 1}")


def signature(path: Path) -> Signature:
    try:
        declared = declared_inputs(path)
    except Exception as exc:  # onnx's DecodeError, a truncated file: the user's file, not our bug
        raise ArtifactSequenceError(f"--artifacts: {path} is not a readable {path.suffix} model ({exc})") from None
    inputs = tuple((i.name, str(i.dtype), len(i.shape)) for i in declared or ())
    return Signature(inputs, _outputs(path))


def _outputs(path: Path) -> tuple[tuple[str, str, int], ...]:
    if path.suffix != ".onnx":
        return ()  # a .tflite's outputs: its inputs (where LiteRT is installed here) and the board tell
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return tuple((o.name, onnx.TensorProto.DataType.Name(o.type.tensor_type.elem_type).lower(),
                  len(o.type.tensor_type.shape.dim)) for o in graph.output)


def _same_format(paths: Sequence[Path], names: Sequence[str]) -> None:
    formats = {p.suffix for p in paths}
    odd = [n for p, n in zip(paths, names, strict=True) if p.suffix not in FORMATS]
    if odd:
        raise ArtifactSequenceError(f"--artifacts: {odd[0]} is not an .onnx or .tflite model")
    if len(formats) > 1:
        raise ArtifactSequenceError(f"--artifacts mixes {' and '.join(sorted(formats))} files; one format per bisect "
                                    "(each runs on its own backend, so their times do not compare)")


def _same_shapes(artifacts: Sequence[Artifact]) -> None:
    first = artifacts[0]
    for artifact in artifacts[1:]:
        if _fed(artifact.inputs.plan) != _fed(first.inputs.plan):
            raise ArtifactSequenceError(
                f"--artifacts: {artifact.label} is measured at {_shown(artifact.inputs.plan)} but {first.label} at "
                f"{_shown(first.inputs.plan)}; a bisect compares one set of input shapes (export the artifacts "
                "alike, or bisect each shape on its own)")


def _fed(plan: InputPlan | None) -> tuple:
    return (plan.shapes, plan.batch_size) if plan is not None else ()


def _shown(plan: InputPlan | None) -> str:
    return shapes_text(plan.shapes) or "scalars" if plan is not None else "its own static shapes"


def _repeated(paths: Sequence[Path]) -> str:
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            return str(path)
        seen.add(path.resolve())
    return str(paths[0])

