"""Two per-layer tables lined up: which layers of variant/backend/device A became which layers of B.

Matching runs in three steps (DESIGN "Per-layer tables"):
1. groups of layers sharing source-node names, quantizer and fusion suffixes stripped (N:M fusions);
2. an order-preserving match on op family plus a layout-insensitive output-shape signature (as TREx
   aligns two TensorRT engines), for what step 1 left;
3. "only in A" / "only in B" for the rest.
Reads stored results only; the Python API (`Farm.diff`) wraps `diff_results`, and the CLI (cli/diff.py)
calls the API.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from edgefarm.controller.agents.records import LayerProfile, LayerRow
from edgefarm.controller.results.store import ResultStore, StoredResult

# onnxruntime.quantization names Q/DQ nodes NAME_QuantizeLinear / NAME_DequantizeLinear; ONNX Runtime's
# fusions add _token_N and _nchwc; the quantizer's own renames add _quant.
_QUANT_SUFFIX = re.compile(r"((_QuantizeLinear)|(_DequantizeLinear)|(_token_\d+)|(_nchwc)|(_quant))+$")
CPU_PLACEMENTS = ("CPUExecutionProvider", "CPU")
HOW_TO_PROFILE = "re-run it with --profile (edgefarm run MODEL --recipe R --profile), or profile: true in the matrix"


class DiffError(ValueError):
    """A diff that cannot be made as asked: a reference not found, or a side without a layer profile."""


@dataclass(frozen=True)
class Side:
    label: str                 # "RUN:variant@device (backend)"
    stored: StoredResult

    @property
    def profile(self) -> LayerProfile:
        return self.stored.result.layer_profile  # type: ignore[return-value]  # checked by _checked


@dataclass(frozen=True)
class AlignedGroup:
    match: str                 # "source", "signature", "only-a", "only-b"
    family: str
    layers_a: tuple[str, ...]
    layers_b: tuple[str, ...]
    time_a_us: float | None    # None: no layer on that side, or its runtime gave no time
    time_b_us: float | None
    precision_a: str
    precision_b: str
    placement_a: str
    placement_b: str
    glue_a_us: float
    glue_b_us: float
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.time_a_us or self.time_b_us is None:
            return None
        return self.time_b_us / self.time_a_us


@dataclass(frozen=True)
class LayerDiff:
    a: Side
    b: Side
    groups: tuple[AlignedGroup, ...]
    compute_layers_a: int      # A's non-glue layers
    aligned_compute_a: int     # of those, the ones in an aligned group

    @property
    def aligned_share(self) -> float:
        return self.aligned_compute_a / self.compute_layers_a if self.compute_layers_a else 0.0

    def frame(self) -> pd.DataFrame:
        """One row per aligned group, in A's execution order."""
        rows = [{"match": g.match, "family": g.family, "layers_a": " + ".join(g.layers_a),
                 "layers_b": " + ".join(g.layers_b), "time_a_us": g.time_a_us, "time_b_us": g.time_b_us,
                 "ratio": g.ratio, "precision_a": g.precision_a, "precision_b": g.precision_b,
                 "placement_a": g.placement_a, "placement_b": g.placement_b, "glue_a_us": g.glue_a_us,
                 "glue_b_us": g.glue_b_us, "note": g.note} for g in self.groups]
        return pd.DataFrame(rows, columns=list(_COLUMNS))

    def totals(self) -> pd.DataFrame:
        """Time by glue, op family, placement and unaligned layers, with the end-to-end medians."""
        return pd.DataFrame(_totals(self), columns=["what", "key", "a_us", "b_us"])


_COLUMNS = ("match", "family", "layers_a", "layers_b", "time_a_us", "time_b_us", "ratio", "precision_a",
            "precision_b", "placement_a", "placement_b", "glue_a_us", "glue_b_us", "note")


def find_result(store: ResultStore, ref: str, device: str | None = None) -> Side:
    """A result by job id, by RUN:VARIANT, or a run (or `latest`) that holds exactly one result on `device`."""
    run_ref, _, variant = ref.partition(":")
    run_id = store.latest_run() if run_ref == "latest" else run_ref
    candidates = store.results(run_id) if run_id and store.run_exists(run_id) else _by_job_id(store, ref)
    chosen = [s for s in candidates if (not variant or s.job.variant == variant)
              and (device is None or s.job.device == device)]
    if len(chosen) != 1:
        raise DiffError(_ambiguous(ref, run_id, candidates, chosen, device))
    return Side(_label(chosen[0]), chosen[0])


def _by_job_id(store: ResultStore, job_id: str) -> list[StoredResult]:
    run_id = store.run_of_job(job_id)
    return [s for s in store.results(run_id) if s.job.id == job_id] if run_id else []


