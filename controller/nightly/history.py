"""The stored history of nights, per benchmark series, and the change points in it.

A series is one (model, recipe, device, backend, input shapes): its nights' run medians in time order.
`edgefarm history` and the nightly's trend plot read the same frame; reports only read the store."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from edgefarm.controller.nightly.changepoints import (
    MIN_SEGMENT,
    ChangePoint,
    ChangePointPolicy,
    Night,
    change_points,
)
from edgefarm.controller.planning.input_plan import shapes_text
from edgefarm.controller.results.store import ResultStore, StoredResult

KIND = "nightly"
HISTORY_COLUMNS = ("run_id", "at", "night", "series", "model", "recipe", "device", "backend", "input_shapes",
                   "latency_p50_ms", "verdict")


class HistoryError(ValueError):
    """A history too short (or empty) to say anything; the message says how many nights it needs."""


@dataclass(frozen=True)
class HistoryFilter:
    model: str | None = None
    device: str | None = None
    since: float | None = None       # Unix seconds
    nights: int = 60                 # newest nights read


def history_frame(store: ResultStore, where: HistoryFilter | None = None) -> pd.DataFrame:
    """One row per (night, series): HISTORY_COLUMNS, nights oldest first."""
    where = where or HistoryFilter()
    rows = []
    for run_id, verdict in reversed(store.runs_of_kind(KIND, where.nights)):
        rows += [_row(run_id, verdict, r) for r in store.results(run_id) if _wanted(r, where)]
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    started = frame.groupby("run_id")["at"].transform("min")   # one label per night, whatever its jobs' times
    frame["night"] = [f"{datetime.fromtimestamp(at, UTC):%m-%d %H:%M} {run_id[-6:]}"
                      for at, run_id in zip(started, frame["run_id"], strict=True)]
    return frame


def series_nights(history: pd.DataFrame) -> dict[str, list[Night]]:
    """Each series' nights, oldest first."""
    return {series: [Night(row.run_id, row.at, row.latency_p50_ms) for row in rows.itertuples()]
            for series, rows in history.sort_values("at").groupby("series", sort=True)}


def history_change_points(history: pd.DataFrame, policy: ChangePointPolicy | None = None) -> list[ChangePoint]:
    """Every series' change points, series by series, oldest first."""
    return [point for series, nights in series_nights(history).items()
            for point in change_points(series, nights, policy)]


def newly_confirmed_slowdowns(points: Sequence[ChangePoint], tonight: str, history: pd.DataFrame,
                              policy: ChangePointPolicy | None = None) -> list[ChangePoint]:
    """Slowdowns confirmed by tonight exactly (tonight is their confirm_nights-th night): each fails
    one night, the night the history proves it, and not every night after."""
    policy = policy or ChangePointPolicy()
    last = {series: nights[-1].run_id for series, nights in series_nights(history).items()}
    return [p for p in points if p.step > 0 and p.confirmed and p.nights_after == policy.confirm_nights
            and last.get(p.series) == tonight]


def require_enough(history: pd.DataFrame, policy: ChangePointPolicy | None = None) -> None:
    """HistoryError unless some series has enough nights for a change point to be confirmed."""
    policy = policy or ChangePointPolicy()
    counts = history.groupby("series").size() if not history.empty else pd.Series(dtype=int)
    if counts.empty or counts.max() < policy.min_nights:
        most = int(counts.max()) if not counts.empty else 0
        raise HistoryError(f"the history has at most {most} night(s) per benchmark; change points need at "
                           f"least {policy.min_nights} ({MIN_SEGMENT} at the old level, {policy.confirm_nights} at "
                           "the new): run more nights, or widen --since / --model / --device")


def series_label(r: StoredResult) -> str:
    shapes = shapes_text(r.result.input_shapes) if r.result.input_source else ""
    return f"{r.job.model}/{r.job.variant} on {r.job.device} ({r.job.backend})" + (f" @ {shapes}" if shapes else "")


def _row(run_id: str, verdict: str | None, r: StoredResult) -> dict:
    return {"run_id": run_id, "at": r.measured_at, "night": "", "series": series_label(r),
            "model": r.job.model, "recipe": r.job.variant, "device": r.job.device, "backend": r.job.backend,
            "input_shapes": shapes_text(r.result.input_shapes) if r.result.input_source else "",
            "latency_p50_ms": r.result.latency.p50_ms, "verdict": verdict or ""}


def _wanted(r: StoredResult, where: HistoryFilter) -> bool:
    return ((where.model is None or r.job.model == where.model)
            and (where.device is None or r.job.device == where.device)
            and (where.since is None or r.measured_at >= where.since))
