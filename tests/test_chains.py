"""Recipe chains: the one-line and YAML forms, their errors, the registry, and caching on the real digits-cnn.

Parsing tests use plain strings and small files; the caching tests run short chains
(pruning plus one epoch of fine-tuning) through compress() with real torch and ONNX Runtime.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edgefarm.compressors.chains import NAMED_CHAINS, ChainError, load_chain_file, parse_chain
from edgefarm.compressors.errors import BadModelError, CalibrationDataError, UnknownRecipeError
from edgefarm.compressors.models import ModelBundle, bundle_from_file, get_model
from edgefarm.compressors.recipes import RECIPES, compress, get_recipe, onnx_steps, recipe_names, recipes_from_file

REPO = Path(__file__).resolve().parent.parent
SHORT_CHAIN = "unstructured-prune(0.5) -> finetune(epochs=1)"


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    # The same directory as in test_models.py and test_compressors.py: whichever module runs first trains.
    return get_model("digits-cnn", tmp_path_factory.getbasetemp() / "digits-cnn-cache")


def _parse(text: str) -> str:
    return parse_chain(text, onnx_steps()).text


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipes.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --- the one-line form -------------------------------------------------------------------------

def test_a_one_line_chain_names_every_parameter() -> None:
    assert _parse("structured-prune(0.5) -> finetune(epochs=3) -> int8-static(entropy)") == (
        "structured-prune(amount=0.5, round_to=8) -> finetune(epochs=3, lr=0.003) -> "
        "int8-static(calibration=entropy, activation_type=uint8, weight_type=int8, reduce_range=yes)"
    )


@pytest.mark.parametrize(
    "text",
    ["finetune(2, 0.01)", "finetune(epochs=2, lr=0.01)", "finetune(2, lr=1e-2)", "  finetune( lr = .01 , epochs=2 )"],
)
def test_bare_and_named_values_mean_the_same(text: str) -> None:
    assert _parse(text) == "finetune(epochs=2, lr=0.01)"


def test_a_step_without_parentheses_takes_its_defaults() -> None:
    assert _parse("sparse24->finetune") == "sparse24 -> finetune(epochs=20, lr=0.003)"
    assert _parse("distill(width=1)") == "distill(width=1.0, epochs=10, temperature=4.0, alpha=0.7, lr=0.005)"


def test_the_canonical_text_reads_back_as_itself() -> None:
    for text in NAMED_CHAINS.values():
        assert _parse(_parse(text)) == _parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("structured-prune(1.2) -> finetune", "<recipe>:1:18: step structured-prune: amount=1.2 is outside [0, 1)"),
        ("structured-prune(amount=-0.1)", "<recipe>:1:18: step structured-prune: amount=-0.1 is outside [0, 1)"),
        ("prune(0.5)", "<recipe>:1:1: unknown step 'prune'; valid steps: unstructured-prune, structured-prune, "
                       "sparse24, finetune, distill, qat (PyTorch), fp32, fp16, int8-dynamic, int8-static, "
                       "mixed-int8, int4-weight, tflite-int8, et-fp32, et-int8, ov-fp16, ov-int8 (ONNX)"),
        ("finetune(epoch=3)", "<recipe>:1:10: step finetune has no parameter 'epoch'; it takes epochs (integer in "
                              "[1, 1000], default 20), lr (number in (0, 1], default 0.003)"),
        ("finetune(epochs=2.5)", "<recipe>:1:10: step finetune: epochs=2.5 must be an integer"),
        ("finetune(epochs=0)", "<recipe>:1:10: step finetune: epochs=0 is outside [1, 1000]"),
        ("finetune(3, 0.1, 5)", "<recipe>:1:18: step finetune takes at most 2 bare values; it takes epochs"),
        ("finetune(epochs=3, 0.1)", "<recipe>:1:20: step finetune: a bare value after key=value; name it too"),
        ("finetune(epochs=3, epochs=4)", "<recipe>:1:20: step finetune: epochs is given twice; keep one"),
        ("sparse24(1)", "<recipe>:1:10: step sparse24 takes no parameters"),
        ("int8-static(kl)", "<recipe>:1:13: step int8-static: calibration='kl' is not one of minmax, entropy, "
                            "percentile"),
        ("unstructured-prune(scope=both)", "<recipe>:1:20: step unstructured-prune: scope='both' is not one of "
                                           "global, layer"),
        ("finetune(epochs=3", "<recipe>:1:1: cannot read step 'finetune(epochs=3'; write it as name or name("),
        ("finetune(epochs=$)", "<recipe>:1:10: '$' is neither a number nor a word"),
        ("finetune -> ", "<recipe>:1:12: a step is missing; write steps as name or name(values), joined by '->'"),
        ("int8-static -> finetune", "<recipe>:1:16: step finetune comes after int8-static, an ONNX-level step; "
                                    "PyTorch steps come first and one ONNX-level step may end the chain"),
        ("fp16 -> int8-static", "<recipe>:1:9: step int8-static comes after fp16, an ONNX-level step"),
        ("qat", "<recipe>:1:1: step qat trains for int8 and needs int8-static after it to quantize; "
                "write qat -> int8-static"),
        ("qat -> int8-dynamic", "<recipe>:1:8: step int8-dynamic comes after qat, which trains for int8-static; "
                                "end the chain with qat -> int8-static"),
        ("qat(reduce_range=no) -> int8-static", "<recipe>:1:25: int8-static(reduce_range=yes) must match "
                                                "qat(reduce_range=no): the weights trained for that range"),
    ],
)
def test_one_line_errors_say_where_and_what(text: str, message: str) -> None:
    with pytest.raises(ChainError, match="^" + re.escape(message)) as raised:
        parse_chain(text, onnx_steps())
    assert "\n" not in str(raised.value)


# --- the YAML file -----------------------------------------------------------------------------

def _docs_example() -> str:
    docs = (REPO / "docs" / "recipes.md").read_text()
    return docs.split("## Recipe files (YAML)")[1].split("```yaml\n")[1].split("```")[0]


def test_the_documented_file_loads(tmp_path: Path) -> None:
    chains = load_chain_file(_write(tmp_path, _docs_example()), onnx_steps())
    assert {name: chain.text for name, chain in chains.items()} == {
        "prune-ft-int8": "structured-prune(amount=0.5, round_to=8) -> finetune(epochs=3, lr=0.003) -> "
                         "int8-static(calibration=entropy, activation_type=uint8, weight_type=int8, reduce_range=yes)",
        "gentle-sparse": "unstructured-prune(amount=0.3, scope=layer) -> finetune(epochs=20, lr=0.003)",
        "quick": "sparse24 -> finetune(epochs=2, lr=0.003)",
    }
    assert chains["prune-ft-int8"].description == "half the channels, fine-tuned, then int8"


def test_file_and_one_line_forms_make_the_same_chain(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        recipes:
          long:
            steps:
              - structured-prune: {amount: 0.5}
              - finetune
              - int8-static: {calibration: entropy}
          short: structured-prune(0.5) -> finetune(epochs=20) -> int8-static(entropy)
        """)
    recipes = recipes_from_file(path)
    assert recipes["long"].spec == recipes["short"].spec == get_recipe("prune50-ft-int8").spec.replace(
        "minmax", "entropy")


