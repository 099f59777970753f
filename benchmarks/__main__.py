"""python -m benchmarks: run every benchmark, print one line per figure, write results.json."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks.demo_walltime import demo_figures
from benchmarks.figures import Figure, write_results
from benchmarks.harness_overhead import overhead_figure
from benchmarks.models import mlp_1ms

RESULTS = Path(__file__).resolve().parent / "out" / "results.json"


def p1_figures(cache_dir: Path) -> list[Figure]:
    from compressors.models import get_model

    with tempfile.TemporaryDirectory() as tmp:
        mlp = mlp_1ms(Path(tmp) / "mlp-1ms.onnx")
        digits = get_model("digits-cnn", cache_dir).onnx_path
        return [overhead_figure("mlp-1ms", mlp, "<= 1.02"), overhead_figure("digits-cnn", digits, "<= 1.05")]


def main() -> int:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for bench in (demo_figures, p1_figures):
            for figure in bench(cache):
                print(figure.line(), flush=True)
                figures.append(figure)
    write_results(figures, RESULTS)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
