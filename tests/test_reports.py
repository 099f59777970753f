"""CSV and HTML reports over a results frame, and the Pareto front they plot."""
from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from edgefarm.controller.reports import (
    NOT_AVAILABLE,
    OPTIONAL_COLUMNS,
    REPORT_COLUMNS,
    pareto_front,
    write_csv,
    write_html,
)
from edgefarm.controller.reports.cells import binary_size, significant

GENERATED_AT = datetime(2025, 11, 24, 6, 30, tzinfo=UTC)
# Attributes through which a page could make the browser fetch something.
FETCHING_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data"}


def result_row(**fields: object) -> dict[str, object]:
    """One plausible measured result; `fields` override the defaults."""
    row: dict[str, object] = {
        "run_id": "run-1", "model": "resnet18", "variant": "fp32", "device": "orin-nano",
        "backend": "onnxruntime", "latency_p50_ms": 4.0, "latency_p90_ms": 4.4, "latency_p99_ms": 5.2,
        "fps": 250.0, "size_bytes": 46_827_520, "accuracy": 0.6976, "load_ms": 120.0,
        "first_inference_ms": 16.0,
    }
    row.update(fields)
    return row


def nightly_results() -> pd.DataFrame:
    """Two devices, four recipes; one result throttled, one without accuracy, one board without power."""
    recipes = {"fp32": (1.0, 1.0, 0.6976), "fp16": (0.6, 0.5, 0.6972),
               "int8-dynamic": (0.5, 0.26, 0.6931), "int8-static": (0.4, 0.26, math.nan)}
    devices = {"orin-nano": (4.0, 6.2), "rpi5": (48.0, NOT_AVAILABLE)}
    rows = []
    for device, (base_ms, power_w) in devices.items():
        for variant, (speed, size, accuracy) in recipes.items():
            p50 = base_ms * speed
            rows.append(result_row(
                variant=variant, device=device, latency_p50_ms=p50, latency_p90_ms=p50 * 1.1,
                latency_p99_ms=p50 * 1.3, fps=1000 / p50, size_bytes=int(46_827_520 * size),
                accuracy=accuracy, avg_power_w=power_w, power_sensor="ina3221" if power_w != NOT_AVAILABLE
                else "none", throttled=device == "rpi5" and variant == "fp32",
                measured_at="2025-11-24T03:12:00Z"))
    return pd.DataFrame(rows)


