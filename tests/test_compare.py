"""compare_runs finds every changed number and nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.pipeline.compare import compare_runs


def _make_run(root, *, value=1.0, history="a", extra_column=False):
    (root / "01_data_prep").mkdir(parents=True)
    table = pd.DataFrame({"x": [1.0, np.nan], "y": ["a", "b"]})
    if extra_column:
        table["z"] = 0
    table.to_csv(root / "01_data_prep" / "t.csv", index=False)
    ds = xr.Dataset({"v": (("y", "x"), np.array([[value, np.nan]]), {"units": "1",
                                                                      "history": history})},
                    coords={"y": [0.5], "x": [0.5, 1.5]})
    ds.to_netcdf(root / "01_data_prep" / "d.nc")
    (root / "01_data_prep" / "manifest.json").write_text(f'{{"started": "{history}"}}')
    return root


def test_identical_runs_compare_equal_ignoring_history_and_manifests(tmp_path):
    a = _make_run(tmp_path / "a")
    b = _make_run(tmp_path / "b", history="b")  # lineage and timestamps are not data
    assert compare_runs(a, b) == {}


def test_changed_value_and_column_and_missing_file_are_reported(tmp_path):
    a = _make_run(tmp_path / "a")
    b = _make_run(tmp_path / "b", value=1.0 + 1e-12, extra_column=True)
    (b / "01_data_prep" / "new.csv").write_text("q\n1\n")
    report = compare_runs(a, b)
    assert set(report) == {"01_data_prep/d.nc", "01_data_prep/t.csv", "01_data_prep/new.csv"}
    assert "values differ" in report["01_data_prep/d.nc"][0]
    assert "only in" in report["01_data_prep/new.csv"][0]
