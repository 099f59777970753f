"""The Python API (edgefarm.Farm): docs/python-api.md's examples run as a notebook would run them,
against real local agents over real gRPC, and each refusal is the CLI's, as a typed exception."""
from __future__ import annotations

import ast
import inspect
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import edgefarm
from edgefarm.controller.cli import main
from edgefarm.controller.reports import REPORT_COLUMNS
from tests import user_models
from tests.farm_fixtures import devices_yaml, local_agents

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "python-api.md"
FAST = edgefarm.Measure(warmup_seconds=0.05, min_seconds=0.2)


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


@pytest.fixture
def work(tmp_path, model_cache, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEFARM_CACHE_DIR", str(model_cache))
    monkeypatch.delenv("EDGEFARM_DB", raising=False)
    monkeypatch.delenv("EDGEFARM_LEASES", raising=False)
    return tmp_path


def _results(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]


@pytest.mark.slow
def test_every_example_in_the_docs_runs_in_order(work):
    (matrix,) = _blocks("yaml")
    (work / "nightly.yaml").write_text(matrix)
    namespace: dict = {}
    with local_agents(work, 1) as agents:
        devices_yaml(work / "devices.yaml", agents, ["board-a"])
        for number, block in enumerate(_blocks("python"), 1):
            _run_like_a_notebook_cell(block, namespace, f"{DOC.name} block {number}")
    run = namespace["run"]
    assert set(REPORT_COLUMNS) <= set(run.frame.columns)
    assert sorted(run.frame["variant"]) == ["fp32", "int8-static"] and (run.frame["device"] == "local").all()
    assert run.frame[list(REPORT_COLUMNS)].notna().all().all()
    assert pd.DataFrame([r.row() for r in run.results]).equals(run.frame)  # records and rows agree
    assert "<table>" in run._repr_html_() and "int8-static" in run.results[1]._repr_html_() + run._repr_html_()
    assert (work / "report.html").exists() and (work / "nightly-out" / "junit.xml").exists()
    assert namespace["night"].exit_code == 0 and namespace["night"].verdict == "good"
    assert "digits-cnn" in namespace["night"]._repr_html_()
    assert set(namespace["stored"]["id"]) >= {run.id}
    diff = namespace["diff"]
    assert isinstance(diff, edgefarm.Diff) and diff.aligned_share >= 0.9 and (work / "diff.csv").exists()
    assert 'id="fig-diff"' in (work / "diff.html").read_text()
    assert 'id="layers-1-coverage"' in (work / "profiled.html").read_text()


def _run_like_a_notebook_cell(block: str, namespace: dict, name: str) -> object:
    """Runs a block as Jupyter does: statements, then the last expression's value (which is shown)."""
    tree = ast.parse(block, name)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, name, "exec"), namespace)  # noqa: S102 - the docs' own examples
    if last is None:
        return None
    value = eval(compile(ast.Expression(last.value), name, "eval"), namespace)  # noqa: S307
    html = getattr(value, "_repr_html_", None)
    return html() if html else value


