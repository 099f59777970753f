"""The measured Pareto front of a tune (latency vs quality vs size), the recommendation within the
budget, and the deployment card: pure functions over the tune's rows (one per measured candidate)."""
from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from edgefarm.controller.tuning.board import Built

OBJECTIVES = {"latency": "latency_p50_ms", "energy": "energy_mj_per_inference", "size": "size_bytes"}
FRONT_AXES = (("latency_p50_ms", 1), ("quality", -1), ("size_bytes", 1))   # 1: lower is better
FULL_STAGES = ("full", "hwmp")


def objective_value(row: Mapping, objective: str) -> float:
    value = row.get(OBJECTIVES[objective])
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else math.inf


def quality_columns(built: Built, baseline: float | None) -> dict:
    from edgefarm.controller.tuning.host import quality

    value, what = quality(built)
    drop = round((baseline - value) * 100, 4) if value is not None and baseline is not None else math.nan
    return {"quality": math.nan if value is None else value, "quality_metric": what, "drop_points": drop}


def confirmed(frame: pd.DataFrame) -> pd.DataFrame:
    """The fully measured rows: brief ones rank, they never make the front."""
    return frame[frame["stage"].isin(FULL_STAGES)]


def pareto(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows no other row beats on latency, quality and size at once; sorted by latency."""
    if frame.empty:
        return frame
    values = np.column_stack([frame[c].astype(float).fillna(np.inf if s > 0 else -np.inf) * s
                              for c, s in FRONT_AXES])
    no_worse = (values[None, :, :] <= values[:, None, :]).all(axis=2)
    better = (values[None, :, :] < values[:, None, :]).any(axis=2)
    dominated = (no_worse & better).any(axis=1)
    return frame[~dominated].sort_values("latency_p50_ms", kind="stable")


def within_budget(frame: pd.DataFrame, max_drop: float) -> pd.DataFrame:
    return frame[frame["drop_points"].fillna(0.0) <= max_drop + 1e-9]


def recommend(frame: pd.DataFrame, objective: str, max_drop: float) -> pd.Series | None:
    """The best objective among fully measured candidates within the budget; ties go to quality."""
    rows = within_budget(confirmed(frame), max_drop)
    if rows.empty:
        return None
    order = rows.assign(_key=[objective_value(r, objective) for r in rows.to_dict("records")])
    return order.sort_values(["_key", "quality"], ascending=[True, False], kind="stable").iloc[0].drop("_key")


def closest(frame: pd.DataFrame, count: int = 3) -> pd.DataFrame:
    """When nothing meets the budget: the candidates with the smallest drop."""
    return frame.sort_values("drop_points", kind="stable").head(count)


@dataclass(frozen=True)
class DeploymentCard:
    """What to ship and how it measured, with the command that reproduces the measurement."""

    model: str
    device: str
    recipe: str
    params: Mapping[str, str]
    backend: str
    options: Mapping[str, object]
    input_shapes: str
    p50_ms: float
    p99_ms: float
    quality_metric: str
    quality_host: float | None
    quality_board: float | None
    drop_points: float | None
    size_bytes: int
    energy_mj: float | str
    fingerprint: Mapping[str, object]
    job_id: str
    reproduce: str

    def lines(self) -> list[tuple[str, str]]:
        """(field, value) as the console and the page show them."""
        params = ", ".join(f"{k}={v}" for k, v in self.params.items() if k != "keep_float") or "defaults"
        return [("model", self.model), ("device", self.device), ("recipe", f"{self.recipe} ({params})"),
                ("backend", f"{self.backend} {_options(self.options)}"), ("input shapes", self.input_shapes),
                ("latency", f"p50 {self.p50_ms:.3f} ms, p99 {self.p99_ms:.3f} ms"),
                ("quality", _quality(self)), ("size", f"{self.size_bytes / 1e6:.2f} MB"),
                ("energy", self.energy_mj if isinstance(self.energy_mj, str) else f"{self.energy_mj:.3f} mJ/inference"),
                ("fingerprint", ", ".join(f"{k}={v}" for k, v in self.fingerprint.items())),
                ("result", self.job_id), ("reproduce", self.reproduce)]


def card(row: pd.Series, fingerprint: Mapping[str, object], where: str, data_flags: Sequence[str]) -> DeploymentCard:
    board_quality = row.get("device_accuracy")
    return DeploymentCard(
        str(row["model"]), str(row["device"]), str(row["recipe"]).split("(")[0], dict(row["params"]),
        str(row["backend"]), {"threads": int(row["threads"]), "provider": row.get("provider", "")},
        str(row.get("input_shapes", "")), float(row["latency_p50_ms"]), float(row["latency_p99_ms"]),
        str(row["quality_metric"]), _num(row.get("quality")), _num(board_quality), _num(row.get("drop_points")),
        int(row["size_bytes"]), row.get("energy_mj_per_inference", "not available"), dict(fingerprint),
        str(row["job_id"]), reproduce_command(row, where, data_flags))


def reproduce_command(row: pd.Series, where: str, data_flags: Sequence[str]) -> str:
    """`edgefarm run` of exactly this variant, backend and thread count; hw-mixed-int8 is remade by tune."""
    recipe = str(row["recipe"])
    if recipe.startswith("hw-mixed-int8"):
        return f"edgefarm tune {shlex.quote(str(row['model']))} {where} {' '.join(data_flags)}".strip()
    run = f"edgefarm run {shlex.quote(str(row['model']))} {where} --recipe {shlex.quote(recipe)}"
    # edgefarm run takes threads from the devices file's backend options, not from a flag
    threads = f"  # with {row['backend']} threads: {int(row['threads'])} in devices.yaml"
    return (f"{run} {' '.join(data_flags)}".strip() + threads)


def _options(options: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items() if v not in ("", None))


def _quality(c: DeploymentCard) -> str:
    host = "n/a" if c.quality_host is None else f"{c.quality_host:.4f}"
    board = "n/a" if c.quality_board is None else f"{c.quality_board:.4f}"
    drop = "" if c.drop_points is None else f", drop {c.drop_points:.2f} points"
    return f"{c.quality_metric}: host {host}, board {board}{drop}"


def _num(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None