YAML_ERRORS = [
    ("""
     recipes:
       a:
         steps:
           - structured-prune: {amount: 1.2}
     """, "recipes.yaml:4: recipe 'a': step structured-prune: amount=1.2 is outside [0, 1)"),
    ("""
     recipes:
       a:
         steps:
           - prune: {amount: 0.5}
     """, "recipes.yaml:4: recipe 'a': unknown step 'prune'; valid steps: unstructured-prune, structured-prune"),
    ("""
     recipes:
       a:
         steps:
           - finetune:
               epochs: 3
               rate: 0.1
     """, "recipes.yaml:6: recipe 'a': step finetune has no parameter 'rate'; it takes epochs (integer in "),
    ("""
     recipes:
       a:
         steps:
           - int8-static: {calibration: entropy}
           - finetune: {epochs: 3}
     """, "recipes.yaml:5: recipe 'a': step finetune comes after int8-static, an ONNX-level step"),
    ("""
     recipes:
       a:
         steps:
           - qat
           - finetune
     """, "recipes.yaml:5:9: recipe 'a': step finetune comes after qat, which trains for int8-static"),
    ("""
     recipes:
       a:
         steps:
           - structured-prune: {amount: "0.5"}
     """, "recipes.yaml:4: recipe 'a': step structured-prune: amount='0.5' must be a number; write it without quotes"),
    ("""
     recipes:
       a:
         steps:
           - unstructured-prune: {scope: yes}
     """, "recipes.yaml:4: recipe 'a': step unstructured-prune: scope=yes must be a number or a word, not a boolean"),
    ("""
     recipes:
       ok: sparse24
       b: "structured-prune(1.5) -> finetune"
     """, "recipes.yaml:3:24: recipe 'b': step structured-prune: amount=1.5 is outside [0, 1)"),
    ("""
     recipes:
       a:
         description: no steps
     """, "recipes.yaml:3: recipe 'a': missing 'steps:'; list the steps"),
    ("""
     recipes:
       a:
         steps: []
     """, "recipes.yaml:3: recipe 'a': 'steps' is empty; list at least one step"),
    ("""
     recipes:
       a:
         stepz: [sparse24]
     """, "recipes.yaml:3: recipe 'a': unknown key 'stepz'; valid keys: steps, description"),
    ("""
     recipes:
       a:
         steps:
           - sparse24 -> finetune
     """, "recipes.yaml:4: recipe 'a': one step per list item; split 'sparse24 -> finetune' at '->'"),
    ("""
     recipes:
       a:
         steps:
           - sparse24: {}
             finetune: {}
     """, "recipes.yaml:4: recipe 'a': a list item holds one step, this one 2 (sparse24, finetune)"),
    ("""
     recipes:
       a:
         steps:
           - finetune: 3
     """, "recipes.yaml:4: recipe 'a': step finetune: parameters must be a mapping such as {epochs: 3}, "
          "got the integer 3"),
    ("""
     recipes:
       a:
         steps:
           - finetune: {epochs: }
     """, "recipes.yaml:4: recipe 'a': step finetune: epochs must be a single value, got no value"),
    ("""
     recipe:
       a: sparse24
     """, "recipes.yaml:1: unknown key 'recipe'; the only top-level key is 'recipes'"),
    ("""
     recipes: {}
     """, "recipes.yaml:1: 'recipes' is empty; define at least one recipe"),
    ("""
     recipes:
       int8-static: sparse24
     """, "recipes.yaml:2: recipe name 'int8-static' is a built-in recipe; choose another name"),
    ("""
     recipes:
       Big Name: sparse24
     """, "recipes.yaml:2: recipe name 'Big Name' must match [a-z0-9][a-z0-9._-]*"),
    ("""
     recipes:
       a: sparse24
       a: finetune
     """, "recipes.yaml:3: duplicate key 'a' (first at line 2); keep one"),
    ("""
     recipes:
       a: [sparse24
     """, "recipes.yaml:3: YAML syntax error: expected ',' or ']'"),
    ("", "recipes.yaml:1: the file is empty; it needs a top-level 'recipes:' mapping"),
]


