"""The backend registry: every module in agent/backends/ is reachable by its devices.yaml name."""
from __future__ import annotations

import pkgutil

import pytest

import edgefarm.agent.backends
from edgefarm.agent.backends import REGISTRY, UnknownBackendError, backend_names, get_backend

NOT_BACKENDS = {"base"}


def test_every_backend_module_is_registered_under_its_own_name() -> None:
    modules = {m.name for m in pkgutil.iter_modules(edgefarm.agent.backends.__path__)} - NOT_BACKENDS
    assert modules == set(REGISTRY)
    assert all(REGISTRY[name] == f"edgefarm.agent.backends.{name}" for name in modules)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_backend_imports_and_names_itself(name: str) -> None:
    # Runtimes are imported lazily: the module loads even where its runtime is not installed.
    module = get_backend(name)
    assert module.NAME == name
    assert callable(module.load) and callable(module.version) and callable(module.providers)


def test_an_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownBackendError, match=f"valid backends: {', '.join(backend_names())}"):
        get_backend("tflite")
