"""The report's per-layer views and the diff page, over layer profiles read back from a real results store:
each view is one groupby with exact sums, the coverage is stated against the headline and against the
profiled pass, results without a profile get one line, and both pages stay self-contained."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

import edgefarm
from edgefarm.controller.reports import layer_views as views
from edgefarm.controller.reports import write_html
from edgefarm.controller.reports.layer_diff import diff_results
from edgefarm.controller.reports.layer_html import diff_html
from edgefarm.controller.results.frame import result_row
from edgefarm.controller.results.layer_frame import NOT_PROFILED, layer_tables
from edgefarm.controller.results.store import ResultStore
from tests.layer_fixtures import store_profiled_run, store_run
from tests.test_reports import FETCHING_ATTRIBUTES, ReportPage

GENERATED_AT = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)


@pytest.fixture
def stored(tmp_path: Path):
    store = ResultStore(tmp_path / "r.sqlite")
    run_id = store_profiled_run(store)
    yield store, run_id
    store.close()


def _page(store: ResultStore, run_id: str, path: Path) -> str:
    results = store.results(run_id)
    frame = pd.DataFrame([result_row(r) for r in results])
    return write_html(frame, path, "r", generated_at=GENERATED_AT, layers=layer_tables(results)).read_text()


def test_layer_tables_hold_one_row_per_result_and_per_layer(stored):
    store, run_id = stored
    tables = layer_tables(store.results(run_id))
    profiles = tables.profiles.set_index("variant")
    assert list(profiles.loc["fp32", ["layer_count", "layer_sum_us", "e2e_p50_us", "profiled_run_us"]]) == \
        [14, 130.0, 100.0, 200.0]
    assert profiles.loc["fp16", "reason"] == NOT_PROFILED and not profiles.loc["fp16", "profiled"]
    assert not profiles.loc["as-is", "timed"] and "benchmark_model" in profiles.loc["as-is", "reason"]
    assert pd.isna(profiles.loc["as-is", "layer_sum_us"]) and pd.isna(profiles.loc["as-is", "profiled_run_us"])
    assert len(tables.layers) == 14 + 15 + 3 and list(tables.layers_of(f"{run_id}-fp32")["position"]) == list(range(14))


def test_each_view_is_an_exact_groupby(stored):
    store, run_id = stored
    tables = layer_tables(store.results(run_id))
    int8 = tables.layers_of(f"{run_id}-int8-static")
    assert list(views.top_layers(int8, 2)["name"]) == ["input_QuantizeLinear", "/18/Gemm"]
    family = views.time_by(int8, "op_family").set_index("op_family")
    assert family.loc["Conv", "layers"] == 12 and family.loc["Conv", "time_us"] == 96.0
    assert family["time_us"].sum() == 122.0 and family["share"].sum() == pytest.approx(1.0)
    placement = views.time_by(int8, "placement").set_index("placement")
    assert placement.loc["XnnpackExecutionProvider", "time_us"] == 10.0
    assert views.glue(int8) == views.Glue(2, 16.0, 16.0 / 122.0, ("QuantizeLinear", "DequantizeLinear"))
    fp32 = views.coverage(tables.profiles.set_index("variant").loc["fp32"])
    assert (fp32.of_headline, fp32.of_profiled_run, fp32.profiler_slowdown) == (1.3, 0.65, 2.0)
    untimed = views.time_by(tables.layers_of(f"{run_id}-as-is"), "placement").set_index("placement")
    assert untimed.loc["XNNPACK", "layers"] == 2 and untimed["time_us"].isna().all()


def test_the_report_shows_each_profiled_variants_views_and_one_line_for_the_rest(stored, tmp_path):
    store, run_id = stored
    text = _page(store, run_id, tmp_path / "report.html")
    page = ReportPage(text)
    ids = {attrs.get("id") for _, attrs in page.elements}
    for n in (1, 2):   # fp32 and int8-static, in recipe order; both timed
        assert {f"layers-{n}", f"layers-{n}-coverage", f"layers-{n}-family", f"layers-{n}-placement",
                f"layers-{n}-top"} <= ids
        assert page.figures[f"fig-layers-{n}"]["svgs"] == 1
    assert "layers-3-placement" in ids and "layers-3-coverage" not in ids and "fig-layers-3" not in page.figures
    assert "placement only" in text and "Σ layer medians" in text and "1.30×" in text and "0.65×" in text
    assert "Glue: 2 layers, 16.0 µs, 13.1 % of layer time (QuantizeLinear, DequantizeLinear)" in text
    assert "Without a per-layer profile: mobilenet-v2 fp16 on x86-01" in text and "--profile" in text
    _self_contained(page)


def test_without_profiles_the_report_says_how_to_get_one_and_without_tables_nothing(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    run_id = store_run(store, {"fp32": None, "int8-static": None})
    text = _page(store, run_id, tmp_path / "plain.html")
    assert 'id="layers-hint"' in text and "No per-layer profiles in this run" in text and "--profile" in text
    assert "Per-layer profiles</h2>" not in text
    frame = pd.DataFrame([result_row(r) for r in store.results(run_id)])
    store.close()
    assert 'id="layers' not in write_html(frame, tmp_path / "old.html", "r").read_text()


def test_the_diff_page_is_a_report_page_with_its_plot_totals_and_groups(stored, tmp_path):
    store, run_id = stored
    diff = diff_results(store, f"{run_id}:fp32", f"{run_id}:int8-static")
    text = diff_html(diff, generated_at=GENERATED_AT)
    page = ReportPage(text)
    assert page.figures["fig-diff"]["svgs"] == 1 and "Time per aligned group" in page.figures["fig-diff"]["caption"]
    tables = [attrs.get("id") for tag, attrs in page.elements if tag == "table"]
    assert tables == ["totals", "groups"]
    assert [attrs.get("class") for tag, attrs in page.elements if tag == "tr"].count("moved") == 1
    assert "XnnpackExecutionProvider" in text and "13 of 13 compute layers of A aligned (100%)" in text
    assert text == diff_html(diff, generated_at=GENERATED_AT)   # the same diff gives the same page
    _self_contained(page)


def test_farm_diff_writes_the_page_and_csv_and_refuses_a_side_without_a_profile(stored, tmp_path):
    store, run_id = stored
    farm = edgefarm.Farm(db=store.path)
    diff = farm.diff(f"{run_id}:fp32", f"{run_id}:int8-static", html=tmp_path / "d.html", csv=tmp_path / "d.csv")
    assert diff.aligned_share == 1.0 and diff.html.read_text().startswith("<!DOCTYPE html>")
    assert pd.read_csv(diff.csv)["family"].tolist() == diff.frame["family"].tolist()
    assert "<table>" in diff._repr_html_() and diff.as_json()["aligned_share"] == 1.0
    assert "layer time: A 130.0 us, B 122.0 us (-8.0 us)" in diff.text()
    with pytest.raises(edgefarm.BadInputError, match=r"side B .* no layer profile.*--profile"):
        farm.diff(f"{run_id}:fp32", f"{run_id}:fp16")


def _self_contained(page: ReportPage) -> None:
    fetching = [(tag, name, value) for tag, attrs in page.elements for name, value in attrs.items()
                if name in FETCHING_ATTRIBUTES and not value.startswith("#")]
    assert fetching == [] and not any(tag in ("script", "link", "img", "iframe") for tag, _ in page.elements)
    assert any(tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy" for tag, attrs in page.elements)
