"""Tests for the data side of the flux path (#15): tower tables, Rh and NEP, monthly -> annual.

Real FLUXNET2015 monthly files (../shared/realdata/fluxnet2015_monthly) are checked against
independent reads with the plain ``csv`` module; formulas against arithmetic written out by
hand; aggregation against NumPy reshapes.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from terracarbon import conventions
from terracarbon import units as tcu
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.flux import (
    heterotrophic_respiration,
    monthly_to_annual,
    net_ecosystem_production,
    read_flux_csv,
    read_fluxnet_monthly,
)

from helpers import assert_numpy_equals_dask

FLUXNET = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "fluxnet2015_monthly"
SITES = FLUXNET / "FluxNET_sites.csv"


# --------------------------------------------------------------------------- FLUXNET files
def _raw_rows(site: str) -> list[dict[str, str]]:
    """The rows of a site's MM file, read with the csv module (independent of pandas)."""
    (path,) = FLUXNET.glob(f"FLX_{site}_FLUXNET2015_SUBSET_MM_*.csv")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def towers() -> pd.DataFrame:
    if not SITES.is_file():
        pytest.skip(f"real data not found under {FLUXNET}")
    return read_fluxnet_monthly(FLUXNET, sites_table=SITES)


@pytest.mark.realdata
def test_fluxnet_reads_every_site_month(towers):
    files = sorted(FLUXNET.glob("FLX_*_FLUXNET2015_SUBSET_MM_*.csv"))
    assert len(files) == 24
    assert towers["site"].nunique() == 24
    # data lines counted with the csv module. SOURCE.md's per-site table sums to 2,988
    # (its "3,360 site-months in all" is an addition slip: 168+168+216+36+48+24+...+180)
    n_lines = sum(len(_raw_rows(f.name.split("_")[1])) for f in files)
    assert n_lines == 2988
    assert len(towers) == n_lines
    assert not towers.duplicated(["site", "time"]).any()
    assert (towers["time"].dt.day == 1).all()
    assert towers["time"].dtype == "datetime64[ns]"
    assert (towers.groupby("site").size()[["US-Ha1", "CN-Dan", "DE-Tha"]] == [264, 24, 228]).all()
    assert list(towers.columns[:8]) == ["site", "time", "year", "month", "days", "lon", "lat",
                                        "igbp"]


@pytest.mark.realdata
def test_fluxnet_hand_checked_values(towers):
    # CN-Din (Dinghushan), January 2003, first data line of its file:
    # NEE_VUT_REF = -2.19812 gC m-2 d-1, QC 0.947581 (>= 0.5, kept); 31 days
    # -> NEE = -2.19812 x 31 = -68.14172 g C m-2 month-1 (a sink: NEE < 0)
    # P_F = 0.897 mm d-1 -> 0.897 x 31 = 27.807 mm month-1;  TA_F = 12.574 degC (a mean, kept)
    row = towers[(towers["site"] == "CN-Din") & (towers["time"] == "2003-01-01")].iloc[0]
    assert row["nee"] == pytest.approx(-68.14172, rel=1e-12)
    assert row["p"] == pytest.approx(27.807, rel=1e-12)
    assert row["ta"] == pytest.approx(12.574)
    assert row["days"] == 31
    # and February 2003 from the raw file: 28 days x the daily rate
    raw = {r["TIMESTAMP"]: r for r in _raw_rows("CN-Din")}
    feb = towers[(towers["site"] == "CN-Din") & (towers["time"] == "2003-02-01")].iloc[0]
    assert feb["days"] == 28
    assert feb["gpp"] == pytest.approx(28 * float(raw["200302"]["GPP_NT_VUT_REF"]), rel=1e-12)
    assert feb["reco"] == pytest.approx(28 * float(raw["200302"]["RECO_NT_VUT_REF"]), rel=1e-12)
    assert feb["nee_qc"] == pytest.approx(float(raw["200302"]["NEE_VUT_REF_QC"]))
    # a leap February at US-Ha1 (2004): 29 days
    raw = {r["TIMESTAMP"]: r for r in _raw_rows("US-Ha1")}
    leap = towers[(towers["site"] == "US-Ha1") & (towers["time"] == "2004-02-01")].iloc[0]
    assert leap["days"] == 29
    assert leap["p"] == pytest.approx(29 * float(raw["200402"]["P_F"]), rel=1e-12)


