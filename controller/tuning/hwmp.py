"""Hardware-aware mixed precision: which layers to quantize, decided by what int8 measures on *this* board.

Sensitivity-only mixed precision (mixed-int8, AIMET, NNCF) keeps the layers that cost accuracy in float.
It never asks whether a layer's int8 kernel is faster on the board: on x86 without VNNI a depthwise 3x3
runs about 0.7x as fast in int8 as in fp32, while wide 1x1 convolutions run faster. Here:
1. the board's per-layer profiles of fp32 and full int8 are aligned (edgefarm diff's alignment), giving
   each weight layer its measured int8 speed-up on the board;
2. layers measured slower in int8 stay fp32;
3. of the rest, the most sensitive (mixed-int8's "all but one" ranking) stay fp32 until the accuracy
   drop is within the budget; everything else is quantized.
Every decision carries its reason, e.g. "depthwise: int8 0.71x here; kept fp32".
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edgefarm.agent.digest import sha256_file
from edgefarm.compressors import mixed_precision, quantize
from edgefarm.compressors.cache import staged_directory
from edgefarm.compressors.calibration import calibration_reader
from edgefarm.compressors.evaluate import METRICS
from edgefarm.compressors.models import ModelBundle
from edgefarm.compressors.recipes import Variant
from edgefarm.compressors.types import RecipeJob
from edgefarm.controller.reports.layer_diff import Side, align, normalize_source
from edgefarm.controller.results.store import StoredResult

NAME = "hw-mixed-int8"
# A layer whose int8 kernel is not at least this much faster is kept in float: within ~3 % is within the
# profiler's run-to-run noise, and float also saves the Q/DQ pair around it.
MIN_SPEEDUP = 1.03


@dataclass(frozen=True)
class LayerDecision:
    layer: str
    family: str
    fp32_us: float | None
    int8_us: float | None
    speedup: float | None      # fp32 time / int8 time on the board; None: not aligned in the profiles
    sensitivity: float
    quantized: bool
    reason: str


@dataclass(frozen=True)
class Hwmp:
    """The built variant and why each layer is what it is."""

    variant: Variant
    decisions: tuple[LayerDecision, ...]
    drop_points: float


def layer_speedups(fp32: StoredResult, int8: StoredResult) -> dict[str, tuple[str, float | None, float | None]]:
    """Each source node's (family, fp32 µs, int8 µs) from the two aligned per-layer profiles."""
    diff = align(Side("fp32", fp32), Side("int8", int8))
    sources = {row.name: row.source_nodes for row in fp32.result.layer_profile.layers}
    found: dict[str, tuple[str, float | None, float | None]] = {}
    for group in diff.groups:
        if group.match in ("only-a", "only-b"):
            continue
        for name in group.layers_a:
            for source in sources.get(name, ()):
                found[normalize_source(source)] = (group.family, group.time_a_us, group.time_b_us)
    return found


def layer_kinds(onnx_path: Path) -> dict[str, str]:
    """What a weight layer is, in the words the speed differences follow: depthwise, 1x1 or kxk conv, dense."""
    import onnx

    kinds = {}
    for node in onnx.load(str(onnx_path)).graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            kernel = "x".join(str(k) for k in attrs.get("kernel_shape", ()))
            kinds[node.name] = "depthwise" if attrs.get("group", 1) > 1 else f"{kernel} conv"
        elif node.op_type in ("Gemm", "MatMul"):
            kinds[node.name] = "dense"
    return kinds


def decide(layers: Sequence[str], speeds: Mapping[str, tuple[str, float | None, float | None]],
           sensitivity: Mapping[str, float], kinds: Mapping[str, str] | None = None) -> list[LayerDecision]:
    """First pass: by speed alone (the budget pass may keep more in float)."""
    decisions = []
    for layer in layers:
        family, a, b = speeds.get(normalize_source(layer), ("", None, None))
        family = (kinds or {}).get(layer, family)
        speedup = a / b if a and b else None
        score = sensitivity.get(layer, 0.0)
        if speedup is None:
            decisions.append(LayerDecision(layer, family or "?", a, b, None, score, True,
                                           "not timed apart in the profiles; int8 as int8-static"))
        elif speedup < MIN_SPEEDUP:
            decisions.append(LayerDecision(layer, family, a, b, speedup, score, False,
                                           f"{family}: int8 {speedup:.2f}x here; kept fp32"))
        else:
            decisions.append(LayerDecision(layer, family, a, b, speedup, score, True,
                                           f"{family}: int8 {speedup:.2f}x here, insensitive; int8"))
    return decisions