@pytest.mark.parametrize(("text", "message"), YAML_ERRORS)
def test_file_errors_say_file_line_and_what(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ChainError, match="^" + re.escape(f"{tmp_path}/{message}")) as raised:
        recipes_from_file(path)
    assert "\n" not in str(raised.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ChainError, match=r"nope\.yaml: no such file; check the path"):
        recipes_from_file(tmp_path / "nope.yaml")


# --- the registry ------------------------------------------------------------------------------

def test_built_in_chains_are_registered_after_the_single_steps() -> None:
    singles = list(onnx_steps())
    assert singles[:4] == ["fp32", "fp16", "int8-dynamic", "int8-static"]
    assert recipe_names() == singles + list(NAMED_CHAINS)
    assert list(NAMED_CHAINS) == ["unstructured50-ft", "sparse24-ft", "qat-int8", "prune50-ft-int8", "distill-int8"]
    for name in NAMED_CHAINS:
        assert RECIPES[name].uses_torch and RECIPES[name].spec == _parse(NAMED_CHAINS[name])
    assert RECIPES["prune50-ft-int8"].uses_calibration and RECIPES["qat-int8"].uses_calibration


def test_an_unknown_name_is_not_taken_for_a_chain() -> None:
    with pytest.raises(UnknownRecipeError, match=r"unknown recipe 'int4'; valid recipes: fp32, fp16, .*distill-int8"):
        get_recipe("int4")


# --- running and caching -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chains-cache")


def _entries(cache_dir: Path, kind: str) -> list[str]:
    folder = cache_dir / kind
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_chain_rerun_is_a_cache_hit(digits: ModelBundle, cache: Path) -> None:
    first = compress(digits, SHORT_CHAIN, cache)
    assert first.recipe == _parse(SHORT_CHAIN) and [s["step"] for s in first.steps] == ["unstructured-prune",
                                                                                        "finetune"]
    calls: list[tuple[str, float]] = []
    started = time.perf_counter()
    again = compress(digits, SHORT_CHAIN.replace(" ", ""), cache, progress=lambda *call: calls.append(call))
    assert time.perf_counter() - started < 0.5 and calls == []
    assert again == first  # same artifact, and the original durations, stats and steps


def test_chains_share_their_leading_stages(digits: ModelBundle, cache: Path) -> None:
    compress(digits, SHORT_CHAIN, cache)
    calls: list[tuple[str, float]] = []
    variant = compress(digits, f"{SHORT_CHAIN} -> int8-static", cache, progress=lambda *call: calls.append(call))
    assert list(dict.fromkeys(phase for phase, _ in calls)) == ["prepare", "calibrate", "quantize", "evaluate"]
    assert [step["step"] for step in variant.steps] == ["unstructured-prune", "finetune", "int8-static"]
    assert variant.size_bytes < 0.3 * compress(digits, SHORT_CHAIN, cache).size_bytes


