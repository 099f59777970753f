"""python -m benchmarks [--only ID_PREFIX ...]: run the benchmarks, print one line per figure,
merge them into benchmarks/out/results.json."""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.figures import Figure, write_results

RESULTS = Path(__file__).resolve().parent / "out" / "results.json"


def p1_onnxruntime(cache: Path) -> list[Figure]:
    from benchmarks.harness_overhead import overhead_figure
    from benchmarks.models import mlp_1ms
    from edgefarm.compressors.models import get_model

    mlp = mlp_1ms(cache / "mlp-1ms.onnx")
    digits = get_model("digits-cnn", cache).onnx_path
    return [overhead_figure("mlp-1ms", mlp, "<= 1.02"), overhead_figure("digits-cnn", digits, "<= 1.05")]


def p1_dynamic(cache: Path) -> list[Figure]:
    """Models with dynamic dims, measured at the shape a user gives (issue: real user models)."""
    from benchmarks.harness_overhead import overhead_figure
    from benchmarks.models import vad_frames
    from tests import user_models

    detector, ocr = user_models.detector(cache), user_models.ocr(cache)
    vad, encoder = user_models.stateful(cache), user_models.shared_symbol(cache)
    two_input = user_models.two_input(cache)
    return [
        overhead_figure("dynamic-detector", detector, "<= 1.05", {"images": user_models.detector_shape()}),
        overhead_figure("dynamic-ocr", ocr, "<= 1.05", {"x": (1, 1, 32, 512)}),
        overhead_figure("dynamic-encoder", encoder, "<= 1.05", {"input_ids": (1, 256), "attention_mask": (1, 256)}),
        overhead_figure("dynamic-vad", vad, "<= 1.05", inputs_npz=vad_frames(cache / "frames.npz")),
        overhead_figure("dynamic-two-input", two_input, "<= 1.05"),  # static, two inputs: the same loop
    ]


def p1_litert(cache: Path) -> list[Figure]:
    from benchmarks.litert_overhead import litert_overhead_figure
    from tests.tflite_models import build_models  # real .tflite files from TensorFlow's converter

    models = build_models()
    return [litert_overhead_figure("conv96", models / "conv96.tflite"),
            litert_overhead_figure("dynamic-hw", models / "dynamic_hw.tflite", (1, 320, 320, 3))]


def p1_runtimes(cache: Path) -> list[Figure]:
    """ExecuTorch and OpenVINO against bare loops of their own Python APIs, on mobilenet-v2."""
    from benchmarks.runtime_overhead import runtime_figures

    return runtime_figures(cache)


def repeatability(cache: Path) -> list[Figure]:
    from benchmarks.agent_repeatability import repeatability_figure, rerun_figures
    from benchmarks.models import mlp_1ms

    mlp = mlp_1ms(cache / "mlp-1ms.onnx")
    return [repeatability_figure("mlp-1ms", mlp), *rerun_figures(mlp)]


def demo_wall_time(cache: Path) -> list[Figure]:
    from benchmarks.demo_walltime import demo_figures

    return demo_figures(cache / "demo-cache")


def compression(cache: Path) -> list[Figure]:
    from benchmarks.compression_speedup import compression_figures, full_model_figures, recipe_figures

    return [*compression_figures(cache), *recipe_figures(cache), *full_model_figures(cache)]


def upload(cache: Path) -> list[Figure]:
    from benchmarks.upload_throughput import upload_figures

    return upload_figures(cache)


def scale(cache: Path) -> list[Figure]:
    from benchmarks.scale import scale_figures

    return scale_figures(cache)


def regression_verdicts(cache: Path) -> list[Figure]:
    from benchmarks.regression_verdicts import regression_figures

    return regression_figures(cache)


def change_points(cache: Path) -> list[Figure]:
    from benchmarks.changepoints import changepoint_figures

    return changepoint_figures()


def bisection(cache: Path) -> list[Figure]:
    from benchmarks.bisect_jobs import bisect_figures

    return bisect_figures(cache)


def layer_profiles(cache: Path) -> list[Figure]:
    from benchmarks.layer_profiles import layer_figures

    return layer_figures(cache)


def tune_search(cache: Path) -> list[Figure]:
    from benchmarks.tune_search import tune_figures

    return tune_figures(cache)


BENCHMARKS: dict[str, Callable[[Path], list[Figure]]] = {
    "P5": demo_wall_time,
    "P1": p1_onnxruntime,
    "P1-dynamic": p1_dynamic,
    "P1-tflite": p1_litert,
    "P1-runtimes": p1_runtimes,
    "R-cv+P3": repeatability,
    "P4": compression,
    "P2": upload,
    "P6": scale,
    "P7": regression_verdicts,
    "C1": change_points,
    "B1": bisection,
    "L1": layer_profiles,
    "T1": tune_search,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help=f"run only these: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, bench in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            for figure in bench(Path(tmp)):
                print(figure.line(), flush=True)
                figures.append(figure)
    write_results(figures, RESULTS)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
