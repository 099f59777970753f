"""A folder of images as calibration or evaluation data: decoded, preprocessed and saved as an .npz.

The .npz holds `x` (float32, samples stacked on axis 0) and, when the folder has class
subfolders, int64 labels `y`: the same format `edgefarm.compressors.npz_data` reads, so the rest
of the code cannot tell a folder from an .npz.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors.cache import write_npz_once
from edgefarm.compressors.errors import CompressorError

log = logging.getLogger(__name__)

_LAYOUTS = ("nchw", "nhwc")
_COLORS = ("rgb", "bgr", "gray")
_EXAMPLES = {  # the valid form of each key, quoted in every error about it
    "size": "size=320x320 (WIDTHxHEIGHT)", "scale": "scale=1/255 or scale=0.0039", "layout": "layout=nchw or nhwc",
    "mean": "mean=0.485/0.456/0.406 (1 or 3 values)", "std": "std=0.229/0.224/0.225 (1 or 3 values, none 0)",
    "color": "color=rgb, bgr or gray",
}


class ImageDataError(CompressorError, ValueError):
    """A preprocessing spec or image folder that cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class Preprocess:
    """How each image becomes one sample: resize to width x height, then (pixels*scale - mean)/std."""

    width: int
    height: int
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nchw"
    color: str = "rgb"

    def __post_init__(self) -> None:
        _check(self.width >= 1 and self.height >= 1, "size", f"size {self.width}x{self.height} is below 1x1")
        _check(math.isfinite(self.scale) and self.scale != 0, "scale", f"scale {self.scale} is 0 or not finite")
        _check(self.layout in _LAYOUTS, "layout", f"layout {self.layout!r} is unknown")
        _check(self.color in _COLORS, "color", f"color {self.color!r} is unknown")
        for key, values in (("mean", self.mean), ("std", self.std)):
            counts = (1,) if self.color == "gray" else (1, 3)
            _check(len(values) in counts, key, f"{key} has {len(values)} values but color={self.color} takes "
                   f"{' or '.join(map(str, counts))}")
            _check(all(math.isfinite(v) for v in values), key, f"{key} {values} is not finite")
        _check(0 not in self.std, "std", f"std {self.std} has a 0, which would divide by zero")

    def text(self) -> str:
        """The canonical spec: parse_preprocess(spec.text()) == spec; repr keeps floats exact for cache keys."""
        def floats(values: tuple[float, ...]) -> str:
            return "/".join(repr(float(v)) for v in values)
        return (f"size={self.width}x{self.height},scale={float(self.scale)!r},mean={floats(self.mean)},"
                f"std={floats(self.std)},layout={self.layout},color={self.color}")

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3


def _check(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise ImageDataError(f"--preprocess: {problem}; write e.g. {_EXAMPLES[key]}")


def parse_preprocess(text: str) -> Preprocess:
    """Parse `size=WIDTHxHEIGHT,key=value,...`; size is width x height, as image sizes are usually written."""
    fields: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _EXAMPLES or key in fields:
            problem = "is not key=value" if not sep else "has an unknown key" if key not in _EXAMPLES else "repeats"
            raise ImageDataError(f"--preprocess: {item!r} in {text!r} {problem}; the keys are "
                                 f"{', '.join(_EXAMPLES.values())}")
        fields[key] = value.strip()
    _check("size" in fields, "size", f"{text!r} has no size, which is required")
    width, height = _size(fields.pop("size"))
    options: dict = {key: fields[key].lower() for key in ("layout", "color") if key in fields}
    if "scale" in fields:
        options["scale"] = _scale(fields["scale"])
    for key in ("mean", "std"):
        if key in fields:
            options[key] = tuple(_number(key, part) for part in fields[key].split("/"))
    return Preprocess(width, height, **options)


def _size(value: str) -> tuple[int, int]:
    width, sep, height = value.lower().partition("x")
    _check(bool(sep) and width.strip().isdigit() and height.strip().isdigit(), "size",
           f"size {value!r} is not WIDTHxHEIGHT")
    return int(width), int(height)


def _scale(value: str) -> float:
    numerator, sep, denominator = value.partition("/")
    divisor = _number("scale", denominator) if sep else 1.0
    _check(divisor != 0, "scale", f"scale {value!r} divides by zero")
    return _number("scale", numerator) / divisor


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ImageDataError(f"--preprocess: {key} {value!r} is not a number; write e.g. {_EXAMPLES[key]}") from None


def apply(image: Image.Image, spec: Preprocess) -> np.ndarray:
    """One float32 sample, CHW or HWC as spec.layout says."""
    image = image.convert("L" if spec.color == "gray" else "RGB")
    # Pillow's bilinear filter antialiases when it shrinks (as torchvision does), unlike OpenCV's INTER_LINEAR.
    image = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float64).reshape(spec.height, spec.width, spec.channels)
    if spec.color == "bgr":
        pixels = pixels[:, :, ::-1]
    # Computed in float64 and rounded once, so a value is exactly the float32 nearest the formula.
    sample = ((pixels * spec.scale - np.array(spec.mean)) / np.array(spec.std)).astype(np.float32)
    return np.ascontiguousarray(sample.transpose(2, 0, 1) if spec.layout == "nchw" else sample)