@pytest.mark.realdata
def test_fluxnet_sites_come_from_the_sites_table(towers):
    with SITES.open(newline="") as f:
        table = {r["SITE_ID"]: r for r in csv.DictReader(f)}  # quoted commas in names
    assert set(towers["site"]) <= set(table)
    for site, rows in towers.groupby("site"):
        assert (rows["lat"] == float(table[site]["LOCATION_LAT"])).all()
        assert (rows["lon"] == float(table[site]["LOCATION_LONG"])).all()
        assert (rows["igbp"] == table[site]["IGBP"]).all()
    assert towers.loc[towers["site"] == "GF-Guy", "igbp"].iloc[0] == "EBF"


@pytest.mark.realdata
def test_fluxnet_qc_filter_matches_an_independent_count(towers):
    expected_nee = expected_p = 0
    for path in FLUXNET.glob("FLX_*_FLUXNET2015_SUBSET_MM_*.csv"):
        raw = pd.read_csv(path)
        ok = (raw["NEE_VUT_REF"] != -9999) & (raw["NEE_VUT_REF_QC"] >= 0.5)
        expected_nee += int(ok.sum())
        expected_p += int((raw["P_F"] != -9999).sum())
    assert 0 < expected_nee < len(towers)  # the filter removes something here
    assert int(towers["nee"].notna().sum()) == expected_nee
    # GPP/RECO have no QC column in FLUXNET2015: NEE_VUT_REF_QC stands for them
    assert (towers["gpp_qc"] == towers["nee_qc"]).all()
    assert int(towers["gpp"].notna().sum()) == expected_nee
    assert int(towers["p"].notna().sum()) == expected_p  # meteorology is not QC-filtered
    # the filtered rows are kept, with their QC showing why
    dropped = towers[towers["nee"].isna()]
    assert (dropped["nee_qc"] < 0.5).all()


@pytest.mark.realdata
def test_fluxnet_without_filter_and_subset_of_sites():
    if not SITES.is_file():
        pytest.skip("real data absent")
    df = read_fluxnet_monthly(FLUXNET, sites_table=SITES, qc_min=None, sites=["CN-Qia", "CN-Din"])
    assert sorted(df["site"].unique()) == ["CN-Din", "CN-Qia"]
    assert len(df) == 72
    assert df["nee"].notna().all()  # SOURCE.md: no -9999 in NEE_VUT_REF at these sites
    units = df.attrs["units"]
    assert units["nee"] == "g C m-2 month-1" and units["p"] == "mm month-1"
    assert units["ta"] == "degC"
    # the unit strings are read by terracarbon.units as a carbon flux and a depth rate
    tcu.check_dimension(units["gpp"], "g C m-2 yr-1", name="gpp")
    tcu.check_dimension(units["p"], "mm yr-1", name="p")
    assert "NEE < 0" in df.attrs["sign_convention"]


