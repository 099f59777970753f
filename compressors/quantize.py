"""INT8 quantization on top of onnxruntime.quantization, in explicit stages.

Static: prepare (shape inference + graph optimization) -> calibrate(reader)
(activation ranges saved as a JSON file) -> export(path) (QDQ rewrite using
those ranges). Every intermediate file goes into a work directory the caller
owns; ORT's defaults would write the augmented model into the current directory.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Our parameter value -> onnxruntime.quantization.CalibrationMethod member.
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# Recipe parameter values -> onnxruntime.quantization.QuantType members; the first is the default.
ACTIVATION_TYPES = {"uint8": "QUInt8", "int8": "QInt8"}
WEIGHT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}


@dataclass(frozen=True)
class Int8Settings:
    """How int8-static and mixed-int8 quantize: one object, so the two recipes cannot drift apart.

    uint8 activations: with int8 ones ORT cannot fuse a Conv whose quantized input also feeds a
    residual Add into a QLinearConv (4 of 28 convs on mobilenet-v2 stayed float); uint8 fuses them
    all. TensorRT takes only symmetric int8: pass activation_type=int8 for a TensorRT target.
    reduce_range: 7-bit weights. x86 CPUs without VNNI run ORT's int8 kernels through vpmaddubsw,
    whose 16-bit pair sums saturate with full-range weights (mobilenet-v2 lost 11 points); TensorRT
    and ARM do not need it.
    """

    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool = True
    per_channel: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Int8Settings:
        """From a recipe's resolved parameters (INT8_CHOICES, defaults filled in by Recipe.resolve)."""
        return cls(params["activation_type"], params["weight_type"], params["reduce_range"] == "yes")

    def quantize_static_kwargs(self) -> dict[str, Any]:
        from onnxruntime.quantization import QuantFormat, QuantType

        return {"quant_format": QuantFormat.QDQ, "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "activation_type": QuantType[ACTIVATION_TYPES[self.activation_type]],
                "weight_type": QuantType[WEIGHT_TYPES[self.weight_type]]}


# The parameters int8-static and mixed-int8 take for these settings (recipes.Recipe.choices).
INT8_CHOICES = {"activation_type": tuple(ACTIVATION_TYPES), "weight_type": tuple(WEIGHT_TYPES),
                "reduce_range": ("yes", "no")}


def prepare(model: Path, work_dir: Path) -> Path:
    """Shape inference and graph optimization, so every tensor has a known type and shape to quantize."""
    from onnxruntime.quantization import quant_pre_process

    prepared = work_dir / "prepared.onnx"
    # ONNX's own shape inference covers CNNs. ORT's symbolic one lives in onnxruntime.tools, whose
    # __init__ imports torch whenever it is installed (3+ s per process); revisit for transformers.
    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
    return prepared


def calibrate(prepared: Path, reader: Any, method: str, work_dir: Path) -> Path:
    """Run the calibration samples through the model; return the file holding each tensor's range."""
    from onnxruntime.quantization import create_calibrator, save_tensors_data

    calibrator = create_calibrator(
        prepared, augmented_model_path=str(work_dir / "augmented.onnx"),
        calibrate_method=_calibration_method(method), providers=["CPUExecutionProvider"],
    )
    with _histogram_calibrators_silenced():
        calibrator.collect_data(reader)
        ranges_by_tensor = calibrator.compute_data()
    ranges = work_dir / "ranges.json"
    save_tensors_data(ranges_by_tensor, ranges)
    return ranges


def export_static(prepared: Path, ranges: Path, method: str, out: Path, settings: Int8Settings = Int8Settings(),
                  nodes_to_exclude: Sequence[str] = ()) -> None:
    """Rewrite the model with QuantizeLinear/DequantizeLinear pairs (int8 weights per channel), leaving
    `nodes_to_exclude` in float."""
    from onnxruntime.quantization import quantize_static

    quantize_static(
        str(prepared), str(out), calibration_data_reader=None, calibrate_method=_calibration_method(method),
        calibration_cache_path=str(ranges), nodes_to_exclude=list(nodes_to_exclude),
        **settings.quantize_static_kwargs(),
    )


def export_dynamic(prepared: Path, out: Path) -> None:
    """Int8 weights; activation ranges are computed at run time, so no calibration data is needed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # uint8 weights: for years ORT's CPU ConvInteger had only uint8 x uint8 kernels (onnxruntime#15888),
    # so int8 weights make a CNN that boards with an older runtime (agents accept >= 1.14) cannot load.
    quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QUInt8)


@contextlib.contextmanager
def _histogram_calibrators_silenced() -> Iterator[None]:
    """ORT's entropy and percentile calibrators print their settings unconditionally; compressors never print.

    Shadowing `print` inside that one ORT module, rather than swapping sys.stdout,
    leaves alone what other threads write meanwhile, such as the controller's progress bars.
    """
    from onnxruntime.quantization import calibrate as ort_calibrate

    ort_calibrate.print = lambda *args, **kwargs: None  # a module global wins over the builtin
    try:
        yield
    finally:
        del ort_calibrate.print


def _calibration_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return CalibrationMethod[CALIBRATION_METHODS[method]]
