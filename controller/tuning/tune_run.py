"""`edgefarm tune` end to end: the model and its variants on the controller (host check), then the search
on each board (one per board kind of a pool), then the hardware-aware mixed-precision variant, each
measurement a normal stored result of one run of kind "tune". The tune's outcome (rows, host checks,
per-layer decisions, why it stopped) is stored as the run's plan after every board."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgefarm.controller.agents.client import AgentUnreachableError
from edgefarm.controller.agents.records import DeviceInfo
from edgefarm.controller.config.inventory import Device
from edgefarm.controller.console import RunConsole
from edgefarm.controller.execution.prepare import job_inputs, model_source
from edgefarm.controller.execution.single_run import boards_named, leases_for, probe
from edgefarm.controller.planning.input_plan import ShapeList
from edgefarm.controller.planning.job_inputs import require_protocol
from edgefarm.controller.planning.run_plan import MeasureSettings, PlanError, RunPlan, Target
from edgefarm.controller.results.store import ResultStore
from edgefarm.controller.tuning import front as fronts
from edgefarm.controller.tuning import hwmp, space
from edgefarm.controller.tuning.board import BoardLost, BoardMeasurer, Built
from edgefarm.controller.tuning.host import HostCheck, build_all, check_budget, quality
from edgefarm.controller.tuning.search import Search, groups

log = logging.getLogger(__name__)
KIND = "tune"


class TuneError(PlanError):
    """A tune that cannot start as asked (an objective the board cannot measure, no candidate left)."""


@dataclass(frozen=True)
class TuneConfig:
    model: str
    device: str | None = None          # a device or a pool of the devices file; None: the embedded agent
    devices: str | None = None
    max_drop: float = 1.0
    objective: str = "latency"
    recipes: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    max_jobs: int | None = None
    shapes: ShapeList = ()
    inputs: str | None = None
    calib_data: str | None = None
    eval_data: str | None = None
    full: MeasureSettings = field(default_factory=lambda: MeasureSettings(warmup_seconds=0.3, min_seconds=1.5))
    hwmp: bool = True
    exhaustive: bool = False           # measure every candidate fully (the reference T1 judges the search by)


@dataclass(frozen=True)
class BoardTune:
    board: str
    info: DeviceInfo
    rows: tuple[dict, ...]
    decisions: tuple[hwmp.LayerDecision, ...]
    hwmp_note: str
    jobs: int
    stopped: str


@dataclass(frozen=True)
class TuneOutcome:
    run_id: str
    config: TuneConfig
    checks: tuple[HostCheck, ...]
    boards: tuple[BoardTune, ...]
    lost: tuple[str, ...] = ()


def run_tune(config: TuneConfig, store: ResultStore, ui: RunConsole, cache_dir: Path,
             leases_url: str | None) -> TuneOutcome:
    _check_config(config)
    plan = RunPlan(config.model, ("fp32",), Target("tune", None), cache_dir, config.full,
                   _path(config.calib_data), _path(config.eval_data), config.shapes, _path(config.inputs))
    with (boards_named(config.device, config.devices, cache_dir) as boards,
          leases_for(leases_url if config.device else None) as leases):
        source = model_source(plan, ui)
        if source.bundle is None:
            raise TuneError(f"{config.model}: tune compresses an ONNX model; a prebuilt .tflite has no recipes "
                            "to search; measure it with edgefarm run")
        inputs = job_inputs(plan, source)
        infos = _usable(boards, config, inputs)   # refusals come before any compression or board time
        recipes = space.recipes(config.recipes, source.bundle.torch_source is not None, config.max_drop)
        if "fp32" not in [r.label for r in recipes]:
            recipes.insert(0, space.Recipe("fp32"))  # the baseline every drop is measured against
        built, failed = build_all(source.bundle, recipes, inputs, cache_dir, ui)
        if "fp32" not in built:
            raise TuneError(f"{config.model}: the fp32 baseline could not be built; see edgefarm run {config.model}")
        checks = tuple(failed) + tuple(check_budget(built, built["fp32"], config.max_drop))
        asked_fp32 = not config.recipes or "fp32" in config.recipes   # else fp32 is the baseline only
        kept = {c.recipe: built[c.recipe] for c in checks
                if (c.kept or config.exhaustive) and (c.recipe != "fp32" or asked_fp32)}
        if not kept:
            return TuneOutcome(store.new_run(f"tune {config.model}: nothing within budget", KIND), config, checks, ())
        run_id = store.new_run(f"tune {config.model} on {config.device or 'local'}", KIND,
                               plan={"tune": _jsonable(config)})
        outcome = TuneOutcome(run_id, config, checks, ())
        with store.heartbeat(run_id), _finishing(store, run_id):
            outcome = _tune_boards(outcome, infos, kept, built["fp32"], source.bundle, store, leases, ui, cache_dir)
            store.finish_run(run_id, "partial" if outcome.lost else "done")
        return outcome


def _tune_boards(outcome, infos, kept, baseline, bundle, store, leases, ui, cache_dir) -> TuneOutcome:
    done: list[BoardTune] = []
    lost: list[str] = []
    kinds_done: set[str] = set()
    for board, info in infos:
        kind = _kind(board, info)
        if kind in kinds_done:
            continue
        try:
            done.append(_tune_board(outcome, board, info, dict(kept), baseline, bundle, store, leases, ui, cache_dir))
            kinds_done.add(kind)
        except BoardLost as exc:
            ui.note(f"[yellow]{exc}; the tune goes on with the next board of the pool[/yellow]")
            lost.append(str(exc))
        _store(store, outcome, done, lost)
    return TuneOutcome(outcome.run_id, outcome.config, outcome.checks, tuple(done), tuple(lost))


def _tune_board(outcome, board, info, kept, baseline, bundle, store, leases, ui, cache_dir) -> BoardTune:
    config = outcome.config
    base_quality, _ = quality(baseline)
    measurer = BoardMeasurer(store, outcome.run_id, board, leases, ui, bundle.eval_npz)
    threads = space.thread_counts(info.cpu_cores)
    search = Search(measurer, kept, threads, config.objective, config.max_drop, config.max_jobs, config.full,
                    base_quality)
    found = groups(kept, lambda b: quality(b)[0] or 0.0, info.backends or board.backends, config.backends)
    state = search.run_exhaustive(found) if config.exhaustive else search.run(found)
    decisions, note = ((), "off") if not config.hwmp else _hwmp(search, bundle, config, cache_dir, threads)
    return BoardTune(board.name, info, tuple(state.rows), decisions, note, measurer.jobs, state.stopped)


def _hwmp(search: Search, bundle, config: TuneConfig, cache_dir: Path, threads) -> tuple[tuple, str]:
    """Build and measure the hardware-aware mixed-precision variant from rung 0's two profiles."""
    fp32, (int8_label, int8) = search.state.brief.get("fp32"), _int8_profiled(search)
    if fp32 is None or int8 is None:
        return (), "not built: needs fp32 and an int8-static variant measured with a profile on this board"
    if not (fp32.result.layer_profile and fp32.result.layer_profile.available and int8.result.layer_profile
            and int8.result.layer_profile.available):
        return (), "not built: the board gave no per-layer profile"
    params = dict(search.built[int8_label].variant.params)
    same = [b for b in search.built.values()
            if b.variant.recipe == "mixed-int8" and b.variant.params.get("calibration") == params["calibration"]]
    ranking = hwmp.mixed_int8_ranking(same[0].variant) if same else None  # reuse its sensitivity ranking
    made = hwmp.build(bundle, params, fp32, int8, config.max_drop, cache_dir, ranking)
    some = next(iter(search.built.values()))
    built = Built(made.variant, {}, some.inputs)
    label = space.Recipe(hwmp.NAME).label
    best_threads = _best_threads(search.state.rows, threads)
    search.measure_extra(space.Candidate(label, "onnxruntime", best_threads), built, "hwmp")
    quantized = sum(d.quantized for d in made.decisions)
    return made.decisions, (f"built: {quantized} of {len(made.decisions)} weight layers int8, "
                            f"drop {made.drop_points:.2f}")


