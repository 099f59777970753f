"""The scheduler is pure: tested on plain data."""
import re

import pytest

from edgefarm.controller.planning.scheduler import PlanError, PlannedJob, TargetRef, assign, candidates_for, expand

DEVICES = {
    "orin-1": {"soc": "orin", "board": "agx"},
    "orin-2": {"soc": "orin", "board": "nx"},
    "pi-1": {"board": "rpi5", "accelerator": "edgetpu"},
    "x86-1": {"arch": "x86_64"},
}
POOLS = {"orin": {"soc": "orin"}, "coral": {"accelerator": "edgetpu"}, "empty": {"soc": "thor"}}


def test_pool_resolves_to_its_members_in_order():
    assert candidates_for(TargetRef(pool="orin"), DEVICES, POOLS) == ("orin-1", "orin-2")
    assert candidates_for(TargetRef(device="x86-1"), DEVICES, POOLS) == ("x86-1",)


@pytest.mark.parametrize("target, message", [
    (TargetRef(pool="jetson"), "unknown pool 'jetson'; valid pools: coral, empty, orin"),
    (TargetRef(device="nano"), "unknown device 'nano'; valid devices: orin-1, orin-2, pi-1, x86-1"),
    (TargetRef(pool="empty"), "pool 'empty' (soc=thor) matches no device"),
])
def test_bad_targets_are_clear_errors(target, message):
    with pytest.raises(PlanError, match=re.escape(message)):
        candidates_for(target, DEVICES, POOLS)


def test_expand_is_models_by_recipes_by_targets_without_duplicates():
    jobs = expand(["m1", "m2"], ["fp32", "int8"], [TargetRef(pool="orin"), TargetRef(device="x86-1"),
                                                  TargetRef(pool="orin")], DEVICES, POOLS)
    assert len(jobs) == 8
    assert jobs[0] == PlannedJob("m1", "fp32", "pool:orin", ("orin-1", "orin-2"))
    assert jobs[-1].key == "m2|int8|x86-1"


def test_assign_gives_one_job_per_idle_device():
    jobs = expand(["m"], ["a", "b", "c"], [TargetRef(pool="orin")], DEVICES, POOLS)
    pairs = assign(jobs, ["orin-1", "orin-2", "pi-1"])
    assert [(j.recipe, d) for j, d in pairs] == [("a", "orin-1"), ("b", "orin-2")]


def test_pinned_jobs_are_not_starved_by_pool_jobs():
    pool_job = PlannedJob("m", "a", "pool:orin", ("orin-1", "orin-2"))
    pinned = PlannedJob("m", "b", "orin-1", ("orin-1",))
    pairs = assign([pool_job, pinned], ["orin-1", "orin-2"])
    assert dict((j.recipe, d) for j, d in pairs) == {"b": "orin-1", "a": "orin-2"}


def test_no_idle_device_no_assignment():
    assert assign(expand(["m"], ["a"], [TargetRef(device="pi-1")], DEVICES, POOLS), ["x86-1"]) == []