def is_image_folder(path: Path) -> bool:
    """Data given as a folder of images rather than an .npz file."""
    return Path(path).is_dir()


def folder_to_npz(folder: Path, spec: Preprocess, cache_dir: Path, input_name: str = "x",
                  *, context: str = "image folder") -> Path:
    """The cached .npz of `folder` preprocessed by `spec`, made now if missing.

    Class subfolders (sorted by name) give labels y = their index; otherwise there is no y.
    `context` starts error messages: pass the flag the folder came from, e.g. "--calib-data".
    An existing entry is returned untouched: np.savez stamps the write time into the zip,
    so rewriting it would change the content hash the file is shipped to devices by.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ImageDataError(f"{context}: {folder} {what}; pass a folder of images or an .npz file")
    files = _labelled_files(folder, context)
    entry = Path(cache_dir) / "image-data" / f"{_key(folder, files, spec, input_name)}.npz"
    if entry.is_file():
        return entry
    arrays = _decode_all(folder, files, spec, input_name, context)
    write_npz_once(entry, arrays)
    log.info("%s: %d images from %s saved as %s", context, len(arrays[input_name]), folder, entry)
    return entry


def _visible(folder: Path, pattern: str) -> list[Path]:
    # Hidden entries (.DS_Store, ._x.jpg from macOS, .git) are never data. Sorting by parts, not by
    # string, keeps class order (sorted names) and sample order the same: "a b/" sorts before "a/" as a string.
    paths = (p for p in folder.glob(pattern) if not any(s.startswith(".") for s in p.relative_to(folder).parts))
    return sorted(paths, key=lambda p: p.parts)


def _files_under(folder: Path) -> list[Path]:
    return [path for path in _visible(folder, "**/*") if path.is_file()]


def _labelled_files(folder: Path, context: str) -> list[tuple[Path, int | None]]:
    """Every candidate file with its class index, or None for all when there are no class subfolders."""
    classes = [d for d in _visible(folder, "*") if d.is_dir() and _files_under(d)]
    loose = [path for path in _visible(folder, "*") if path.is_file()]
    if not classes:
        return [(path, None) for path in loose]
    if loose:
        log.warning("%s: ignored %d files beside the class subfolders of %s (first %s)",
                    context, len(loose), folder, loose[0].name)
    return [(path, label) for label, d in enumerate(classes) for path in _files_under(d)]


def _key(folder: Path, files: list[tuple[Path, int | None]], spec: Preprocess, input_name: str) -> str:
    digest = hashlib.sha256(f"{spec.text()}\n{input_name}\n".encode())
    for path, _ in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _decode_all(folder: Path, files: list[tuple[Path, int | None]], spec: Preprocess, input_name: str,
                context: str) -> dict[str, np.ndarray]:
    hwc = (spec.height, spec.width, spec.channels)
    shape = (hwc[2], *hwc[:2]) if spec.layout == "nchw" else hwc
    x = np.empty((len(files), *shape), dtype=np.float32)  # filled in place: one copy of the data, not two
    labels: list[int | None] = []
    skipped: list[Path] = []
    for path, label in files:
        try:
            with Image.open(path) as image:
                x[len(labels)] = apply(image, spec)
        except (OSError, ValueError):  # UnidentifiedImageError is an OSError; so is a truncated file
            skipped.append(path)
            continue
        labels.append(label)
    if skipped:
        log.warning("%s: skipped %d files Pillow cannot decode in %s (first %s)",
                    context, len(skipped), folder, skipped[0])
    if not labels:
        raise ImageDataError(f"{context}: no decodable image in {folder} ({len(files)} files tried); "
                             "put PNG or JPEG files in it, or one subfolder of them per class")
    arrays = {input_name: x[:len(labels)]}
    if files[0][1] is not None:
        arrays["y"] = np.array(labels, dtype=np.int64)
    return arrays
