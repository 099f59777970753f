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


# ---- per-layer profiles and the diff page ----------------------------------------------------------

class LayerOutline(HTMLParser):
    """Inside <section id="layers">: each <article id>'s table ids and figure ids."""

    def __init__(self) -> None:
        super().__init__()
        self.articles: dict[str, dict[str, list[str]]] = {}
        self.hint = False
        self._in_section = False
        self._article: dict[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id") or ""
        if tag == "section" and ident == "layers":
            self._in_section = True
        elif self._in_section and tag == "article":
            self._article = self.articles.setdefault(ident, {"table": [], "figure": []})
        elif self._article is not None and tag in ("table", "figure"):
            self._article[tag].append(ident)
        self.hint = self.hint or (self._in_section and ident == "layers-hint")

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self._article = None
        elif tag == "section":
            self._in_section = False


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A stored run with layer profiles: its report as `edgefarm report` writes it, its per-layer section
    on its own page (same shell and styles), and the diff page of its fp32 and int8-static results."""
    import edgefarm
    from edgefarm.controller.reports.html_report import html_page, write_page
    from edgefarm.controller.reports.layer_report import layer_section
    from edgefarm.controller.results.layer_frame import layer_tables
    from edgefarm.controller.results.store import ResultStore
    from tests.layer_fixtures import store_profiled_run

    folder = tmp_path_factory.mktemp("profiled")
    store = ResultStore(folder / "r.sqlite")
    run_id = store_profiled_run(store)
    section = html_page("per-layer", "", layer_section(layer_tables(store.results(run_id))))
    store.close()
    farm = edgefarm.Farm(db=folder / "r.sqlite")
    return {"report": farm.report(run_id, html=folder / "report.html").html,
            "section": write_page(section, folder / "section.html"),
            "diff": farm.diff(f"{run_id}:fp32", f"{run_id}:int8-static", html=folder / "diff.html").html}


def test_rendered_profiled_report_holds_each_variants_layer_tables_and_plot(
        chromium: str, profiled: dict[str, Path], tmp_path: Path) -> None:
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", profiled["report"].as_uri()).stdout
    layers, figures = LayerOutline(), FigureOutline()
    layers.feed(dom)
    figures.feed(dom)

    assert list(layers.articles) == ["layers-1", "layers-2", "layers-3"]   # fp32, int8-static, the .tflite
    for n in (1, 2):
        assert layers.articles[f"layers-{n}"] == {
            "table": [f"layers-{n}-{view}" for view in ("coverage", "family", "placement", "top")],
            "figure": [f"fig-layers-{n}"]}
    assert layers.articles["layers-3"] == {"table": ["layers-3-placement"], "figure": []}   # placement only
    assert layers.hint and "Without a per-layer profile" in dom
    assert {"fig-latency", "fig-layers-1", "fig-layers-2"} <= set(figures.figures)
    assert all(parts == {"svg": 1, "figcaption": 1} for parts in figures.figures.values())


def test_rendered_diff_page_holds_its_plot_totals_and_groups(
        chromium: str, profiled: dict[str, Path], tmp_path: Path) -> None:
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", profiled["diff"].as_uri()).stdout
    figures = FigureOutline()
    figures.feed(dom)

    assert figures.figures == {"fig-diff": {"svg": 1, "figcaption": 1}}
    assert 'id="totals"' in dom and 'id="groups"' in dom and 'class="moved"' in dom
    assert "compute layers of A aligned" in dom


@pytest.mark.parametrize("page", ["section", "diff"])
def test_screenshot_shows_the_layer_plots_not_a_blank_page(
        chromium: str, profiled: dict[str, Path], tmp_path: Path, page: str) -> None:
    screenshot = tmp_path / f"{page}.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={screenshot}",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", profiled[page].as_uri())

    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    not_white = (pixels < 235).any(axis=2).mean()
    coloured = (pixels.max(axis=2) - pixels.min(axis=2) > 80).mean()
    assert not_white > 0.08, f"only {not_white:.1%} of the {page} page is not white"
    assert coloured > 0.01, f"only {coloured:.2%} of the {page} page is coloured: its plots did not render"
