"""The wheel installs one import name, `edgefarm`, and the distribution has one version string."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

import edgefarm
from edgefarm.controller.provision.deploy import build_agent_wheel

REPO = Path(__file__).resolve().parent.parent
ROLE_FOLDERS = {"edgefarm": "edgefarm", "agent": "edgefarm/agent", "controller": "edgefarm/controller",
                "compressors": "edgefarm/compressors", "protos": "edgefarm/protos"}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    wheel = build_agent_wheel(REPO, tmp_path_factory.mktemp("wheel"))
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.slow
def test_the_wheel_installs_only_the_edgefarm_import_name(wheel_names):
    top_level = {name.split("/")[0] for name in wheel_names if ".dist-info/" not in name}
    assert top_level == {"edgefarm"}


@pytest.mark.slow
def test_every_package_folder_is_in_the_wheel(wheel_names):
    """pyproject.toml lists packages by hand (package-dir maps them): a new folder must be added there."""
    for folder, installed in ROLE_FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.relative_to(REPO / folder).as_posix()
            assert f"{installed}/{relative}" in wheel_names, f"{folder}/{relative} is missing from the wheel"
    assert "edgefarm/protos/agent.proto" in wheel_names


def test_one_version_string():
    assigned = [path for folder in ROLE_FOLDERS for path in (REPO / folder).rglob("*.py")
                if re.search(r"^__version__\s*=", path.read_text(), re.M)]
    assert assigned == [REPO / "edgefarm" / "__init__.py"]
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'version = {attr = "edgefarm.__version__"}' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)
    assert re.fullmatch(r"\d+\.\d+\.\d+", edgefarm.__version__)
