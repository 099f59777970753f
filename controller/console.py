"""What a person sees while a run goes: rich progress bars and the summary table."""
from __future__ import annotations

import importlib.util
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


class RunConsole:
    """Progress bars on stderr, so `--json` output on stdout stays machine-readable. Off a terminal
    (a CI log, `| tee`) bars would show nothing until the end, so progress prints as plain lines,
    each bar at most every PLAIN_EVERY_S seconds and when it completes. In a Jupyter notebook the
    bars are rich's live widgets where ipywidgets is installed (rich needs it there), else plain lines."""

    PLAIN_EVERY_S = 10.0

    def __init__(self, quiet: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.err = Console(stderr=True, quiet=quiet)
        self._plain = not (self.err.is_terminal or (self.err.is_jupyter and _has_ipywidgets()))
        self._clock = clock
        # Piped output (CI logs, `| tee`) would otherwise wrap the table at 80 columns.
        self.out = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 150)
        self._progress = Progress(TextColumn("{task.description:<34}"), BarColumn(), TaskProgressColumn(),
                                  TimeElapsedColumn(), console=self.err, transient=False)

    @contextmanager
    def live(self) -> Iterator[RunConsole]:
        if self._plain:
            yield self
            return
        with self._progress:
            yield self

    def bar(self, description: str, total: float = 1.0) -> Callable[[float], None]:
        """A bar; the returned function sets its completed amount (0..total)."""
        if self._plain:
            line = self._plain_line(description)
            return lambda done: line("", min(done, total) / total if total else 1.0)
        task = self._progress.add_task(description, total=total)
        return lambda done: self._progress.update(task, completed=min(done, total))

    def phase_bar(self, description: str) -> Callable[[str, float], None]:
        """A bar driven by (phase, fraction) callbacks, the compressors' and agent's progress shape."""
        if self._plain:
            return self._plain_line(description)
        task = self._progress.add_task(description, total=1.0)

        def update(phase: str, fraction: float) -> None:
            self._progress.update(task, completed=fraction, description=f"{description} [{phase}]")
        return update

    def _plain_line(self, description: str) -> Callable[[str, float], None]:
        last = {"at": -math.inf, "done": False}

        def update(phase: str, fraction: float) -> None:
            now, finished = self._clock(), fraction >= 1.0
            if last["done"] or (not finished and now - last["at"] < self.PLAIN_EVERY_S):
                return
            last.update(at=now, done=finished)
            label = f"{description} [{phase}]" if phase else description
            self.err.print(f"{label}: {fraction:.0%}", highlight=False, markup=False)
        return update

    def note(self, text: str) -> None:
        self.err.print(text)


def _has_ipywidgets() -> bool:
    return importlib.util.find_spec("ipywidgets") is not None


def summary_table(rows: list[dict]) -> Table:
    table = Table(title="edgefarm results")
    columns = [("variant", "variant"), ("device", "device"), ("backend: route", "route"), ("p50 ms", "latency_p50_ms"),
               ("p99 ms", "latency_p99_ms"), ("FPS", "fps"), ("size KiB", "size_kib"),
               ("accuracy %", "accuracy_pct"), ("device acc %", "device_accuracy_pct"),
               ("fidelity (host/board)", "fidelity"), ("mJ/inf", "energy"), ("measured at", "inputs")]
    for title, _ in columns:
        table.add_column(title, justify="left" if title in ("variant", "device", "backend: route") else "right")
    for row in rows:
        table.add_row(*(_cell(route_cell(row) if key == "route" else row.get(key)) for _, key in columns))
    return table


def route_cell(row: dict) -> str:
    """Which runtime ran the variant and how: "openvino: CPU (f32, LATENCY)", "executorch: xnnpack (1 partition)"."""
    backend, provider = row.get("backend") or "", row.get("provider") or ""
    return f"{backend}: {provider}" if provider and provider != backend else backend or "–"


def fidelity_cell(row: dict) -> str:
    """Cosine to fp32 on the host / on the board, six decimals (fidelity lives after 0.99), and any flag."""
    host, board = row.get("fidelity_cosine"), row.get("device_fidelity_cosine")
    text = "/".join("–" if not isinstance(v, float) or math.isnan(v) else f"{v:.6f}" for v in (host, board))
    return f"{text} {row['fidelity_flag']}" if row.get("fidelity_flag") else text


def inputs_cell(row: dict) -> str:
    """The shapes the latency belongs to, and whether the data was synthetic."""
    shapes = row.get("input_shapes")
    return f"{shapes} (synthetic)" if row.get("synthetic_inputs") is True else str(shapes or "–")


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
