"""int4-weight: 4-bit block-wise weights for MatMul-heavy models (transformers), activations stay float.

ONNX Runtime's MatMulNBitsQuantizer (round-to-nearest, asymmetric, one scale and zero point per
block of `block_size` weights) turns each MatMul whose weight is a constant 2-D tensor into a
com.microsoft MatMulNBits node, and with embeddings=int4 also stores each embedding table
(Gather from a constant 2-D table) as 4-bit blocks along the embedding dimension. The result
is ONNX Runtime's own: it needs onnxruntime >= 1.18 on the board (MatMulNBits and opset 21),
and TensorRT or LiteRT cannot load it. On minilm the 47 MB word-embedding table is half the
file, so leaving it float (embeddings=float) only takes the file to 0.61 of fp32, int4 to 0.16.

Gather quantization writes opset-21 block-wise DequantizeLinear and bumps the model's opset
without converting the other nodes (onnxruntime 1.32): minilm's ReduceL2 then keeps an `axes`
attribute that opset 18 moved to an input, and the file does not load. The model is therefore
converted to opset 21 with onnx's version converter first.
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefarm.compressors.errors import BadModelError
from edgefarm.compressors.progress import report

if TYPE_CHECKING:
    from edgefarm.compressors.types import RecipeJob

NAME = "int4-weight"
BLOCK_SIZES = ("32", "16", "64", "128")  # default first: minilm's cosine 0.972 at 32, 0.954 at 128
EMBEDDINGS = ("int4", "float")
BLOCKWISE_OPSET = 21  # DequantizeLinear's block_size attribute, which Gather quantization writes
DETAILS = "details.json"


def run(job: RecipeJob) -> None:
    """Quantize every MatMul weight of the model to 4 bits; write what was quantized beside the artifact."""
    import onnx

    model = onnx.load(str(job.bundle.onnx_path))
    weighted = matmuls_with_constant_weights(model)
    if not weighted:
        found = sorted({node.op_type for node in model.graph.node})
        raise BadModelError(f"recipe {NAME}: {job.bundle.name} has no MatMul with a constant weight "
                            f"(its ops: {', '.join(found)}); {NAME} quantizes MatMul weights only: "
                            f"use int8-dynamic or int8-static")
    tables = embedding_tables(model) if job.params["embeddings"] == "int4" else []
    report(job.progress, "quantize", 0.0)
    if tables:
        model = _at_blockwise_opset(model)
    quantized = _quantized(model, int(job.params["block_size"]), bool(tables))
    quantized.save_model_to_file(str(job.out), use_external_data_format=False)
    report(job.progress, "quantize", 1.0)
    _write_details(job, weighted, tables, _count_ops(job.out, "MatMulNBits"))


def matmuls_with_constant_weights(model: Any) -> list[str]:
    """Names of the MatMul nodes whose second input is a 2-D initializer: what the quantizer can take."""
    shapes = {init.name: len(init.dims) for init in model.graph.initializer}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and shapes.get(node.input[1]) == 2]


def embedding_tables(model: Any) -> list[str]:
    """Names of the Gather nodes that look rows up in a constant 2-D table (token embeddings)."""
    shapes = {init.name: len(init.dims) for init in model.graph.initializer}
    return [node.name for node in model.graph.node if node.op_type == "Gather" and shapes.get(node.input[0]) == 2]


def _at_blockwise_opset(model: Any) -> Any:
    from onnx import version_converter

    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)
    return model if opset >= BLOCKWISE_OPSET else version_converter.convert_version(model, BLOCKWISE_OPSET)


def _quantized(model: Any, block_size: int, with_tables: bool) -> Any:
    with _quantizer_logging_contained():
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        except ImportError:  # onnxruntime < 1.18 named it for its only bit width
            from onnxruntime.quantization.matmul_4bits_quantizer import (
                MatMul4BitsQuantizer as MatMulNBitsQuantizer,
            )

        # Gather's axis 1: blocks run along the embedding dimension, one row (token) at a time.
        op_types, axes = (("MatMul", "Gather"), (("MatMul", 0), ("Gather", 1))) if with_tables else (("MatMul",), None)
        quantizer = MatMulNBitsQuantizer(model, block_size=block_size, is_symmetric=False,
                                         op_types_to_quantize=op_types, quant_axes=axes)
        quantizer.process()
    return quantizer.model


@contextlib.contextmanager
def _quantizer_logging_contained() -> Iterator[None]:
    """Keep ORT's quantizer from printing: compressors never print, and the controller owns logging.

    Its module calls logging.basicConfig(level=INFO) on import, which would send every library's
    INFO records to stderr for the rest of the process; basicConfig does nothing while the root
    logger has a handler, so a placeholder is put there for the import. It also logs a line per node.
    """
    root, placeholder = logging.getLogger(), logging.NullHandler()
    chatty = [logging.getLogger(f"onnxruntime.quantization.{name}") for name in ("matmul_nbits_quantizer",
                                                                                 "matmul_4bits_quantizer")]
    levels = [logger.level for logger in chatty]
    root.addHandler(placeholder)
    for logger in chatty:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(placeholder)
        for logger, level in zip(chatty, levels, strict=True):
            logger.setLevel(level)


def _count_ops(path: Path, op_type: str) -> int:
    import onnx

    return sum(node.op_type == op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def _write_details(job: RecipeJob, weighted: list[str], tables: list[str], quantized: int) -> None:
    details = {"recipe": NAME, "bits": 4, "block_size": int(job.params["block_size"]),
               "matmuls_with_weights": len(weighted), "matmuls_quantized": quantized,
               "embedding_tables_quantized": tables}
    (job.out.parent / DETAILS).write_text(json.dumps(details, indent=2, sort_keys=True) + "\n")
