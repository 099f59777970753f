"""`farm.history(...)`: the stored nights of each benchmark series, and the change points in them
(what `edgefarm history` prints). Reads the store; never measures."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from edgefarm.api.errors import translated
from edgefarm.controller.nightly.changepoints import ChangePoint, ChangePointPolicy
from edgefarm.controller.nightly.history import HistoryFilter, history_change_points, history_frame, require_enough
from edgefarm.controller.results.store import ResultStore

POINT_COLUMNS = ("series", "run_id", "at", "step", "before_ms", "after_ms", "p_value", "nights_after", "confirmed")


@dataclass(frozen=True)
class History:
    """Nights per benchmark series (`frame`: one row per night and series) and their change points.

    Example:
        >>> history = farm.history(model="detector.onnx", device="jetson-orin-01")
        >>> history.points[["series", "run_id", "step", "p_value", "confirmed"]]
    """

    frame: pd.DataFrame = field(repr=False, compare=False)
    change_points: tuple[ChangePoint, ...]

    @property
    def points(self) -> pd.DataFrame:
        """One row per change point: POINT_COLUMNS (step: +0.05 is 5 % slower)."""
        return pd.DataFrame([{name: getattr(p, name) for name in POINT_COLUMNS} for p in self.change_points],
                            columns=list(POINT_COLUMNS))

    def _repr_html_(self) -> str:
        series, nights = self.frame["series"].nunique(), self.frame["run_id"].nunique()
        caption = f"{series} series, {nights} night(s), {len(self.change_points)} change point(s)"
        return f"<p>{html.escape(caption)}</p>" + self.points.to_html(index=False)


def load_history(store: ResultStore, where: HistoryFilter, policy: ChangePointPolicy | None = None) -> History:
    """HistoryError (a BadInputError) when no series has enough nights, saying how many it needs."""
    with translated():
        frame = history_frame(store, where)
        require_enough(frame, policy)
        return History(frame, tuple(history_change_points(frame, policy)))


def write_history_html(store: ResultStore, history: History, path: Path) -> Path:
    """The trend with its change points marked, the change points listed, and the newest night's results."""
    from edgefarm.controller.nightly.run import change_point_table
    from edgefarm.controller.reports import write_html
    from edgefarm.controller.reports.trend import trend_plot
    from edgefarm.controller.results.frame import results_frame

    newest = history.frame["run_id"].iloc[-1]
    points = list(history.change_points)
    return write_html(results_frame(store, newest), path, f"edgefarm history (newest night {newest})",
                      extra_plots=[trend_plot(history.frame, points)],
                      preamble_html=change_point_table(points, []) or "<p>No change points in this history.</p>")
