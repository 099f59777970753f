"""Checks that a user's file is a whole, valid ONNX model before any recipe touches it."""
from __future__ import annotations

from pathlib import Path

from edgefarm.compressors.errors import BadModelError

# A serialized ModelProto starts with field 1 (ir_version, a varint): tag byte 0x08.
# A file that starts this way but does not parse was most likely cut short.
_ONNX_FIRST_BYTE = b"\x08"


def check_onnx_file(path: Path) -> None:
    """Raise BadModelError, with a one-line reason and fix, unless `path` is a valid ONNX model."""
    _check_is_nonempty_file(path)
    _check_parses(path)
    _check_validates(path)


def _check_is_nonempty_file(path: Path) -> None:
    if not path.exists():
        raise BadModelError(f"model file {path} does not exist; check the path and that the file was copied")
    if not path.is_file():
        raise BadModelError(f"model path {path} is not a file; pass the .onnx file itself")
    if path.stat().st_size == 0:
        raise BadModelError(f"model file {path} is empty; re-export or re-copy it")


def _check_parses(path: Path) -> None:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        onnx.load(str(path), load_external_data=False)
    except DecodeError as error:
        raise BadModelError(_parse_failure_message(path, error)) from None


def _parse_failure_message(path: Path, error: Exception) -> str:
    with path.open("rb") as stream:
        looks_like_onnx = stream.read(1) == _ONNX_FIRST_BYTE
    if looks_like_onnx:
        return f"model file {path} looks truncated or corrupted ({error}); re-export or re-copy it"
    return f"{path} is not an ONNX model ({error}); export it to ONNX first, e.g. with torch.onnx.export"


def _check_validates(path: Path) -> None:
    import onnx

    try:
        # The path form also checks external data and models over protobuf's 2 GB limit.
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, OSError) as error:
        reason = str(error).strip().splitlines()[0]
        raise BadModelError(
            f"{path} is not a valid ONNX model: {reason}; re-export it with the model's exporter"
        ) from None
