"""`devices unquarantine` health-checks the board first: a dead board stays quarantined, a healthy one
returns, and --force overrides (logged). The check runs a real canary through a real local agent."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from edgefarm.controller.agents.local_agent import LocalAgent
from edgefarm.controller.cli import main
from edgefarm.controller.leases import open_lease_manager, sqlite_url


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    with LocalAgent(tmp_path_factory.mktemp("agent")) as local:
        yield local


def _farm(tmp_path: Path, agent: LocalAgent) -> list[str]:
    host, port = agent.address.rsplit(":", 1)
    (tmp_path / "devices.yaml").write_text(
        "devices:\n"
        f"  - {{name: x86-01, host: {host}, port: {port}, backends: [onnxruntime]}}\n"
        f"  - {{name: coral-01, host: {host}, port: {port}, backends: [litert]}}\n"
        "  - {name: x86-dead, host: 127.0.0.1, port: 9, backends: [onnxruntime]}\n")
    url = sqlite_url(tmp_path / "leases.sqlite")
    with open_lease_manager(url) as leases:
        for device in ("x86-01", "coral-01", "x86-dead"):
            leases.quarantine(device, "3 failures in a row")
    return ["--devices", str(tmp_path / "devices.yaml"), "--leases", url]


def _status(flags: list[str], device: str) -> str:
    with open_lease_manager(flags[-1]) as leases:
        return leases.states([device])[0].status


def test_a_healthy_board_returns_only_after_passing_its_check(tmp_path, agent, capsys):
    flags = _farm(tmp_path, agent)
    assert main(["devices", "unquarantine", "x86-01", *flags]) == 0
    assert main(["devices", "unquarantine", "coral-01", *flags]) == 0   # LiteRT-only: the .tflite canary
    assert "coral-01: passed its health check; can be leased again" in capsys.readouterr().out
    assert _status(flags, "x86-01") == _status(flags, "coral-01") == "idle"


def test_a_dead_board_stays_quarantined_unless_forced(tmp_path, agent, capsys, caplog):
    flags = _farm(tmp_path, agent)
    assert main(["devices", "unquarantine", "x86-dead", *flags]) == 2
    err = capsys.readouterr().err
    assert "x86-dead failed its health check: device 'x86-dead': no agent answered at 127.0.0.1:9" in err
    assert "it stays quarantined (fix the board, or pass --force to return it anyway)" in err
    assert _status(flags, "x86-dead") == "quarantined"
    with caplog.at_level(logging.WARNING, logger="edgefarm"):
        assert main(["devices", "unquarantine", "x86-dead", "--force", *flags]) == 0
    assert _status(flags, "x86-dead") == "idle"
    assert any("returned to service by --force" in record.message for record in caplog.records)


def test_status_check_health_checks_every_board_stores_it_and_heals_the_ones_that_pass(tmp_path, agent, capsys):
    flags = _farm(tmp_path, agent)
    assert main(["devices", "status", "--check", *flags]) == 1          # x86-dead fails
    out = capsys.readouterr().out
    assert "x86-01: passed its health check; back in service" in out
    assert "x86-dead: failed its health check: device 'x86-dead': no agent answered at 127.0.0.1:9" in out
    assert _status(flags, "x86-01") == _status(flags, "coral-01") == "idle"
    assert _status(flags, "x86-dead") == "quarantined"
    with open_lease_manager(flags[-1]) as leases:
        checks = leases.last_checks(["x86-01", "coral-01", "x86-dead"])
    assert checks["x86-01"].passed and not checks["x86-dead"].passed
    assert checks["x86-01"].checked_by.endswith("(devices status --check)")
    assert main(["devices", "status", *flags]) == 0                      # the table shows the stored checks
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert re.search(r"passed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", rows["x86-01"])
    assert re.search(r"failed \d{4}-\d\d-\d\d", rows["x86-dead"])


def test_unquarantine_stores_its_check(tmp_path, agent):
    flags = _farm(tmp_path, agent)
    assert main(["devices", "unquarantine", "x86-dead", *flags]) == 2
    with open_lease_manager(flags[-1]) as leases:
        check = leases.last_checks(["x86-dead"])["x86-dead"]
    assert not check.passed and check.checked_by.endswith("(devices unquarantine)")