def test_refusals_are_typed_carry_the_cli_line_and_lose_nothing(work, capsys):
    farm = edgefarm.Farm(devices=_dead_board(work), db=work / "r.sqlite")
    model = user_models.shared_symbol(work)                     # input_ids, attention_mask: [batch, seq]
    kept = farm.run(model, shapes={"input_ids": (1, 32)}, measure=FAST, progress=False)
    assert kept.exit_code == 0 and kept.frame.loc[0, "input_shapes"] == "input_ids:1x32 attention_mask:1x32"
    cases = [
        (edgefarm.UnknownDeviceError, dict(model="digits-cnn", device="jetson-typo"), "unknown device 'jetson-typo'",
         ["run", "digits-cnn", "--device", "jetson-typo"]),
        (edgefarm.BadRecipeError, dict(model="digits-cnn", recipes=["int3"]), "valid recipes: ",
         ["run", "digits-cnn", "--local", "--recipe", "int3"]),
        (edgefarm.InputShapeError, dict(model=str(model)), "seq",
         ["run", str(model), "--local"]),
        (edgefarm.UnreachableDeviceError, dict(model=str(model), device="dead-board", shapes=["input_ids:1x8"]),
         "dead-board", ["run", str(model), "--device", "dead-board", "--shape", "input_ids:1x8"]),
    ]
    for error, kwargs, needle, argv in cases:
        with pytest.raises(error, match=re.escape(needle)) as raised:
            farm.run(**kwargs, measure=FAST, progress=False)
        assert isinstance(raised.value, edgefarm.BadInputError)
        assert main([*argv, "--devices", str(work / "devices.yaml"), "--db", str(work / "r.sqlite"),
                     "--warmup-seconds", "0.05", "--min-seconds", "0.2"]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"edgefarm: error: {raised.value}", error
    assert _results(work / "r.sqlite") == 1
    assert farm.get_run(kept.id).frame.equals(kept.frame)
    statuses = [r.status for r in farm.stored_runs(limit=None)]
    assert statuses.count("done") == 1 and statuses.count("refused") == 2  # unreachable: refused twice (API, CLI)


def _dead_board(work: Path) -> Path:
    path = work / "devices.yaml"  # port 9 on loopback: nothing listens, every dial is refused at once
    path.write_text("devices:\n  - name: dead-board\n    host: 127.0.0.1\n    port: 9\n    backends: [onnxruntime]\n")
    return path


@pytest.mark.parametrize(("call", "error", "needle"), [
    (lambda: edgefarm.Farm(db="mysql://db/results"), edgefarm.BadInputError, "no other database is supported"),
    (lambda: edgefarm.Farm.local().run("digits-cnn", measure=edgefarm.Measure(min_seconds=0)),
     edgefarm.BadInputError, "--min-seconds must be > 0, got 0"),
    (lambda: edgefarm.Farm.local().run("digits-cnn", device="orin"), edgefarm.BadInputError, "Farm.local()"),
    (lambda: edgefarm.Farm.local().runs(since="last tuesday"), edgefarm.BadInputError, "is not a date"),
])
def test_settings_are_refused_before_anything_is_stored(work, call, error, needle):
    with pytest.raises(error, match=re.escape(needle)):
        call()
    assert not any(work.iterdir())


def test_a_stored_run_reads_back_as_frame_report_and_runs(work):
    from edgefarm.controller.cli.common import CliError

    farm = edgefarm.Farm.local(db=work / "r.sqlite")
    assert farm.runs().empty and list(farm.runs().columns)[:3] == ["id", "created_at", "command"]
    with pytest.raises(edgefarm.BadInputError, match="no run 'latest'"):
        farm.report()
    assert issubclass(CliError, edgefarm.BadInputError)


def test_import_edgefarm_stays_light_and_names_load_on_use():
    code = ("import sys, edgefarm; assert 'edgefarm.api' not in sys.modules and 'pandas' not in sys.modules; "
            "assert edgefarm.Farm.__module__ == 'edgefarm.api.farm'; assert 'edgefarm.api' in sys.modules; "
            "import edgefarm.agent")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgefarm.nope  # noqa: B018
    assert (REPO / "edgefarm" / "py.typed").exists()


def test_every_public_name_is_documented_with_an_example():
    from edgefarm import api

    assert sorted(edgefarm.__all__) == sorted(["__version__", *api.__all__])
    public = [getattr(edgefarm, name) for name in api.__all__ if name != "RunSummary"]
    public += [member for cls in (edgefarm.Farm, edgefarm.Boards) for name, member in vars(cls).items()
               if not name.startswith("_") and callable(getattr(cls, name))]
    for thing in public:
        doc = inspect.getdoc(thing) or ""
        assert "Example" in doc, f"{thing!r} has no example in its docstring"


@pytest.mark.parametrize(("widgets", "plain"), [(True, False), (False, True)])
def test_progress_in_a_notebook_is_rich_where_ipywidgets_can_host_it(monkeypatch, widgets, plain):
    """rich draws live bars in Jupyter only through ipywidgets; without it, plain lines say the progress."""
    import rich.console

    from edgefarm.controller import console

    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)
    monkeypatch.setattr(console, "_has_ipywidgets", lambda: widgets)
    assert console.RunConsole()._plain is plain