def keep_sensitive(decisions: list[LayerDecision], rank: Mapping[str, int], layer: str) -> list[LayerDecision]:
    """The budget pass: `layer` (the most sensitive still int8) goes back to float."""
    out = []
    for d in decisions:
        if d.layer == layer:
            speed = f"int8 {d.speedup:.2f}x here but " if d.speedup else ""
            d = LayerDecision(d.layer, d.family, d.fp32_us, d.int8_us, d.speedup, d.sensitivity, False,
                              f"{d.family}: {speed}sensitive (rank {rank[layer] + 1}); kept fp32")
        out.append(d)
    return out


def build(bundle: ModelBundle, params: Mapping[str, str], fp32: StoredResult, int8: StoredResult,
          max_drop: float, cache_dir: Path, ranking: Sequence[tuple[str, float]] | None = None) -> Hwmp:
    """Calibrate once, decide per layer, keep sensitive layers in float until within `max_drop`, write the variant."""
    settings = quantize.Int8Settings.from_params(params)
    work = cache_dir / "tuning" / f"{NAME}-work-{_digest(bundle, params)}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        job = RecipeJob(bundle, dict(params), work, work / "out.onnx", None, cache_dir)
        reader = calibration_reader(bundle.onnx_path, bundle.calib_npz, NAME, None)
        prepared = quantize.prepare(bundle.onnx_path, work)
        ranges = quantize.calibrate(prepared, reader, params["calibration"], work)
        quantizer = mixed_precision.Quantizer(prepared, ranges, params["calibration"], work, settings)
        layers = mixed_precision.weight_layers(prepared)
        ranking = list(ranking) if ranking else mixed_precision.rank_layers(
            quantizer, layers, mixed_precision.ranking_samples(prepared, job), job)
        first = decide(layers, layer_speedups(fp32, int8), dict(ranking), layer_kinds(prepared))
        decisions, drop = _within_budget(first, ranking, quantizer, bundle, max_drop)
        kept = tuple(d.layer for d in decisions if not d.quantized)
        return Hwmp(_publish(bundle, params, quantizer.path(kept), kept, decisions, cache_dir), tuple(decisions), drop)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _within_budget(decisions: list[LayerDecision], ranking: Sequence[tuple[str, float]], quantizer, bundle: ModelBundle,
                   max_drop: float) -> tuple[list[LayerDecision], float]:
    score = METRICS[bundle.metric]
    base = score(bundle.onnx_path, bundle.eval_npz)
    rank = {layer: i for i, (layer, _) in enumerate(ranking)}
    while True:
        kept = tuple(d.layer for d in decisions if not d.quantized)
        drop = round((base - score(quantizer.path(kept), bundle.eval_npz)) * 100, 4)
        left = [layer for layer, _ in ranking if layer not in kept]
        if drop <= max_drop or not left:
            return decisions, drop
        decisions = keep_sensitive(decisions, rank, left[0])


def _publish(bundle: ModelBundle, params: Mapping[str, str], model: Path, kept: tuple[str, ...],
             decisions: Sequence[LayerDecision], cache_dir: Path) -> Variant:
    sha = sha256_file(model)
    entry = cache_dir / "variants" / f"{NAME}-{sha[:24]}"
    if not entry.is_dir():
        with staged_directory(entry) as staging:
            shutil.copyfile(model, staging / "model.onnx")
            (staging / "decisions.json").write_text(json.dumps([asdict(d) for d in decisions], indent=2) + "\n")
    accuracy = METRICS[bundle.metric](entry / "model.onnx", bundle.eval_npz) if bundle.eval_npz else None
    full = {**params, "keep_float": ",".join(kept)}
    return Variant(bundle.name, NAME, full, entry / "model.onnx", (entry / "model.onnx").stat().st_size, sha,
                   accuracy, 0.0, {"kept_float_layers": len(kept), "built_unix": round(time.time())})


def _digest(bundle: ModelBundle, params: Mapping[str, str]) -> str:
    text = json.dumps({"model": sha256_file(bundle.onnx_path), "params": dict(params)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mixed_int8_ranking(variant: Variant) -> list[tuple[str, float]] | None:
    """The sensitivity ranking a mixed-int8 variant of the same model already computed (its details.json)."""
    details = variant.path.parent / mixed_precision.DETAILS
    if not details.is_file():
        return None
    return [(r["layer"], r["sensitivity"]) for r in json.loads(details.read_text())["ranking"]]
