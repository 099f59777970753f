"""What a job feeds its model: the user's tensors from an input-data artifact, or synthetic ones.

An input-data .npz holds one array per input name. An array of the input's rank is one sample;
one of rank + 1 is a stack of samples that warm-up and measuring cycle through. A one-sample
array beside stacked ones is repeated with every sample (a scalar sample rate beside a stack of
audio frames). Arrays are fed as they are: a batch dimension in the data is honoured, never
reshaped, and a shape or dtype that does not fit the model is refused, not converted.

A fidelity .npz holds stacked feeds ("input:NAME") and the fp32 model's outputs for them
("output:I", plus "output_names"), written by the controller.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from edgefarm.agent.backends.base import BadInputError, TensorSpec

Feeds = Dict[str, np.ndarray]
Shape = Tuple[int, ...]


@dataclass(frozen=True)
class FidelitySet:
    feeds: list[Feeds]
    output_names: list[str]
    references: list[list[np.ndarray]]   # references[k][i]: output i for feeds[k]


def synthetic_feeds(specs: Sequence[TensorSpec], shapes: Mapping[str, Shape], seed: int) -> Feeds:
    """Deterministic random data at the resolved shapes."""
    rng = np.random.default_rng(seed)
    return {spec.name: _random_tensor(rng, shapes[spec.name], spec.dtype) for spec in specs}


def _random_tensor(rng: np.random.Generator, shape: Shape, dtype: str) -> np.ndarray:
    if dtype.startswith("float"):
        return np.asarray(rng.random(shape, dtype=np.float32)).astype(dtype)
    if dtype in ("int8", "uint8"):  # quantized image data: the whole range
        info = np.iinfo(dtype)
        return np.asarray(rng.integers(info.min, info.max + 1, size=shape)).astype(dtype)
    # int32/int64 inputs are indices (token ids) or masks: 1 is valid for both, so a text model
    # runs on in-vocabulary tokens with a full attention mask. Other meanings (a sample rate) need
    # real values: the job says so when the model fails on these.
    return np.ones(shape, dtype=dtype if dtype != "bool" else bool)


def load_feeds(path: str, specs: Sequence[TensorSpec], shapes: Mapping[str, Shape]) -> list[Feeds]:
    """The samples of an input-data artifact, each checked against the shapes the job runs at."""
    arrays = _read_npz(path, "input data")
    missing = [spec.name for spec in specs if spec.name not in arrays]
    if missing:
        raise BadInputError(f"the input data has no array {missing[0]!r} (it has {sorted(arrays)}); the model "
                            f"takes {describe_inputs(specs, shapes)}")
    stacked = {spec.name: _as_stack(arrays[spec.name], spec, shapes[spec.name]) for spec in specs}
    counts = {len(s) for s in stacked.values() if len(s) > 1}
    if len(counts) > 1:
        raise BadInputError(f"the input data's stacked arrays hold different sample counts {sorted(counts)}; "
                            "give every input the same number of samples, or one")
    count = counts.pop() if counts else 1
    return [{name: s[k if len(s) > 1 else 0] for name, s in stacked.items()} for k in range(count)]


def _as_stack(array: np.ndarray, spec: TensorSpec, shape: Shape) -> list[np.ndarray]:
    # np.asarray(order="C"), not np.ascontiguousarray: that one turns a scalar (a sample rate) into shape [1].
    if array.dtype != np.dtype(spec.dtype):
        raise BadInputError(f"input data {spec.name!r} is {array.dtype}, the model takes {spec.dtype}; "
                            f"save it with .astype(np.{spec.dtype})")
    if tuple(array.shape) == tuple(shape):
        return [np.asarray(array, order="C")]
    if array.ndim == len(shape) + 1 and tuple(array.shape[1:]) == tuple(shape) and len(array) > 0:
        return [np.asarray(a, order="C") for a in array]
    raise BadInputError(f"input data {spec.name!r} has shape {list(array.shape)}; the job runs it at "
                        f"{list(shape)}: give one sample of that shape or a stack [N, {', '.join(map(str, shape))}]")


def load_fidelity_set(path: str) -> FidelitySet:
    arrays = _read_npz(path, "fidelity data")
    if "output_names" not in arrays:
        raise BadInputError("the fidelity artifact has no 'output_names'; it was not written by edgefarm")
    names = [str(n) for n in arrays["output_names"]]
    inputs = {key[len("input:"):]: value for key, value in arrays.items() if key.startswith("input:")}
    count = len(next(iter(inputs.values()))) if inputs else 0
    feeds = [{name: np.asarray(value[k], order="C") for name, value in inputs.items()} for k in range(count)]
    references = [[arrays[f"output:{i}"][k] for i in range(len(names))] for k in range(count)]
    return FidelitySet(feeds, names, references)


def describe_inputs(specs: Sequence[TensorSpec], shapes: Mapping[str, Shape]) -> str:
    """'images' float32[1, 3, 640, 640], 'sr' int64[]: what an .npz must hold."""
    return ", ".join(f"{spec.name!r} {spec.dtype}{list(shapes.get(spec.name, spec.shape))}" for spec in specs)


def _read_npz(path: str, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"the {what} artifact is not a readable .npz without pickles: {exc}") from exc
