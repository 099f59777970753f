"""Shared test setup.

In CI (CI=true) a skipped test fails the run unless it is marked `gpu` or
`hardware`: nothing may be silently not tested because a package was missing.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.postgres_server import postgres_database, postgres_url  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent
# Copied from the team's shared/device-samples (each file keeps its source header), so a plain clone
# of the repository runs every parser test.
DEVICE_SAMPLES = REPO / "tests" / "data" / "device-samples"
HARDWARE_MARKERS = {"gpu", "hardware"}
_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not HARDWARE_MARKERS & set(report.keywords):
        _unexpected_skips.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") == "true" and _unexpected_skips:
        print(f"\nCI: {len(_unexpected_skips)} test(s) skipped that must run in CI "
              f"(only gpu/hardware tests may skip): {', '.join(_unexpected_skips)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def device_samples() -> Path:
    if not DEVICE_SAMPLES.is_dir():
        pytest.skip(f"recorded device samples not found at {DEVICE_SAMPLES}")
    return DEVICE_SAMPLES


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("headless browser test needs Debian's 'chromium' package (make test installs it as root)")
    return path


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One models/variants cache per test session, so digits-cnn is trained once."""
    return tmp_path_factory.mktemp("edgefarm-cache")


@pytest.fixture(scope="session")
def tflite_models() -> Path:
    """float32 / int8 / uint8 .tflite models made by TensorFlow's converter (see tests/tflite_models)."""
    from tests.tflite_models import build_models

    return build_models()
