"""edgefarm diff: two results' per-layer tables lined up (reads the store, never measures)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgefarm.controller.cli.common import CliError, add_storage_flags, db_path
from edgefarm.controller.reports.layer_diff import DiffError, LayerDiff, diff_results, explain
from edgefarm.controller.results.store import ResultStore

EXAMPLES = """examples:
  edgefarm run mobilenet-v2 --local --recipe fp32 --recipe int8-static --profile
  edgefarm diff latest:fp32 latest:int8-static
  edgefarm diff RUN_A RUN_B --device orin-01 --csv diff.csv --html diff.html
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="align two results' per-layer profiles and show where the time went",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", metavar="RUN_OR_RESULT_A", help="a result (job id), RUN:VARIANT, or a run with one result")
    p.add_argument("b", metavar="RUN_OR_RESULT_B")
    p.add_argument("--device", default=None, help="the device whose results to compare")
    p.add_argument("--csv", type=Path, default=None, help="write the aligned groups as CSV")
    p.add_argument("--html", type=Path, default=None, help="write a self-contained HTML page of the diff")
    p.add_argument("--json", action="store_true", help="print groups and totals as JSON on stdout")
    add_storage_flags(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    store = ResultStore(db_path(args))
    try:
        diff = diff_results(store, args.a, args.b, args.device)
    except DiffError as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    if args.csv:
        diff.frame().to_csv(args.csv, index=False)
    if args.html:
        from edgefarm.controller.reports.layer_html import diff_html

        args.html.write_text(diff_html(diff), encoding="utf-8")
    print(_as_json(diff) if args.json else _as_text(diff))
    return 0


def _as_json(diff: LayerDiff) -> str:
    return json.dumps({"a": diff.a.label, "b": diff.b.label, "aligned_share": diff.aligned_share,
                       "groups": json.loads(diff.frame().to_json(orient="records")),
                       "totals": json.loads(diff.totals().to_json(orient="records"))})


def _as_text(diff: LayerDiff) -> str:
    frame = diff.frame()
    shown = frame[["match", "family", "layers_a", "layers_b", "time_a_us", "time_b_us", "ratio", "precision_a",
                   "precision_b", "placement_a", "placement_b", "note"]].copy()
    for column in ("layers_a", "layers_b"):
        shown[column] = shown[column].str.slice(0, 40)
    totals = diff.totals().to_string(index=False, float_format=lambda v: f"{v:.1f}")
    return "\n".join([shown.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"), "",
                      totals, "", *explain(diff)])
