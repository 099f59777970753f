"""Reports over measured results: a CSV and one self-contained HTML page with plots.

Reports only read: they take a results frame built from the store and never measure. Accuracy
is a fraction in [0, 1]; power columns may hold "not available", which is shown as such.
"""
from __future__ import annotations

from edgefarm.controller.reports.csv_report import write_csv
from edgefarm.controller.reports.frame import NOT_AVAILABLE, OPTIONAL_COLUMNS, REPORT_COLUMNS
from edgefarm.controller.reports.html_report import write_html
from edgefarm.controller.reports.pareto import pareto_front

__all__ = ["NOT_AVAILABLE", "OPTIONAL_COLUMNS", "REPORT_COLUMNS", "pareto_front", "write_csv", "write_html"]