def _ambiguous(ref: str, run_id: str | None, candidates: list[StoredResult], chosen: list[StoredResult],
               device: str | None) -> str:
    if not candidates:
        return f"{ref}: no run or result with that id in the store; list runs with `edgefarm runs`"
    names = ", ".join(sorted({f"{s.job.run_id}:{s.job.variant}" + ("" if device else f" (--device {s.job.device})")
                              for s in candidates}))
    what = "no result matches" if not chosen else f"{len(chosen)} results match"
    return f"{ref}: {what}; name one as RUN:VARIANT and --device DEVICE, e.g. {names}"


def _label(s: StoredResult) -> str:
    return f"{s.job.run_id}:{s.job.variant}@{s.job.device} ({s.result.backend})"


def diff_results(store: ResultStore, ref_a: str, ref_b: str, device: str | None = None) -> LayerDiff:
    """The aligned per-layer tables of two stored results (see the module's docstring for the rules)."""
    a, b = _checked(find_result(store, ref_a, device), "A"), _checked(find_result(store, ref_b, device), "B")
    return align(a, b)


def _checked(side: Side, which: str) -> Side:
    profile = side.stored.result.layer_profile
    if profile is None:
        raise DiffError(f"side {which} ({side.label}) has no layer profile: it was measured without --profile; "
                        f"{HOW_TO_PROFILE}")
    if not profile.available:
        raise DiffError(f"side {which} ({side.label}) has no layer table: {profile.unavailable_reason}")
    return side


def align(a: Side, b: Side) -> LayerDiff:
    rows_a, rows_b = list(a.profile.layers), list(b.profile.layers)
    by_source = _source_groups(rows_a, rows_b)
    used_a = {i for ia, _ in by_source for i in ia}
    used_b = {i for _, ib in by_source for i in ib}
    by_signature = _signature_pairs(rows_a, rows_b, used_a, used_b)
    used_a |= {i for i, _ in by_signature}
    used_b |= {j for _, j in by_signature}
    groups = [("source", ia, ib) for ia, ib in by_source] + [("signature", (i,), (j,)) for i, j in by_signature]
    groups += [("only-a", (i,), ()) for i in range(len(rows_a)) if i not in used_a]
    groups += [("only-b", (), (j,)) for j in range(len(rows_b)) if j not in used_b]
    groups.sort(key=lambda g: (min(g[1]) if g[1] else len(rows_a), min(g[2]) if g[2] else 0))
    built = tuple(_group(match, [rows_a[i] for i in ia], [rows_b[j] for j in ib]) for match, ia, ib in groups)
    compute_a = [i for i, row in enumerate(rows_a) if not row.is_glue]
    aligned = sum(1 for i in compute_a if any(i in ia and ib for _, ia, ib in groups))
    return LayerDiff(a, b, built, len(compute_a), aligned)


def normalize_source(name: str) -> str:
    return _QUANT_SUFFIX.sub("", name)


def _source_groups(rows_a: Sequence[LayerRow], rows_b: Sequence[LayerRow]) -> list[tuple[tuple[int, ...], ...]]:
    """Union of layers (A's and B's) that share a normalized source name; kept when both sides are in it."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def root(key: tuple[str, int]) -> tuple[str, int]:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    owner: dict[str, tuple[str, int]] = {}
    for side, rows in (("a", rows_a), ("b", rows_b)):
        for i, row in enumerate(rows):
            for name in {normalize_source(n) for n in row.source_nodes}:
                if name in owner:
                    parent[root((side, i))] = root(owner[name])
                else:
                    owner[name] = root((side, i))
    members: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for key in list(parent):
        members.setdefault(root(key), []).append(key)
    groups = []
    for keys in members.values():
        ia = tuple(sorted(i for s, i in keys if s == "a"))
        ib = tuple(sorted(i for s, i in keys if s == "b"))
        if ia and ib:
            groups.append((ia, ib))
    return groups


def signature(row: LayerRow) -> tuple[str, tuple[int, ...]]:
    """Op family and the first output's dims sorted: NCHW and NHWC of one tensor sign the same."""
    dims = row.output_shapes[0].split("x") if row.output_shapes and row.output_shapes[0] != "scalar" else []
    return row.op_family, tuple(sorted(int(d) for d in dims if d.lstrip("-").isdigit()))


def _signature_pairs(rows_a: Sequence[LayerRow], rows_b: Sequence[LayerRow], used_a: set[int],
                     used_b: set[int]) -> list[tuple[int, int]]:
    left = [i for i, row in enumerate(rows_a) if i not in used_a and not row.is_glue]
    right = [j for j, row in enumerate(rows_b) if j not in used_b and not row.is_glue]
    matcher = difflib.SequenceMatcher(None, [signature(rows_a[i]) for i in left],
                                      [signature(rows_b[j]) for j in right], autojunk=False)
    return [(left[block.a + k], right[block.b + k]) for block in matcher.get_matching_blocks()
            for k in range(block.size)]


