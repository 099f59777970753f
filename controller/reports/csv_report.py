"""The CSV report: every result, required columns first, then the optional ones present."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from edgefarm.controller.reports.frame import report_columns, require_report_frame


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write the report columns of `df` to `path` (parents created) and return `path`.

    Columns outside REPORT_COLUMNS and OPTIONAL_COLUMNS are left out so the file's schema stays
    fixed for whatever reads it next. Raises ValueError when a required column is missing or
    `df` has no rows.
    """
    require_report_frame(df)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.loc[:, report_columns(df)].to_csv(path, index=False)
    return path
