"""The edgefarm Python API: what the CLI does, as calls that return DataFrames and typed records.

    >>> import edgefarm
    >>> farm = edgefarm.Farm.local()
    >>> run = farm.run("digits-cnn", recipes=["fp32", "int8-static"])
    >>> run.frame[["variant", "latency_p99_ms", "size_bytes"]]

See docs/python-api.md. `edgefarm` exposes these names lazily, so the agent on a board (which
imports the `edgefarm` package too) never loads the controller.
"""
from __future__ import annotations

from edgefarm.api.bisection import Bisection
from edgefarm.api.boards import Boards, BoardStatus, CheckOutcome, IssuedCertificate, Ping, init_ca
from edgefarm.api.config import Measure
from edgefarm.api.errors import (
    BadInputError,
    BadRecipeError,
    DeviceBusyError,
    EdgefarmError,
    InputShapeError,
    UnknownDeviceError,
    UnreachableDeviceError,
)
from edgefarm.api.farm import Farm
from edgefarm.api.history import History
from edgefarm.api.results import Diff, NightlyOutcome, Report, ResultRecord, Resumed, Run
from edgefarm.api.tuning import Tuning
from edgefarm.controller.planning.run_plan import JobFailure
from edgefarm.controller.results.store import RunSummary

__all__ = [
    "BadInputError", "BadRecipeError", "Bisection", "BoardStatus", "Boards", "CheckOutcome", "DeviceBusyError",
    "Diff", "EdgefarmError", "Farm", "History", "InputShapeError", "IssuedCertificate", "JobFailure", "Measure",
    "NightlyOutcome", "Ping", "Report", "ResultRecord", "Resumed", "Run", "RunSummary", "Tuning", "UnknownDeviceError",
    "UnreachableDeviceError", "init_ca",
]
