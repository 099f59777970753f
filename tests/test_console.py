"""Off a terminal (a CI log), progress prints as plain periodic lines instead of nothing until the end."""
from __future__ import annotations

from edgefarm.controller.console import RunConsole


class StepClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_prints_a_line_every_ten_seconds_and_at_the_end(capsys):
    clock = StepClock()
    ui = RunConsole(clock=clock)
    with ui.live():
        measure = ui.phase_bar("measure fp32 on orin-01")
        for second in range(0, 31):
            clock.now = float(second)
            measure("measure", second / 40)
        measure("done", 1.0)
        measure("done", 1.0)  # a finished bar says so once
    assert capsys.readouterr().err.splitlines() == [
        "measure fp32 on orin-01 [measure]: 0%",
        "measure fp32 on orin-01 [measure]: 25%",
        "measure fp32 on orin-01 [measure]: 50%",
        "measure fp32 on orin-01 [measure]: 75%",
        "measure fp32 on orin-01 [done]: 100%",
    ]


def test_a_byte_bar_off_a_terminal_reports_fractions(capsys):
    clock = StepClock()
    ui = RunConsole(clock=clock)
    upload = ui.bar("upload to orin-01", total=4 << 20)
    upload(1 << 20)
    clock.now = 11.0
    upload(3 << 20)
    upload(4 << 20)
    assert capsys.readouterr().err.splitlines() == [
        "upload to orin-01: 25%", "upload to orin-01: 75%", "upload to orin-01: 100%"]