def _write_mm(folder: Path, site: str, columns: dict[str, list], years="2003-2003") -> Path:
    path = folder / f"FLX_{site}_FLUXNET2015_SUBSET_MM_{years}_1-4.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def _sites_table(folder: Path, sites: list[str]) -> Path:
    path = folder / "sites.csv"
    rows = ['SITE_ID,SITE_NAME,LOCATION_LAT,LOCATION_LONG,IGBP']
    rows += [f'{s},"Name, with comma",{10 + i},{100 + i},GRA' for i, s in enumerate(sites)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_fluxnet_reads_columns_by_name_and_filters_qc(tmp_path):
    # two files with the columns in different orders and one without NETRAD / LW_IN_F
    _write_mm(tmp_path, "XX-One", {
        "TIMESTAMP": ["200301", "200302"], "TA_F": [1.0, 2.0], "P_F": [2.0, -9999],
        "NEE_VUT_REF": [-1.0, 0.5], "NEE_VUT_REF_QC": [0.5, 0.49],
        "GPP_NT_VUT_REF": [3.0, 1.0], "RECO_NT_VUT_REF": [2.0, 1.5],
    })
    _write_mm(tmp_path, "XX-Two", {
        "RECO_NT_VUT_REF": [4.0], "GPP_NT_VUT_REF": [-9999], "NETRAD": [80.0],
        "NEE_VUT_REF_QC": [1.0], "NEE_VUT_REF": [-2.0], "TIMESTAMP": ["200307"],
    })
    df = read_fluxnet_monthly(tmp_path, sites_table=_sites_table(tmp_path, ["XX-One", "XX-Two"]),
                              qc_min=0.5)
    one = df[df["site"] == "XX-One"].reset_index(drop=True)
    # Jan: QC 0.5 == qc_min is kept: -1 x 31; Feb: QC 0.49 < 0.5 -> NaN, row kept
    assert one.loc[0, "nee"] == -31.0 and one.loc[0, "gpp"] == 93.0
    assert np.isnan(one.loc[1, "nee"]) and np.isnan(one.loc[1, "gpp"]) and len(one) == 2
    assert one.loc[0, "p"] == 62.0 and np.isnan(one.loc[1, "p"])  # -9999 -> NaN
    assert np.isnan(one["netrad"]).all()  # absent from this file
    two = df[df["site"] == "XX-Two"].iloc[0]
    assert two["reco"] == 124.0 and np.isnan(two["gpp"]) and two["netrad"] == 80.0
    assert two["lat"] == 11.0 and two["lon"] == 101.0
    assert np.isnan(two["ta"])


def test_fluxnet_errors_name_file_column_and_site(tmp_path):
    _write_mm(tmp_path, "XX-One", {"TIMESTAMP": ["200301"], "NEE_VUT_REF": [1.0],
                                   "NEE_VUT_REF_QC": [1.0], "RECO_NT_VUT_REF": [1.0]})
    table = _sites_table(tmp_path, ["XX-One"])
    with pytest.raises(InputDataError, match=r"FLX_XX-One.*missing column.*GPP_NT_VUT_REF"):
        read_fluxnet_monthly(tmp_path, sites_table=table)
    with pytest.raises(InputDataError, match=r"sites \['XX-Zzz'\].*sites with a file"):
        read_fluxnet_monthly(tmp_path, sites_table=table, sites=["XX-Zzz"])
    with pytest.raises(InputDataError, match=r"XX-One.*not in the sites table"):
        read_fluxnet_monthly(tmp_path, sites_table=_sites_table(tmp_path, ["YY-Two"]))
    with pytest.raises(ParameterError, match="qc_min=2"):
        read_fluxnet_monthly(tmp_path, sites_table=table, qc_min=2)
    with pytest.raises(InputDataError, match="holds no FLX_"):
        read_fluxnet_monthly(tmp_path / "..", sites_table=table)
    with pytest.raises(InputDataError, match="not named like"):
        read_fluxnet_monthly([table], sites_table=table)


# --------------------------------------------------------------------------- generic CSV
def test_flux_csv_converts_rates_to_monthly_totals(tmp_path):
    path = tmp_path / "fluxes.csv"
    path.write_text(
        "station,month,x,y,nee_umol,gpp_day,reco_month,rh_co2\n"
        "A,200307,110.0,23.0,1.0,2.0,50.0,44.0\n"
        "A,200402,110.0,23.0,-1.0,2.0,50.0,44.0\n"
        "B,200402,111.0,24.0,0.0,0.0,0.0,0.0\n"
    )
    df = read_flux_csv(path, site="station", time="month", lon="x", lat="y",
                       fluxes={"nee": "nee_umol", "gpp": "gpp_day", "reco": "reco_month",
                               "rh": "rh_co2"},
                       units={"nee": "umol CO2 m-2 s-1", "gpp": "g C m-2 d-1",
                              "reco": "g C m-2 month-1", "rh": "g CO2 m-2 d-1"})
    a = df[df["site"] == "A"].reset_index(drop=True)
    # July 2003: 1 umol CO2 m-2 s-1 = 1e-6 mol x 12.011 g C/mol x 86,400 s x 31 d
    #          = 32.171 g C m-2 month-1
    assert a.loc[0, "nee"] == pytest.approx(1e-6 * 12.011 * 86_400 * 31, rel=1e-12)
    assert a.loc[0, "nee"] == pytest.approx(32.1702624, rel=1e-7)
    # leap February 2004: 2 g C m-2 d-1 x 29 d = 58; -1 umol x ... x 29 d
    assert a.loc[1, "gpp"] == pytest.approx(58.0)
    assert a.loc[1, "nee"] == pytest.approx(-1e-6 * 12.011 * 86_400 * 29, rel=1e-12)
    # monthly totals stay as they are (not x days, not pint's 30.4375-day month)
    assert (a["reco"] == 50.0).all()
    # 44 g CO2 m-2 d-1 = 12 g C m-2 d-1; x 31 d = 372
    assert a.loc[0, "rh"] == pytest.approx(372.0)
    assert list(df["time"]) == list(pd.to_datetime(["2003-07-01", "2004-02-01", "2004-02-01"]))
    assert df.attrs["units"]["rh"] == conventions.FLUX_MONTHLY_UNITS


def test_flux_csv_dates_and_bad_units(tmp_path):
    path = tmp_path / "fluxes.csv"
    path.write_text("site,time,lon,lat,nee\nA,2003-07-15,1,2,1.5\nA,2003-08-02,1,2,1.0\n")
    df = read_flux_csv(path, fluxes={"nee": "nee"}, units={"nee": "gC m-2 d-1"})
    assert list(df["time"]) == list(pd.to_datetime(["2003-07-01", "2003-08-01"]))
    assert df["nee"].tolist() == [1.5 * 31, 1.0 * 31]
    with pytest.raises(InputDataError, match=r"column 'nee'.*without a substance label"):
        read_flux_csv(path, fluxes={"nee": "nee"}, units={"nee": "g m-2 d-1"})
    with pytest.raises(InputDataError, match=r"column 'nee'.*dimension"):
        read_flux_csv(path, fluxes={"nee": "nee"}, units={"nee": "W m-2"})
    with pytest.raises(InputDataError, match=r"missing column\(s\) \['NEE'\]"):
        read_flux_csv(path, fluxes={"nee": "NEE"}, units={"nee": "gC m-2 d-1"})
    with pytest.raises(InputDataError, match=r"no units for \['nee'\]"):
        read_flux_csv(path, fluxes={"nee": "nee"}, units={})
    path.write_text("site,time,lon,lat,nee\nA,200307,1,2,1\nA,200307,1,2,1\n")
    with pytest.raises(InputDataError, match="2003-07 appears more than once"):
        read_flux_csv(path, fluxes={"nee": "nee"}, units={"nee": "gC m-2 d-1"})


# --------------------------------------------------------------------------- respiration
def test_rh_pei2009_hand_worked():
    # T = 20 degC, P = 100 mm month-1:
    #   exp(0.0912 x 20) = exp(1.824)        = 6.196 60
    #   ln(0.3145 x 100 + 1) = ln(32.45)     = 3.479 70
    #   0.22 x (6.19660 + 3.47970) = 0.22 x 9.67630 = 2.128 79
    #   x 30 days = 63.8636;  x 46.5 % = 29.6966 g C m-2 month-1
    by_hand = 0.22 * (math.exp(0.0912 * 20) + math.log(0.3145 * 100 + 1)) * 30 * 0.465
    assert by_hand == pytest.approx(29.6966, abs=1e-4)
    rh = heterotrophic_respiration(np.array([20.0]), np.array([100.0]))
    assert float(rh[0]) == pytest.approx(by_hand, rel=1e-12)
    assert rh.attrs["units"] == "g C m-2 month-1" and rh.name == "rh"
    assert "Pei" in rh.attrs["references"]
    # T = 0, P = 0: 0.22 x (1 + 0) x 30 x 0.465 = 3.069
    assert float(heterotrophic_respiration([0.0], [0.0])[0]) == pytest.approx(3.069)


def test_rh_converts_units_and_annual_form():
    t_kelvin = xr.DataArray([293.15], dims="site", attrs={"units": "K", "history": "made T"})
    p_year = xr.DataArray([1200.0], dims="site", attrs={"units": "mm yr-1"})
    rh = heterotrophic_respiration(t_kelvin, p_year)  # 293.15 K = 20 degC; 1200/12 = 100 mm
    assert float(rh[0]) == pytest.approx(29.6966, abs=1e-4)
    assert rh.attrs["history"].startswith("made T\n")
    annual = heterotrophic_respiration([20.0], [1200.0], form="annual")
    # 12 x Rh_monthly(20, 1200 / 12) = 12 x 29.6966 = 356.359 g C m-2 yr-1
    assert float(annual[0]) == pytest.approx(356.359, abs=1e-3)
    assert annual.attrs["units"] == "g C m-2 yr-1"
    # Jensen: with a seasonal temperature cycle the sum of monthly Rh exceeds the annual form
    t = 10 + 12 * np.sin(2 * np.pi * (np.arange(12) - 3) / 12)
    monthly_sum = float(heterotrophic_respiration(t, np.full(12, 80.0)).sum())
    from_annual = float(heterotrophic_respiration([t.mean()], [960.0], form="annual")[0])
    assert monthly_sum > from_annual * 1.02


def test_rh_validation():
    with pytest.raises(InputDataError, match="precipitation: 1 negative"):
        heterotrophic_respiration(np.array([20.0, 5.0]), np.array([100.0, -1.0]))
    with pytest.raises(InputDataError, match="temperature"):
        heterotrophic_respiration(xr.DataArray([20.0], attrs={"units": "mm"}), [1.0])
    with pytest.raises(InputDataError, match="precipitation"):
        heterotrophic_respiration([20.0], xr.DataArray([1.0], attrs={"units": "degC"}))
    with pytest.raises(ParameterError, match="form='daily'"):
        heterotrophic_respiration([20.0], [1.0], form="daily")
    # dask: nothing computed until asked, then the same check raises
    p = xr.DataArray(dsa.from_array(np.array([1.0, -1.0]), chunks=1), dims="x")
    lazy = heterotrophic_respiration(xr.DataArray([20.0, 20.0], dims="x"), p)
    assert isinstance(lazy.data, dsa.Array)
    with pytest.raises(InputDataError, match="negative"):
        lazy.compute()


def test_rh_dask_equals_numpy():
    rng = np.random.default_rng(0)
    coords = {"time": pd.date_range("2001-01-01", periods=12, freq="MS")}
    t = xr.DataArray(rng.uniform(-10, 30, (12, 4, 5)), dims=("time", "y", "x"), coords=coords,
                     attrs={"units": "degC"}, name="ta")
    p = xr.DataArray(rng.uniform(0, 300, (12, 4, 5)), dims=("time", "y", "x"), coords=coords,
                     attrs={"units": "mm month-1"}, name="p")
    assert_numpy_equals_dask(heterotrophic_respiration, t, p, chunks={"time": 3, "y": 2})


def test_nep_units_and_periods():
    npp = xr.DataArray([500.0, 200.0], dims="year", coords={"year": [2001, 2002]},
                       attrs={"units": "g C m-2 yr-1", "history": "npp made"})
    rh = xr.DataArray([3.0, 3.0], dims="year", coords={"year": [2001, 2002]},
                      attrs={"units": "t C ha-1 yr-1"})  # 3 t C ha-1 = 300 g C m-2
    nep = net_ecosystem_production(npp, rh)
    assert nep.values.tolist() == pytest.approx([200.0, -100.0])  # 2001 a sink, 2002 a source
    assert nep.attrs["units"] == "g C m-2 yr-1" and "sink" in nep.attrs["long_name"]
    assert "npp made" in nep.attrs["history"]
    monthly = rh.assign_attrs(units="g C m-2 month-1")
    with pytest.raises(InputDataError, match="npp is per year.*rh is per month"):
        net_ecosystem_production(npp, monthly)
    with pytest.raises(InputDataError, match="rh"):
        net_ecosystem_production(npp, rh.assign_attrs(units="t C ha-1"))  # a stock
    with pytest.raises(InputDataError, match="units"):
        net_ecosystem_production(npp, xr.DataArray([1.0, 1.0], dims="year"))
    with pytest.raises(InputDataError, match="different coordinates"):
        net_ecosystem_production(npp, rh.assign_coords(year=[2002, 2003]))


# --------------------------------------------------------------------------- monthly -> annual
def _monthly(values, *, units, name, start="2001-01-01"):
    values = np.asarray(values, dtype="float64")
    time = pd.date_range(start, periods=values.shape[0], freq="MS")
    dims = ("time", "y", "x")[: values.ndim]
    return xr.DataArray(values, dims=dims, coords={"time": time}, name=name,
                        attrs={"units": units, "long_name": name})


def test_annual_sum_of_constant_months_is_twelve_times():
    nee = _monthly(np.full((24, 2, 3), -10.0), units="g C m-2 month-1", name="nee")
    out = monthly_to_annual(nee)
    # 12 months x -10 g C m-2 month-1 = -120 g C m-2 yr-1, every pixel, both years
    assert out.dims == ("year", "y", "x") and out["year"].values.tolist() == [2001, 2002]
    assert (out.values == -120.0).all()
    assert out.attrs["units"] == "g C m-2 yr-1" and out.attrs["cell_methods"] == "time: sum"
    p = monthly_to_annual(_monthly(np.full(12, 50.0), units="mm month-1", name="rain"))
    assert float(p[0]) == 600.0 and p.attrs["units"] == "mm yr-1"  # summed by its units


def test_annual_missing_month_and_partial_year():
    values = np.full(24, 10.0)
    values[14] = np.nan  # March 2002
    nee = _monthly(values, units="g C m-2 month-1", name="nee")
    out = monthly_to_annual(nee)
    assert float(out.sel(year=2001)) == 120.0 and np.isnan(float(out.sel(year=2002)))
    loose = monthly_to_annual(nee, min_months=11)
    assert float(loose.sel(year=2002)) == 110.0  # a partial total, not scaled up
    # a record starting in March: the first year has 10 months only
    late = monthly_to_annual(_monthly(np.ones(22), units="g C m-2 month-1", name="gpp",
                                      start="2001-03-01"))
    assert np.isnan(float(late.sel(year=2001))) and float(late.sel(year=2002)) == 12.0


def test_annual_mean_of_states_and_rules():
    # temperature 1, 2, ..., 12 degC -> annual mean 6.5 degC (units kept)
    ta = monthly_to_annual(_monthly(np.arange(1.0, 13.0), units="degC", name="ta"))
    assert float(ta[0]) == 6.5 and ta.attrs["units"] == "degC"
    assert ta.attrs["cell_methods"] == "time: mean"
    ds = xr.Dataset({
        "nee": _monthly(np.full(12, 2.0), units="g C m-2 month-1", name="nee"),
        "ndvi": _monthly(np.linspace(0.2, 0.8, 12), units="1", name="ndvi").assign_attrs(
            cell_methods="area: mean"),
        "sw_in": _monthly(np.full(12, 200.0), units="W m-2", name="sw_in"),
        "mask": xr.DataArray(True),
    })
    out = monthly_to_annual(ds)
    assert float(out["nee"][0]) == 24.0 and float(out["sw_in"][0]) == 200.0
    assert float(out["ndvi"][0]) == pytest.approx(0.5)
    assert out["ndvi"].attrs["cell_methods"] == "area: mean time: mean"
    assert bool(out["mask"])  # no time dim: passed through
    # rules override: the mean monthly NEE keeps its per-month units
    mean = monthly_to_annual(ds, rules={"nee": "mean"})
    assert float(mean["nee"][0]) == 2.0 and mean["nee"].attrs["units"] == "g C m-2 month-1"


def test_annual_equals_a_numpy_reshape():
    rng = np.random.default_rng(1)
    values = rng.normal(5, 3, (36, 3, 4))
    out = monthly_to_annual(_monthly(values, units="g C m-2 month-1", name="nep"))
    np.testing.assert_allclose(out.values, values.reshape(3, 12, 3, 4).sum(axis=1), rtol=1e-12)
    ta = monthly_to_annual(_monthly(values, units="degC", name="ta"))
    np.testing.assert_allclose(ta.values, values.reshape(3, 12, 3, 4).mean(axis=1), rtol=1e-12)


def test_annual_dask_equals_numpy():
    rng = np.random.default_rng(2)
    values = rng.normal(5, 3, (24, 4, 6))
    values[5, 0, 0] = np.nan
    ds = xr.Dataset({"nee": _monthly(values, units="g C m-2 month-1", name="nee"),
                     "ta": _monthly(values, units="degC", name="ta")})
    lazy = assert_numpy_equals_dask(monthly_to_annual, ds, chunks={"time": 6, "y": 2, "x": 3},
                                    rtol=1e-12)  # sums in another order: last-bit differences
    assert lazy["nee"].chunks[1:] == ((2, 2), (3, 3))  # spatial chunks kept


def test_annual_validation():
    p_daily = _monthly(np.ones(12), units="mm d-1", name="p")
    with pytest.raises(InputDataError, match=r"'p' is summed.*'mm d-1' are not per month"):
        monthly_to_annual(p_daily)
    assert float(monthly_to_annual(p_daily, rules={"p": "mean"})[0]) == 1.0
    with pytest.raises(InputDataError, match="no 'time' dimension"):
        monthly_to_annual(xr.DataArray([1.0], dims="year", attrs={"units": "1"}))
    twice = _monthly(np.ones(3), units="degC", name="ta").assign_coords(
        time=pd.to_datetime(["2001-01-01", "2001-01-15", "2001-02-01"]))
    with pytest.raises(InputDataError, match="2001-01"):
        monthly_to_annual(twice)
    with pytest.raises(InputDataError, match="no 'units'"):
        monthly_to_annual(_monthly(np.ones(12), units="1", name="foo").drop_attrs())
    with pytest.raises(ParameterError, match="min_months=13"):
        monthly_to_annual(p_daily, min_months=13)
    with pytest.raises(ParameterError, match=r"rules: \['nope'\]"):
        monthly_to_annual(p_daily, rules={"nope": "sum"})
    with pytest.raises(ParameterError, match="median"):
        monthly_to_annual(p_daily, rules="median")
