"""A user's own PyTorch module, exported to ONNX so it goes through the same recipes as any model.

`export_module` is the general export (any number of inputs, any dynamic axes) that
minilm uses too; torch is imported only when exporting.
"""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors.cache import staged_directory
from edgefarm.compressors.errors import BadModelError
from edgefarm.compressors.models.bundle import ModelBundle
from edgefarm.compressors.models.onnx_file import check_onnx_file

OPSET = 17
PROGRAM = "model.pt2"   # the user's module as torch.export saved it (ModelBundle.exported_program)
log = logging.getLogger(__name__)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # becomes a directory name in the cache


def bundle_from_torch(
    module: Any,
    example_input: Any,
    name: str,
    cache_dir: Path,
    calib: Path | None = None,
    eval: Path | None = None,  # the name for it; shadowing the builtin stays local to this function
    metric: str = "top1",
) -> ModelBundle:
    """Export `module` (in eval mode) with `example_input` (a tensor or a tuple of them) to ONNX.

    The file lands under cache_dir/torch-models/NAME-<sha256 prefix>, so exporting the same
    weights twice reuses one file and changed weights never overwrite a file a variant came from.
    calib and eval are .npz files as for bundle_from_file; a BadModelError names the failing step.
    """
    if not _SAFE_NAME.match(name):
        raise BadModelError(f"model name {name!r} must be letters, digits, '.', '_' or '-'; it names a directory")
    with tempfile.TemporaryDirectory(prefix="torch-export-") as scratch:
        exported = Path(scratch) / "model.onnx"
        _export_user_module(module, example_input, exported)
        check_onnx_file(exported)
        program = _save_exported_program(module, example_input, Path(scratch) / PROGRAM)
        final = Path(cache_dir) / "torch-models" / f"{name}-{sha256_file(exported)[:16]}"
        if not (final / "model.onnx").is_file() or (program and not (final / PROGRAM).is_file()):
            shutil.rmtree(final, ignore_errors=True)   # an entry from before .pt2 files were kept
            with staged_directory(final) as staging:
                shutil.copyfile(exported, staging / "model.onnx")
                if program:
                    shutil.copyfile(program, staging / PROGRAM)
    kept = final / PROGRAM if (final / PROGRAM).is_file() else None
    return ModelBundle(name, final / "model.onnx", _optional(calib), _optional(eval), metric=metric,
                       exported_program=kept)


def _save_exported_program(module: Any, example_input: Any, path: Path) -> Path | None:
    """The module as torch.export saves it, for the recipes that export from PyTorch (et-fp32, et-int8);
    None (logged) when torch.export cannot take it: the ONNX-level recipes still apply."""
    import torch

    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.export's own API notices, not about the module
            torch.export.save(torch.export.export(module, inputs), str(path))
    except Exception as error:  # torch.export raises many types; the ONNX path already succeeded
        log.info("torch.export cannot take %s (%s); the et-* recipes will not apply to it",
                 type(module).__name__, str(error).strip().splitlines()[0] if str(error).strip() else error)
        return None
    finally:
        module.train(was_training)
    return path


def _optional(path: Path | None) -> Path | None:
    return None if path is None else Path(path)


def _export_user_module(module: Any, example_input: Any, path: Path) -> None:
    import torch

    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    names = ["input"] if len(inputs) == 1 else [f"input_{index}" for index in range(len(inputs))]
    was_training = module.training
    module.eval()  # dropout off, batch norm on its running statistics: the model as it is used
    try:
        with torch.no_grad():
            export_module(module, inputs, path, names, ["output"], batch_axes(names, ["output"]))
    except Exception as error:  # the exporters raise many types; the user needs the step and the reason
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadModelError(f"export to ONNX failed for {type(module).__name__}: {reason}; "
                            f"the module must be traceable with torch.onnx.export (opset {OPSET})") from None
    finally:
        module.train(was_training)


def batch_axes(input_names: Sequence[str], output_names: Sequence[str]) -> dict[str, dict[int, str]]:
    """dynamic_axes marking the first dimension of every input and output as the batch."""
    return {name: {0: "batch"} for name in (*input_names, *output_names)}


def export_module(
    net: Any,
    inputs: tuple[Any, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> None:
    """torch.onnx.export with the legacy TorchScript exporter.

    On purpose: the dynamo exporter needs onnxscript, which the controller does not ship.
    Its deprecation notice (torch >= 2.9) is not news to our users.
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export",
                                DeprecationWarning)
        # Tracing notes that shapes become constants; the dynamic axes above say which ones must not.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # Said of every advanced-indexing op (transformers' attention-mask code has them); the models we
        # export check their ONNX outputs against PyTorch, which is what would catch a wrong index.
        warnings.filterwarnings("ignore", "Exporting aten::index operator", UserWarning)
        torch.onnx.export(
            net, inputs, str(path), input_names=list(input_names), output_names=list(output_names),
            dynamic_axes={name: dict(axes) for name, axes in dynamic_axes.items()},
            opset_version=OPSET, dynamo=False,
        )