class ReportPage(HTMLParser):
    """What a test needs from a report page: every element's attributes, the figures, the table."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.figures: dict[str, dict[str, object]] = {}
        self.table: list[list[str]] = []
        self.row_classes: list[str] = []
        self._open: list[str] = []
        self._figure: dict[str, object] | None = None
        self._cell: list[str] | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        if tag == "figure":
            self._figure = {"svgs": 0, "caption": ""}
            self.figures[attributes.get("id", "")] = self._figure
        elif tag == "svg" and self._figure is not None:
            self._figure["svgs"] += 1
        elif tag == "tr":
            self.table.append([])
            self.row_classes.append(attributes.get("class", ""))
        elif tag in ("td", "th"):
            self._cell = []
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag in ("td", "th") and self._cell is not None:
            self.table[-1].append("".join(self._cell).strip())
            self._cell = None
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._figure is not None and "figcaption" in self._open:
            self._figure["caption"] += data

    def column(self, header: str) -> list[str]:
        index = self.table[0].index(header)
        return [row[index] for row in self.table[1:]]


NightlyPage = tuple[str, ReportPage]  # the page's text and its parse


@pytest.fixture(scope="module")
def nightly_page(tmp_path_factory: pytest.TempPathFactory) -> NightlyPage:
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_html(nightly_results(), path, "edgefarm nightly", generated_at=GENERATED_AT)
    page = path.read_text(encoding="utf-8")
    return page, ReportPage(page)


def render(df: pd.DataFrame, tmp_path: Path, title: str = "report") -> ReportPage:
    return ReportPage(write_html(df, tmp_path / "report.html", title).read_text(encoding="utf-8"))


# ---- CSV -------------------------------------------------------------------------------------

def test_csv_puts_required_columns_first_then_optional_ones_and_drops_others(tmp_path: Path) -> None:
    df = nightly_results().assign(internal_row_id=range(8))
    df = df[list(reversed(df.columns))]  # the frame's own column order must not matter

    written = pd.read_csv(write_csv(df, tmp_path / "out" / "report.csv"))

    optional_present = [name for name in OPTIONAL_COLUMNS if name in df.columns]
    assert list(written.columns) == [*REPORT_COLUMNS, *optional_present]
    assert optional_present == ["avg_power_w", "power_sensor", "throttled", "measured_at"]


def test_csv_round_trips_values_including_nan_accuracy_and_not_available_power(tmp_path: Path) -> None:
    df = nightly_results()

    written = pd.read_csv(write_csv(df, tmp_path / "report.csv"))

    numeric = [name for name in REPORT_COLUMNS if pd.api.types.is_numeric_dtype(df[name])]
    pd.testing.assert_frame_equal(written[numeric], df[numeric], check_dtype=False)
    assert written["accuracy"].isna().tolist() == df["accuracy"].isna().tolist()
    assert written["avg_power_w"].astype(str).tolist() == df["avg_power_w"].astype(str).tolist()
    assert written["throttled"].tolist() == df["throttled"].tolist()


def test_csv_names_every_missing_required_column(tmp_path: Path) -> None:
    df = nightly_results().drop(columns=["accuracy", "load_ms"])
    with pytest.raises(ValueError, match="accuracy, load_ms"):
        write_csv(df, tmp_path / "report.csv")
    assert not (tmp_path / "report.csv").exists()


def test_csv_rejects_a_frame_without_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rows"):
        write_csv(pd.DataFrame(columns=list(REPORT_COLUMNS)), tmp_path / "report.csv")


# ---- Pareto front ----------------------------------------------------------------------------

def points(*xy: tuple[float, float]) -> pd.DataFrame:
    return pd.DataFrame(xy, columns=["latency_p50_ms", "accuracy"], index=[f"r{i}" for i in range(len(xy))])


def test_pareto_front_keeps_only_rows_no_other_row_beats_on_both_metrics() -> None:
    df = points((10, 0.70), (5, 0.60), (7, 0.65), (8, 0.62), (12, 0.69), (3, 0.40))
    assert pareto_front(df).index.tolist() == ["r5", "r1", "r2", "r0"]


def test_pareto_front_keeps_exact_ties_but_drops_rows_beaten_on_one_metric_and_tied_on_the_other() -> None:
    df = points((5, 0.6), (5, 0.6), (5, 0.5), (6, 0.6), (4, 0.4))
    assert pareto_front(df).index.tolist() == ["r4", "r0", "r1"]


def test_pareto_front_leaves_out_rows_with_nan_and_does_not_let_them_dominate() -> None:
    df = points((1, math.nan), (math.nan, 0.99), (5, 0.6), (9, 0.7))
    assert pareto_front(df).index.tolist() == ["r2", "r3"]


def test_pareto_front_of_no_rankable_rows_is_empty_with_the_same_columns() -> None:
    front = pareto_front(points((1, math.nan)))
    assert front.empty
    assert list(front.columns) == ["latency_p50_ms", "accuracy"]


def test_pareto_front_takes_other_columns_and_keeps_every_column_of_the_rows() -> None:
    df = pd.DataFrame({"energy": [3.0, 1.0, 2.0], "score": [0.9, 0.5, 0.4], "name": ["a", "b", "c"]})
    front = pareto_front(df, x="energy", y="score")
    assert front["name"].tolist() == ["b", "a"]
    with pytest.raises(ValueError, match="fps"):
        pareto_front(df, x="fps")


# ---- cell formats ----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "shown"), [
    (1234.5, "1,234"), (48.04, "48.0"), (4.4, "4.40"), (0.7354, "0.735"), (0.01234, "0.0123"), (0, "0"),
])
def test_significant_shows_three_significant_digits_without_exponents(value: float, shown: str) -> None:
    assert significant(value) == shown


@pytest.mark.parametrize(("size", "shown"), [
    (512, "512 B"), (12_595, "12.3 KiB"), (46_827_520, "44.7 MiB"), (3 * 2**30, "3.00 GiB"),
])
def test_binary_size_picks_the_unit_that_keeps_the_number_readable(size: int, shown: str) -> None:
    assert binary_size(size) == shown


# ---- HTML ------------------------------------------------------------------------------------

def test_html_has_three_plots_each_a_figure_with_id_caption_and_inline_svg(nightly_page: NightlyPage) -> None:
    _, page = nightly_page
    assert len(page.figures) >= 3
    for figure_id, figure in page.figures.items():
        assert figure_id.startswith("fig-")
        assert figure["svgs"] == 1
        assert figure["caption"].strip()
    assert {"fig-latency", "fig-accuracy-latency", "fig-size"} <= set(page.figures)


def test_html_fetches_nothing_from_the_network(nightly_page: NightlyPage) -> None:
    text, page = nightly_page
    fetching = [(tag, name, value) for tag, attributes in page.elements for name, value in attributes.items()
                if name in FETCHING_ATTRIBUTES and ("://" in value or value.startswith("//"))]
    assert fetching == []
    assert not [tag for tag, _ in page.elements if tag in ("script", "link", "img", "iframe", "object")]
    assert "@import" not in text and "url(http" not in text and "url(//" not in text
    # The check above is precise rather than a blanket "no http": SVG namespaces are identifiers, not fetches.
    assert any(attributes.get("xmlns") == "http://www.w3.org/2000/svg" for tag, attributes in page.elements)


def test_html_element_ids_are_unique_across_the_inlined_svgs(nightly_page: NightlyPage) -> None:
    _, page = nightly_page
    ids = Counter(attributes["id"] for _, attributes in page.elements if "id" in attributes)
    assert [element_id for element_id, count in ids.items() if count > 1] == []


def test_html_heading_names_the_run_and_when_it_was_generated(nightly_page: NightlyPage) -> None:
    text, _ = nightly_page
    assert "<h1>edgefarm nightly</h1>" in text
    assert "<code>run-1</code>" in text
    assert "generated 2025-11-24 06:30 UTC" in text


def test_html_table_formats_latency_size_and_accuracy(nightly_page: NightlyPage) -> None:
    _, page = nightly_page
    assert page.column("variant")[:4] == ["fp32", "fp16", "int8-dynamic", "int8-static"]
    assert page.column("p50 ms")[:4] == ["4.00", "2.40", "2.00", "1.60"]
    assert page.column("size")[:2] == ["44.7 MiB", "22.3 MiB"]
    assert page.column("accuracy")[:4] == ["69.8 %", "69.7 %", "69.3 %", "—"]


def test_html_flags_the_throttled_row(nightly_page: NightlyPage) -> None:
    text, page = nightly_page
    rows = zip(page.table, page.row_classes, strict=True)
    throttled_rows = [row for row, css in rows if css == "throttled"]
    assert len(throttled_rows) == 1
    assert "rpi5 throttled" in throttled_rows[0]
    assert "1 of 8 results was measured while the board was throttling" in text


def test_html_shows_missing_power_as_not_available_never_as_a_number(nightly_page: NightlyPage) -> None:
    _, page = nightly_page
    power = page.column("avg power W")
    assert power == ["6.20"] * 4 + [NOT_AVAILABLE] * 4


def test_html_caption_names_results_without_accuracy_left_off_the_plot(nightly_page: NightlyPage) -> None:
    _, page = nightly_page
    caption = page.figures["fig-accuracy-latency"]["caption"]
    assert "2 result(s) without accuracy data" in caption
    assert "resnet18 int8-static on orin-nano" in caption


def test_html_without_throttling_shows_no_flag(tmp_path: Path) -> None:
    df = pd.DataFrame([result_row(throttled=False), result_row(variant="fp16", throttled=0)])
    page = render(df, tmp_path)
    assert set(page.row_classes) == {""}
    assert "throttled" not in page.figures["fig-latency"]["caption"]


def test_html_of_a_single_result(tmp_path: Path) -> None:
    page = render(pd.DataFrame([result_row()]), tmp_path)
    assert len(page.table) == 2
    assert len(page.figures) == 3


def test_html_of_many_devices_and_models_from_several_runs(tmp_path: Path) -> None:
    rows = [result_row(run_id=f"run-{device % 2}", device=f"board-{device:02d}", model=model,
                       latency_p50_ms=1.0 + device, latency_p90_ms=1.5 + device, latency_p99_ms=2.0 + device)
            for device in range(12) for model in ("resnet18", "mobilenet_v3")]
    page = render(pd.DataFrame(rows), tmp_path)
    assert len(page.table) == 25
    assert page.table[0][0] == "run"  # more than one run: each row says which


def test_html_when_no_result_has_accuracy(tmp_path: Path) -> None:
    page = render(pd.DataFrame([result_row(accuracy=math.nan), result_row(variant="fp16", accuracy=None)]),
                  tmp_path)
    assert "2 result(s) without accuracy data" in page.figures["fig-accuracy-latency"]["caption"]


def test_html_escapes_names_taken_from_the_results(tmp_path: Path) -> None:
    page = render(pd.DataFrame([result_row(model="<b>net</b>")]), tmp_path, title="a & <i>b</i>")
    assert not [tag for tag, _ in page.elements if tag in ("b", "i")]


def test_html_rejects_missing_columns_an_empty_frame_and_accuracy_in_percent(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    with pytest.raises(ValueError, match="fps"):
        write_html(pd.DataFrame([result_row()]).drop(columns="fps"), path, "r")
    with pytest.raises(ValueError, match="no rows"):
        write_html(pd.DataFrame(columns=list(REPORT_COLUMNS)), path, "r")
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\]"):
        write_html(pd.DataFrame([result_row(accuracy=69.76)]), path, "r")
    assert not path.exists()


def test_html_is_the_same_for_the_same_results(tmp_path: Path) -> None:
    df = pd.DataFrame([result_row(), result_row(variant="fp16", latency_p50_ms=2.0)])
    first = write_html(df, tmp_path / "a.html", "r", generated_at=GENERATED_AT).read_text(encoding="utf-8")
    second = write_html(df, tmp_path / "b.html", "r", generated_at=GENERATED_AT).read_text(encoding="utf-8")
    assert first == second
