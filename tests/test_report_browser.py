"""The HTML report rendered by real headless Chromium, offline: figures present, page not blank."""
from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from edgefarm.controller.reports import NOT_AVAILABLE, write_html

pytestmark = pytest.mark.browser

CHROMIUM_TIMEOUT_S = 60
# Everything that could reach out or write outside the throwaway profile is off: the report must
# render from the file alone.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
WINDOW = (1280, 2400)


def results() -> pd.DataFrame:
    """Three boards, two models, four recipes; one result throttled, one without accuracy."""
    rows = []
    for device, base_ms in (("orin-nano", 1.0), ("rpi5", 14.0), ("x86-ci", 3.0)):
        for model, model_ms, model_accuracy in (("resnet18", 4.0, 0.70), ("mobilenet_v3", 1.5, 0.65)):
            for rank, variant in enumerate(("fp32", "fp16", "int8-dynamic", "int8-static")):
                p50 = base_ms * model_ms * (1 - 0.15 * rank)
                accuracy = None if (model, rank) == ("mobilenet_v3", 3) else model_accuracy - 0.004 * rank
                rows.append({
                    "run_id": "nightly-1", "model": model, "variant": variant, "device": device,
                    "backend": "onnxruntime", "latency_p50_ms": p50, "latency_p90_ms": p50 * 1.1,
                    "latency_p99_ms": p50 * 1.4, "fps": 1000 / p50, "size_bytes": 46_827_520 // (rank + 1),
                    "accuracy": accuracy,
                    "load_ms": 100.0, "first_inference_ms": p50 * 3,
                    "avg_power_w": NOT_AVAILABLE if device == "rpi5" else 7.5,
                    "throttled": (device, variant, model) == ("rpi5", "fp32", "resnet18"),
                })
    return pd.DataFrame(rows)


class FigureOutline(HTMLParser):
    """Per <figure id>: how many <svg> and <figcaption> elements it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, int]] = {}
        self._current: dict[str, int] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "figure":
            self._current = {"svg": 0, "figcaption": 0}
            self.figures[dict(attrs).get("id") or ""] = self._current
        elif tag in ("svg", "figcaption") and self._current is not None:
            self._current[tag] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._current = None


def run_chromium(chromium: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html(results(), tmp_path_factory.mktemp("report") / "report.html", "edgefarm nightly")


def test_rendered_dom_holds_every_figure_with_its_svg_and_caption(
        chromium: str, report: Path, tmp_path: Path) -> None:
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", report.as_uri()).stdout
    outline = FigureOutline()
    outline.feed(dom)

    assert {"fig-latency", "fig-accuracy-latency", "fig-size"} <= set(outline.figures)
    assert all(parts == {"svg": 1, "figcaption": 1} for parts in outline.figures.values())
    assert "throttled" in dom and NOT_AVAILABLE in dom


def test_screenshot_shows_plots_not_a_blank_page(chromium: str, report: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={screenshot}",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", report.as_uri())

    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    not_white = (pixels < 235).any(axis=2).mean()
    # Text and table lines are grey; the plots' coloured bars and points are what prove SVG rendered.
    coloured = (pixels.max(axis=2) - pixels.min(axis=2) > 80).mean()
    assert not_white > 0.08, f"only {not_white:.1%} of the page is not white"
    assert coloured > 0.01, f"only {coloured:.2%} of the page is coloured: the plots did not render"
