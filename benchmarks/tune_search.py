"""T1: edgefarm tune on mobilenet-v2 (1x1x96x96, width 0.5, ~5 M MACs; trains in about a minute) with the
local agent, against an exhaustive sweep of the same candidate set in the same run.

Candidate set (chosen so T1 fits in about 10 minutes on a 2-core machine): fp32, fp16, int8-dynamic,
int8-static x {minmax, entropy, percentile} x {uint8, int8 activations} and mixed-int8, on ONNX Runtime
at 1 and 2 threads (the board's routes and thread counts): 10 variants, 20 candidates, plus
hw-mixed-int8. Both sides use the same full measurement; every value is a p50 (the median of each job's
raw samples). tflite-int8 is left out to keep T1 short (LiteRT's converter runs in its own venv).

T1-gap: p50 of tune's recommendation ÷ the best p50 within the same budget in the exhaustive sweep.
T1-jobs: board jobs tune used (brief and full) ÷ the exhaustive sweep's.
T1-hwmp: the hardware-aware mixed-precision variant's p50 ÷ the best of int8-static and mixed-int8
  (sensitivity-only), all measured fully in the exhaustive run at the same thread counts.
"""
from __future__ import annotations

import math
import platform
from pathlib import Path

import pandas as pd

from benchmarks.figures import Figure
from edgefarm.api import Farm, Measure

MODEL = "mobilenet-v2"
RECIPES = ("fp32", "fp16", "int8-dynamic", "int8-static", "mixed-int8")
MAX_DROP = 1.0
FULL = Measure(warmup_seconds=0.3, min_seconds=1.0)


def tune_figures(cache: Path) -> list[Figure]:
    farm = Farm.local(db=cache / "t1.sqlite", cache_dir=cache)
    tuned = farm.tune(MODEL, max_drop=MAX_DROP, recipes=RECIPES, measure=FULL, progress=False)
    sweep = _exhaustive(farm)
    full = sweep.frame[sweep.frame["stage"].isin(("full", "hwmp"))]
    best = full[full["drop_points"].fillna(0) <= MAX_DROP]["latency_p50_ms"].min()
    card = tuned.cards[0]
    where = f"{MODEL}, local agent, {platform.processor() or platform.machine()}"
    return [
        Figure("T1-gap", "tune's pick p50 ÷ exhaustive best within budget", card.p50_ms / best, "ratio",
               f"{card.recipe} t{card.options['threads']} {card.p50_ms:.4f} ms vs {best:.4f} ms; {where}", "<= 1.05"),
        Figure("T1-jobs", "board jobs: tune ÷ exhaustive sweep", tuned.jobs / sweep.jobs, "ratio",
               f"{tuned.jobs} vs {sweep.jobs} jobs (the sweep measures each candidate once); {where}", "<= 0.5"),
        _hwmp_figure(full, where),
    ]


def _exhaustive(farm: Farm):
    from edgefarm.api.tuning import Tuning
    from edgefarm.controller.tuning.tune_run import TuneConfig, run_tune

    config = TuneConfig(MODEL, max_drop=MAX_DROP, recipes=RECIPES, full=FULL, exhaustive=True)
    with farm._store() as store:
        from edgefarm.api.farm import _Console

        outcome = run_tune(config, store, _Console(False), farm.cache_dir, None)
        return Tuning.of(outcome, store.path, "--local", ())


def _hwmp_figure(full: pd.DataFrame, where: str) -> Figure:
    hw = full[full["stage"] == "hwmp"]
    rivals = full[full["recipe"].str.startswith(("int8-static", "mixed-int8"))]
    if hw.empty or rivals.empty:
        return Figure("T1-hwmp", "hw-mixed-int8 p50 ÷ best int8-static / mixed-int8", math.nan, "ratio",
                      "hw-mixed-int8 not built", "< 1")
    h, r = hw.iloc[0], rivals.loc[rivals["latency_p50_ms"].idxmin()]
    return Figure("T1-hwmp", "hw-mixed-int8 p50 ÷ best int8-static / mixed-int8", h.latency_p50_ms / r.latency_p50_ms,
                  "ratio", f"{h.latency_p50_ms:.4f} ms (drop {h.drop_points:.2f}) vs {r.candidate} "
                  f"{r.latency_p50_ms:.4f} ms (drop {r.drop_points:.2f}); {where}", "< 1")
