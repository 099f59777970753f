"""edgefarm: a hardware-in-the-loop benchmarking farm for edge AI.

The distribution installs one import name, ``edgefarm``, mapped from the repository's role folders:
``edgefarm.agent`` (agent/, runs on the boards), ``edgefarm.protos`` (protos/, the wire contract),
``edgefarm.controller`` (controller/) and ``edgefarm.compressors`` (compressors/).

The Python API (docs/python-api.md) is reached from here::

    import edgefarm
    farm = edgefarm.Farm.local()
    run = farm.run("digits-cnn", recipes=["fp32", "int8-static"])
    run.frame                      # pandas: the report's columns, one row per variant x device

This module is the one version string of the whole distribution (pyproject.toml reads it); it must
stay importable on the boards' Python 3.8 and import nothing: the API's names load from
``edgefarm.api`` (controller side) only when first used (PEP 562).
"""
__version__ = "0.2.0"

_API = (
    "BadInputError", "BadRecipeError", "Bisection", "BoardStatus", "Boards", "CheckOutcome", "DeviceBusyError",
    "Diff", "EdgefarmError", "Farm", "History", "InputShapeError", "IssuedCertificate", "JobFailure", "Measure",
    "NightlyOutcome", "Ping", "Report", "ResultRecord", "Resumed", "Run", "RunSummary", "Tuning", "UnknownDeviceError",
    "UnreachableDeviceError", "init_ca",
)
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        from edgefarm import api

        return getattr(api, name)
    raise AttributeError("module 'edgefarm' has no attribute " + repr(name))


def __dir__():
    return sorted(set(globals()) | set(_API))