def _int8_profiled(search: Search):
    """Rung 0's int8-static result (the most accurate of its kernel group represents the group)."""
    return next(((label, r) for label, r in search.state.brief.items() if label.startswith("int8-static")),
                ("", None))


def _best_threads(rows: list[dict], threads) -> int:
    full = [r for r in rows if r["stage"] == "full"]
    return min(full, key=lambda r: r["latency_p50_ms"])["threads"] if full else max(threads)


def _usable(boards: list[Device], config: TuneConfig, inputs) -> list[tuple[Device, DeviceInfo]]:
    """Every board that answers, described; the objective is checked against each before any job."""
    usable = []
    for board in boards:
        try:
            info = probe(board)
            require_protocol(board.name, info, inputs, True)
        except AgentUnreachableError as exc:
            log.warning("%s", exc)
            if len(boards) == 1:
                raise
            continue
        _check_objective(board, info, config.objective)
        usable.append((board, info))
    if not usable:
        raise TuneError(f"no board of {config.device} answers; check them with 'edgefarm devices status'")
    return usable


def _check_objective(board: Device, info: DeviceInfo, objective: str) -> None:
    if objective == "energy" and not info.sensors:
        raise TuneError(f"--objective energy: {board.name} has no power sensor (it reports none: no RAPL, NVML, "
                        "INA3221 or PMIC readable), so energy per inference cannot be measured there; use "
                        "--objective latency or size, or a board with a sensor")


def _check_config(config: TuneConfig) -> None:
    if config.objective not in fronts.OBJECTIVES:
        raise TuneError(f"--objective {config.objective!r} is not one of {', '.join(fronts.OBJECTIVES)}")
    if not 0 <= config.max_drop < 100:
        raise TuneError(f"--max-drop {config.max_drop:g} must be in points between 0 and 100, e.g. --max-drop 1")
    if config.max_jobs is not None and config.max_jobs < 1:
        raise TuneError(f"--max-jobs {config.max_jobs} must be >= 1")


def _kind(board: Device, info: DeviceInfo) -> str:
    """Boards of one kind get one front: the same CPU model, cores and machine."""
    return f"{info.machine}/{info.cpu_model}/{info.cpu_cores}/{sorted(board.tags.items())}"


@contextmanager
def _finishing(store: ResultStore, run_id: str) -> Iterator[None]:
    """A tune cut short keeps what it measured; the run says how it ended."""
    try:
        yield
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted")
        raise
    except BaseException:
        store.finish_run(run_id, "failed")
        raise


def _store(store: ResultStore, outcome: TuneOutcome, done: list[BoardTune], lost: list[str]) -> None:
    boards = [{"board": b.board, "jobs": b.jobs, "stopped": b.stopped, "hwmp": b.hwmp_note,
               "decisions": [asdict(d) for d in b.decisions]} for b in done]
    store.set_plan(outcome.run_id, {"tune": _jsonable(outcome.config), "boards": boards, "lost": lost,
                                    "checks": [asdict(c) for c in outcome.checks]})


def _jsonable(config: TuneConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
