"""The API's typed exceptions. Each message is the one line `edgefarm` prints after "edgefarm: error:",
and every one is a BadInputError: something the caller can fix (the CLI exits 2 on any of them).

Internal modules keep their own exceptions (a compressor's, the inventory's, the lease database's);
`translated()` turns them into these at the API's edge, keeping the original as ``__cause__``.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class EdgefarmError(Exception):
    """Base of every exception the edgefarm API raises on purpose.

    Example:
        >>> try:
        ...     edgefarm.Farm(db="mysql://db/results")
        ... except edgefarm.EdgefarmError as exc:
        ...     print(exc)
    """


class BadInputError(EdgefarmError):
    """Input the caller can fix: a missing or corrupt model, a malformed devices file, a bad measuring
    setting, a run id not in the store. ``edgefarm`` prints the message as one line and exits 2.

    Example:
        >>> farm.run("missing.onnx")
        Traceback (most recent call last):
        edgefarm.BadInputError: ... missing.onnx ...
    """


class UnknownDeviceError(BadInputError):
    """A device (or pool) name the devices file does not define; the message lists the valid names.

    Example:
        >>> farm.run("digits-cnn", device="jetson-typo")   # raises UnknownDeviceError
    """


class BadRecipeError(BadInputError):
    """A recipe name or chain that does not parse, or parameters a recipe refuses; the message lists
    the valid recipes.

    Example:
        >>> farm.run("digits-cnn", recipes=["int3"])       # raises BadRecipeError
    """


class InputShapeError(BadInputError):
    """The model's inputs cannot be planned as given: a dynamic dim that nothing resolves (pass
    ``shapes=``), or input data whose names or shapes do not fit the model.

    Example:
        >>> farm.run("detector.onnx")   # images: [N, 3, H, W] -> raises InputShapeError
    """


class UnreachableDeviceError(BadInputError):
    """The board's agent cannot be reached (refused, timed out, wrong certificate); the message names
    the device, its address and what to check. Nothing was measured.

    Example:
        >>> farm.run("digits-cnn", device="dead-board")    # raises UnreachableDeviceError
    """


class DeviceBusyError(BadInputError):
    """A single-board run found its board leased by someone else (the message says who and for how
    long), or the lease database kept failing. Nothing was measured; try again later.

    Example:
        >>> farm.run("digits-cnn", device="jetson-orin-01")  # while the nightly holds it
    """


def _internal() -> list[tuple[tuple[type[BaseException], ...], type[BadInputError]]]:
    """Internal exception types → the typed exception they become, most specific first. Imported
    here, not at module level: `edgefarm.controller.cli.common` imports this module."""
    from edgefarm.compressors.chains import ChainError
    from edgefarm.compressors.errors import CompressorError, RecipeParamsError, UnknownRecipeError
    from edgefarm.controller.agents.client import AgentRejectedError, AgentUnreachableError
    from edgefarm.controller.agents.local_agent import LocalAgentError
    from edgefarm.controller.agents.security import SecurityError
    from edgefarm.controller.config.inventory import UnknownDeviceError as InventoryUnknownDevice
    from edgefarm.controller.leases import LeaseError
    from edgefarm.controller.nightly.history import HistoryError
    from edgefarm.controller.nightly.run import BaselineError
    from edgefarm.controller.planning.input_plan import InputPlanError
    from edgefarm.controller.planning.run_plan import PlanError
    from edgefarm.controller.planning.scheduler import PlanError as MatrixPlanError
    from edgefarm.controller.provision.ca import CaError
    from edgefarm.controller.provision.deploy import ProvisionError
    from edgefarm.controller.reports.layer_diff import DiffError
    from edgefarm.controller.results.store import StoreError
    from edgefarm.yaml_nodes import ConfigError

    return [
        ((InventoryUnknownDevice,), UnknownDeviceError),
        ((UnknownRecipeError, RecipeParamsError, ChainError), BadRecipeError),
        ((InputPlanError,), InputShapeError),
        ((AgentUnreachableError,), UnreachableDeviceError),
        ((LeaseError,), DeviceBusyError),
        ((CompressorError, ConfigError, AgentRejectedError, LocalAgentError, StoreError, PlanError, BaselineError,
          MatrixPlanError, SecurityError, CaError, ProvisionError, HistoryError, DiffError), BadInputError),
    ]


def typed(exc: BaseException) -> BaseException:
    """The API's exception for an internal one (the same message), or `exc` itself when it has none."""
    if isinstance(exc, EdgefarmError):
        return exc
    for internal, public in _internal():
        if isinstance(exc, internal):
            error = public(str(exc))
            error.__cause__ = exc
            return error
    return exc


@contextmanager
def translated() -> Iterator[None]:
    """Re-raises the internal exceptions that mean "fix your input" as the API's typed ones."""
    try:
        yield
    except Exception as exc:
        error = typed(exc)
        if error is exc:
            raise
        raise error from exc