def _group(match: str, a: list[LayerRow], b: list[LayerRow]) -> AlignedGroup:
    compute = [r for r in a + b if not r.is_glue] or a + b
    return AlignedGroup(match, compute[0].op_family, tuple(r.name for r in a), tuple(r.name for r in b),
                        _time(a), _time(b), _joined(r.precision for r in a if not r.is_glue),
                        _joined(r.precision for r in b if not r.is_glue), _joined(r.placement for r in a),
                        _joined(r.placement for r in b), _glue(a), _glue(b), _placement_note(a, b))


def _time(rows: list[LayerRow]) -> float | None:
    if not rows or not all(r.timed for r in rows):
        return None
    return sum(r.median_us for r in rows)


def _glue(rows: list[LayerRow]) -> float:
    return sum(r.median_us for r in rows if r.is_glue and r.timed)


def _joined(values) -> str:
    return "/".join(dict.fromkeys(v for v in values if v))


def _placement_note(a: list[LayerRow], b: list[LayerRow]) -> str:
    before, after = _joined(r.placement for r in a), _joined(r.placement for r in b)
    if not a or not b or before == after:
        return ""
    if after in CPU_PLACEMENTS and before not in CPU_PLACEMENTS:
        return f"fell back to CPU (was {before})"
    return f"placement changed: {before} -> {after}"


def _totals(diff: LayerDiff) -> list[tuple[str, str, float | None, float | None]]:
    rows_a, rows_b = diff.a.profile.layers, diff.b.profile.layers
    out = [("glue", "all", _sum(r for r in rows_a if r.is_glue), _sum(r for r in rows_b if r.is_glue))]
    for key, pick in (("family", lambda r: r.op_family), ("placement", lambda r: r.placement)):
        for value in dict.fromkeys([pick(r) for r in rows_a] + [pick(r) for r in rows_b]):
            out.append((key, value, _sum(r for r in rows_a if pick(r) == value),
                        _sum(r for r in rows_b if pick(r) == value)))
    only_a = sum(g.time_a_us or 0.0 for g in diff.groups if g.match == "only-a")
    only_b = sum(g.time_b_us or 0.0 for g in diff.groups if g.match == "only-b")
    out.append(("unaligned", "all", only_a, only_b))
    out.append(("layers", "sum", _sum(rows_a), _sum(rows_b)))
    out.append(("end-to-end", "p50", diff.a.stored.result.latency.p50_ms * 1000,
                diff.b.stored.result.latency.p50_ms * 1000))
    return out


def _sum(rows) -> float | None:
    rows = list(rows)
    return sum(r.median_us for r in rows) if all(r.timed for r in rows) else None


def explain(diff: LayerDiff, top: int = 3) -> list[str]:
    """A few sentences on where B's time goes compared with A's."""
    totals = diff.totals()
    lines = [f"A = {diff.a.label}, B = {diff.b.label}; {diff.aligned_compute_a} of {diff.compute_layers_a} "
             f"compute layers of A aligned ({diff.aligned_share:.0%})"]
    summed = totals[totals.what == "layers"].iloc[0]
    if pd.isna(summed.a_us) or pd.isna(summed.b_us):
        return lines + ["per-layer time is not available on one side: placement only (see the placement columns)"]
    lines.append(f"layer time: A {summed.a_us:.1f} us, B {summed.b_us:.1f} us ({summed.b_us - summed.a_us:+.1f} us)")
    glue = totals[totals.what == "glue"].iloc[0]
    lines.append(f"glue (quantize/dequantize, transpose, reorder, cast, memcpy): A {glue.a_us:.1f} us, "
                 f"B {glue.b_us:.1f} us ({glue.b_us - glue.a_us:+.1f} us)")
    changes = sorted((g for g in diff.groups if g.time_a_us is not None or g.time_b_us is not None),
                     key=lambda g: -abs((g.time_b_us or 0.0) - (g.time_a_us or 0.0)))[:top]
    for g in changes:
        lines.append(f"{(g.time_b_us or 0.0) - (g.time_a_us or 0.0):+.1f} us  {g.family} "
                     f"{' + '.join(g.layers_a) or '-'} -> {' + '.join(g.layers_b) or '-'} {g.note}".rstrip())
    moved = [g for g in diff.groups if g.note]
    if moved:
        lines.append(f"{len(moved)} group(s) changed placement, e.g. {moved[0].note}")
    return lines