def test_a_chain_from_a_file_runs_under_its_name(digits: ModelBundle, cache: Path, tmp_path: Path) -> None:
    recipes = recipes_from_file(_write(tmp_path, f"recipes:\n  mine: {SHORT_CHAIN}\n"))
    variant = compress(digits, recipes["mine"], cache)
    assert variant.recipe == "mine" and variant.sha256 == compress(digits, SHORT_CHAIN, cache).sha256


def test_progress_names_each_step(digits: ModelBundle, tmp_path: Path) -> None:
    calls: list[tuple[str, float]] = []
    compress(digits, "unstructured-prune(0.2) -> finetune(epochs=1)", tmp_path, progress=lambda *c: calls.append(c))
    phases = list(dict.fromkeys(phase for phase, _ in calls))
    assert phases == ["unstructured-prune", "export", "finetune", "evaluate"]
    assert all(0.0 <= fraction <= 1.0 for _, fraction in calls) and calls[-1] == ("evaluate", 1.0)


def test_a_failed_step_leaves_nothing_half_written(digits: ModelBundle, tmp_path: Path) -> None:
    def interrupt(phase: str, fraction: float) -> None:
        if phase == "finetune":
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during fine-tuning

    with pytest.raises(KeyboardInterrupt):
        compress(digits, "unstructured-prune(0.4) -> finetune(epochs=2)", tmp_path, progress=interrupt)
    assert _entries(tmp_path, "variants") == []
    (finished,) = _entries(tmp_path, "stages")  # the pruning stage, whole; no staging directory
    assert finished.startswith("unstructured-prune-")
    assert sorted(p.name for p in (tmp_path / "stages" / finished).iterdir()) == [
        "model.onnx", "stage.json", "state_dict.pt"]


def test_bad_calibration_data_fails_before_any_training(digits: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(CalibrationDataError, match=r"recipe int8-static: the model has no calibration data"):
        compress(replace(digits, calib_npz=None), "prune50-ft-int8", tmp_path)
    assert _entries(tmp_path, "stages") == [] and _entries(tmp_path, "variants") == []


def test_a_model_without_pytorch_source_takes_only_onnx_steps(digits: ModelBundle, tmp_path: Path) -> None:
    onnx_only = bundle_from_file(digits.onnx_path, digits.calib_npz, digits.eval_npz)
    with pytest.raises(BadModelError, match=r"recipe prune50-ft-int8 has PyTorch steps, but model has no "
                                            r"PyTorch source .*; use ONNX-level recipes: fp32, fp16, int8-dyn"):
        compress(onnx_only, "prune50-ft-int8", tmp_path)
    assert list(tmp_path.iterdir()) == []
    variant = compress(onnx_only, "int8-static(entropy)", tmp_path)  # a chain of one ONNX step
    assert variant.steps[0]["params"] == {"calibration": "entropy", "activation_type": "uint8", "weight_type": "int8",
                                          "reduce_range": "yes"} and variant.stats == {}


def test_a_cached_chain_is_read_without_torch(digits: ModelBundle, cache: Path) -> None:
    compress(digits, SHORT_CHAIN, cache)
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from edgefarm.compressors.models import get_model
        from edgefarm.compressors.recipes import compress
        bundle = get_model("digits-cnn", Path({str(Path(digits.onnx_path).parents[2])!r}))
        variant = compress(bundle, {SHORT_CHAIN!r}, Path({str(cache)!r}))
        print("torch" in sys.modules, "yaml" in sys.modules, variant.stats["sparsity_after"])
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "0.5"]


def _compressors_imports(module: str) -> set[str]:
    """The edgefarm.compressors modules a module names in any import, TYPE_CHECKING and in-function ones too."""
    tree = ast.parse((REPO / "compressors" / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    prefix = "edgefarm.compressors."
    return {name[len(prefix):] for name in names if name.startswith(prefix)}


@pytest.mark.parametrize("module", ["types", "chains", "chain_runner", "int4", "mixed_precision", "tflite_export"])
def test_modules_that_recipes_imports_do_not_import_it_back(module: str) -> None:
    # recipes imports these modules; importing it back, even for a type, would close a cycle.
    assert "recipes" not in _compressors_imports(module)


def test_the_shared_types_are_a_leaf() -> None:
    assert _compressors_imports("types") <= {"errors", "errors.RecipeParamsError", "models.bundle",
                                             "models.bundle.ModelBundle", "progress", "progress.ProgressFn"}
    assert "chain_runner" not in _compressors_imports("chains")
