"""Stage-level trend helpers: summary-series trend, steepest pixel, planted-zone table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymannkendall as pmk
import pytest
import xarray as xr
from scipy import stats

from terracarbon import trends
from terracarbon.errors import ParameterError

from helpers import as_map


def test_series_trend_matches_scipy_and_pymannkendall():
    rng = np.random.default_rng(3)
    years = np.arange(2000, 2022)
    values = 0.02 * (years - 2000) + rng.normal(0, 0.05, years.size)
    table = pd.DataFrame({"year": years[::-1], "I": values[::-1]})  # unsorted on purpose
    result = trends.series_trend(table, value="I")
    slope, intercept, *_ = stats.theilslopes(values, years)
    reference = pmk.original_test(values)
    assert result["slope"] == pytest.approx(slope, abs=1e-12)
    assert result["intercept"] == pytest.approx(intercept, abs=1e-9)
    assert result["z"] == pytest.approx(reference.z, abs=1e-9)
    assert result["p"] == pytest.approx(reference.p, abs=1e-9)
    assert result["trend"] == 1 and result["n_valid"] == 22


def test_series_trend_missing_column():
    with pytest.raises(ParameterError, match="column 'share' not in"):
        trends.series_trend(pd.DataFrame({"year": [1, 2, 3]}), value="share")


def test_steepest_pixel_finds_the_planted_pixel():
    rng = np.random.default_rng(0)
    values = rng.normal(50, 1, (15, 6, 7))
    values[:, 2, 3] += np.arange(15) * 3.0  # planted steepest increase: 3 per year
    values[:, 4, 1] += np.arange(15) * 1.0
    da = as_map(values, pixel_m=10.0, origin=(0.0, 60.0), years=np.arange(2000, 2015),
                units="t C ha-1", crs=None)
    mk = trends.sen_mk(da, min_valid=8)
    pixel = trends.steepest_pixel(mk)
    # 10 m pixels from the corner (0, 60): row 2 -> y = 60 - 25 = 35, col 3 -> x = 35
    assert (pixel["y"], pixel["x"]) == (35.0, 35.0)
    assert pixel["slope"] == pytest.approx(3.0, abs=0.3) and pixel["p"] < 0.01


def test_zone_trend_table_shares_per_zone():
    classes = xr.DataArray(np.array([[3, 3, 1], [2, 2, 0]], dtype=np.int16), dims=("y", "x"),
                           attrs={"flag_values": [1, 2, 3], "flag_meanings":
                                  "significant_decrease no_significant_trend significant_increase"})
    zones = xr.DataArray(np.array([[1, 1, 2], [1, 0, 2]]), dims=("y", "x"),
                         attrs={"flag_values": [0, 1, 2], "flag_meanings": "none restoration urban"})
    table = trends.zone_trend_table(classes, zones)
    # restoration: cells (0,0)=3, (0,1)=3, (1,0)=2 -> 2/3 increase, 1/3 none
    assert table.loc["restoration", "significant_increase"] == pytest.approx(200 / 3)
    assert table.loc["restoration", "no_significant_trend"] == pytest.approx(100 / 3)
    # urban: (0,2)=1 and (1,2)=0 (nodata, left out) -> 100 % decrease
    assert table.loc["urban", "significant_decrease"] == pytest.approx(100.0)
