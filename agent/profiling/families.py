"""Op families and glue: one vocabulary for every runtime's op names, so layers compare across runtimes.

QLinearConv (ONNX Runtime int8), CONV_2D (LiteRT) and Convolution (TensorRT) are all family Conv;
glue ops move or convert data and compute nothing the model asked for (Q/DQ, transpose, reorder,
cast, memcpy).
"""
from __future__ import annotations

import re

GLUE_FAMILIES = ("Quantize", "Dequantize", "Transpose", "Reorder", "Cast", "Memcpy")
# Checked in order: the first pattern found in the op type (lower-cased, without _ or spaces) wins.
_FAMILY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("fullyconnected", "MatMul"),  # before quantize: OpenVINO's FullyConnectedQuantizedLegacy computes
    ("dequantize", "Dequantize"), ("quantize", "Quantize"), ("reformat", "Reorder"), ("reorder", "Reorder"),
    ("memcpy", "Memcpy"), ("copy", "Memcpy"), ("convtranspose", "Conv"), ("deconv", "Conv"),
    ("transpose", "Transpose"), ("shuffle", "Transpose"),
    ("convert", "Cast"),  # before conv: OpenVINO's and XNNPACK's Convert change the element type
    ("cast", "Cast"), ("depthwiseconv", "Conv"), ("conv", "Conv"), ("gemm", "MatMul"), ("matmul", "MatMul"),
    ("fullyconnected", "MatMul"), ("batchmatmul", "MatMul"), ("pool", "Pool"), ("mean", "Pool"),
    ("reduce", "Reduce"), ("softmax", "Softmax"), ("layernorm", "Norm"), ("batchnorm", "Norm"),
    ("normalization", "Norm"), ("add", "Elementwise"), ("mul", "Elementwise"), ("sub", "Elementwise"),
    ("div", "Elementwise"), ("elementwise", "Elementwise"), ("relu", "Activation"), ("clip", "Activation"),
    ("sigmoid", "Activation"), ("gelu", "Activation"), ("activation", "Activation"), ("hardswish", "Activation"),
    ("tanh", "Activation"), ("concat", "Concat"), ("reshape", "Reshape"), ("flatten", "Reshape"),
    ("squeeze", "Reshape"), ("resize", "Resize"), ("gather", "Gather"), ("slice", "Slice"), ("pad", "Pad"),
    ("delegate", "Delegate"), ("myelin", "Fused"), ("fused", "Fused"), ("kernel", "Fused"),
)
_cache: dict[str, str] = {}


def op_family(op_type: str) -> str:
    """The family of a runtime op type; an op type no pattern knows is its own family."""
    if op_type not in _cache:
        key = re.sub(r"[\s_]", "", op_type).lower()
        _cache[op_type] = next((family for pattern, family in _FAMILY_PATTERNS if pattern in key), op_type)
    return _cache[op_type]


def is_glue(family: str) -> bool:
    return family in GLUE_FAMILIES
