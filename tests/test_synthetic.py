"""Tests of the synthetic study area: files, determinism, planted truth, plots, learnability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from pyproj import Transformer

from terracarbon.data import synthetic
from terracarbon.errors import InputDataError, ParameterError

TINY = dict(
    nx=60, ny=40, years=range(2016, 2022), plot_years=(2018, 2021), n_veg_plots=120,
    n_soil_plots=200, n_outliers=3, n_outside_plots=4, seed=7,
)
N_BOTH = 120 // 4  # min(n_veg, n_soil) // 4 sites carry both measurements


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> synthetic.StudyFiles:
    return synthetic.make_study(tmp_path_factory.mktemp("tiny") / "study", **TINY)


@pytest.fixture(scope="module")
def truth(tiny):
    return synthetic.open_truth(tiny.truth).load()


def read_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def all_rasters(files: synthetic.StudyFiles) -> list[Path]:
    return sorted(files.raster_dir.glob("*.tif"))


def zone_series(da, zones, zone: int) -> np.ndarray:
    """Mean over the pixels of ``zone`` for each year."""
    return da.where(zones == zone).mean(("y", "x")).values


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_arrays_and_other_seed_differs(tiny, tmp_path):
    again = synthetic.make_study(tmp_path / "again", **TINY)
    for a, b in zip(all_rasters(tiny), all_rasters(again), strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(read_band(a), read_band(b))
    assert tiny.plots.read_bytes() == again.plots.read_bytes()
    assert tiny.boundary.read_bytes() == again.boundary.read_bytes()
    t1, t2 = synthetic.open_truth(tiny.truth), synthetic.open_truth(again.truth)
    for name in ("veg_carbon_density", "soil_carbon_density", "landuse", "zones"):
        np.testing.assert_array_equal(t1[name].values, t2[name].values)

    other = synthetic.make_study(tmp_path / "other", **{**TINY, "seed": 8})
    assert not np.array_equal(read_band(tiny.raster_path("ndvi", 2020)),
                              read_band(other.raster_path("ndvi", 2020)))
    assert not np.array_equal(read_band(tiny.raster_path("dem")),
                              read_band(other.raster_path("dem")))
    assert tiny.plots.read_bytes() != other.plots.read_bytes()


class _ForegroundWriter:
    """What the generator did before its background writer: every write at once, in order."""

    def __init__(self, write):
        self._write = write

    def __enter__(self):
        return self._write

    def __exit__(self, *exc):
        return None


def test_background_writer_writes_the_same_files_as_writing_in_the_foreground(tiny, tmp_path,
                                                                              monkeypatch):
    from terracarbon.data.synthetic import generator

    monkeypatch.setattr(generator, "_BackgroundWriter", _ForegroundWriter)
    foreground = synthetic.make_study(tmp_path / "foreground", **TINY)
    rasters = all_rasters(foreground)
    assert len(rasters) == len(all_rasters(tiny)) > 6 * 8  # every layer of every year
    for a, b in zip(all_rasters(tiny), rasters, strict=True):
        assert a.name == b.name
        assert a.read_bytes() == b.read_bytes(), a.name


def test_a_failed_background_write_fails_the_study_and_leaves_it_incomplete(tmp_path,
                                                                            monkeypatch):
    from terracarbon.data.synthetic import generator

    write = generator._write_raster

    def failing(path, values, name, grid, history):
        if path.name == "ndvi_2019.tif":
            raise OSError(f"disk full writing {path.name}")
        write(path, values, name, grid, history)

    monkeypatch.setattr(generator, "_write_raster", failing)
    with pytest.raises(OSError, match="ndvi_2019.tif"):
        synthetic.make_study(tmp_path / "study", **TINY)
    assert not (tmp_path / "study" / "study.json").exists()  # a rerun regenerates it
    monkeypatch.setattr(generator, "_write_raster", write)
    files = synthetic.make_study(tmp_path / "study", **TINY)
    assert files.manifest.exists() and files.raster_path("ndvi", 2019).exists()


def test_rerun_with_same_arguments_is_skipped(tiny):
    before = {p: p.stat().st_mtime_ns for p in [*all_rasters(tiny), tiny.truth, tiny.plots,
                                                  tiny.boundary, tiny.manifest]}
    files = synthetic.make_study(tiny.root, **TINY)
    assert files == tiny
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_changed_arguments_regenerate(tmp_path):
    args = {**TINY, "nx": 20, "ny": 16, "years": range(2018, 2022), "n_veg_plots": 20,
            "n_soil_plots": 20, "n_outliers": 1}
    first = synthetic.make_study(tmp_path / "s", **args)
    dem_before = read_band(first.raster_path("dem"))
    second = synthetic.make_study(
        tmp_path / "s", **{**args, "seed": 99, "years": range(2019, 2022), "plot_years": [2021]}
    )
    recorded = json.loads(second.manifest.read_text())["arguments"]
    assert recorded["seed"] == 99 and recorded["years"] == [2019, 2020, 2021]
    assert not np.array_equal(dem_before, read_band(second.raster_path("dem")))
    # Rasters of the year dropped from the study are removed, not left stale.
    assert not first.raster_path("ndvi", 2018).exists()


# --------------------------------------------------------------------------- files and grid


def test_data_params_lists_every_layer_with_existing_files(tiny):
    data = synthetic.data_params(tiny)
    assert data["years"] == list(range(2016, 2022))
    assert Path(data["boundary"]) == tiny.boundary
    assert set(data["layers"]) == {
        "ndvi", "evi", "npp", "rsei", "temperature", "precipitation", "aridity", "landuse",
        "dem", "slope", "soil_type", "veg_type",
    }
    static = {"dem", "slope", "soil_type", "veg_type"}
    for name, layer in data["layers"].items():
        assert set(layer) == {"path", "kind", "units", "long_name"}
        assert ("{year}" in layer["path"]) == (name not in static)
        for year in data["years"]:
            assert Path(layer["path"].format(year=year)).exists()
    assert data["layers"]["npp"]["units"] == "g C m-2 yr-1"
    assert data["layers"]["landuse"]["kind"] == "categorical"
    assert data["plots"] == {
        "path": str(tiny.plots), "x_column": "lon", "y_column": "lat", "crs": "EPSG:4326",
        "year_column": "year", "id_column": "plot_id", "veg_column": "veg_carbon_t_ha",
        "soil_column": "soil_carbon_t_ha",
    }
    with pytest.raises(ParameterError, match="expected the StudyFiles"):
        synthetic.data_params(str(tiny.root))


def test_rasters_have_crs_grid_types_and_units(tiny):
    data = synthetic.data_params(tiny)
    for name, layer in data["layers"].items():
        with rasterio.open(layer["path"].format(year=2018)) as src:
            assert src.crs.to_epsg() == 32649
            assert (src.width, src.height) == (60, 40)
            assert src.res == (500.0, 500.0)
            # Upper-left corner at the requested origin: (300000, 2800000).
            assert tuple(src.transform)[:6] == (500.0, 0.0, 300000.0, 0.0, -500.0, 2800000.0)
            assert src.compression.name.lower() == "deflate"
            assert src.tags()["units"] == layer["units"]
            assert src.tags()["long_name"] == layer["long_name"]
            if layer["kind"] == "categorical":
                assert src.dtypes[0] == "int16" and src.nodata == 0
            else:
                assert src.dtypes[0] == "float32" and np.isnan(src.nodata)


def test_truth_is_on_the_raster_grid_with_units(tiny, truth):
    np.testing.assert_allclose(truth.x.values, 300250.0 + 500.0 * np.arange(60))
    np.testing.assert_allclose(truth.y.values, 2799750.0 - 500.0 * np.arange(40))
    assert truth.rio.crs.to_epsg() == 32649
    assert list(truth.year.values) == list(range(2016, 2022))
    for name in ("veg_carbon_density", "soil_carbon_density"):
        assert truth[name].dims == ("year", "y", "x")
        assert truth[name].attrs["units"] == "t C ha-1"
        assert "history" in truth[name].attrs
    assert list(truth.zones.attrs["flag_values"]) == [0, 1, 2, 3]
    assert truth.zones.attrs["flag_meanings"].split() == [
        "none", "restoration", "urbanising", "high_carbon_mountain"]
    # Land use in the truth equals the GeoTIFF inside the region, 0 outside.
    lu_file = read_band(tiny.raster_path("landuse", 2019))
    mask = truth.region_mask.values
    np.testing.assert_array_equal(truth.landuse.sel(year=2019).values[mask], lu_file[mask])
    assert (truth.landuse.values[:, ~mask] == 0).all()
    assert np.isnan(truth.veg_carbon_density.values[:, ~mask]).all()


def test_open_truth_missing_file(tmp_path):
    with pytest.raises(InputDataError, match="not found"):
        synthetic.open_truth(tmp_path / "nope.nc")


def test_boundary_is_valid_lonlat_polygon_matching_region_mask(tiny, truth):
    from rasterio import features

    collection = json.loads(tiny.boundary.read_text())
    geom = shapely.geometry.shape(collection["features"][0]["geometry"])
    assert geom.geom_type == "Polygon" and geom.is_valid
    lon, lat = np.asarray(geom.exterior.coords).T
    # UTM 49N between 108 and 114 deg E; 2.8e6 m northing is about 25.3 deg N.
    assert (lon > 108).all() and (lon < 114).all() and (lat > 24).all() and (lat < 26).all()
    # Independent mask: project the polygon back and burn pixel centres.
    bx, by = Transformer.from_crs("EPSG:4326", "EPSG:32649", always_xy=True).transform(lon, lat)
    mask = features.rasterize(
        [(shapely.Polygon(np.column_stack([bx, by])), 1)], out_shape=(40, 60),
        transform=rasterio.Affine(*tiny.transform), fill=0,
    ).astype(bool)
    np.testing.assert_array_equal(mask, truth.region_mask.values)
    assert 0.70 <= mask.mean() <= 0.85


# --------------------------------------------------------------------------- layer content


def test_layer_values_are_plausible(tiny):
    ranges = {  # (min allowed, max allowed) in the layer's units
        "ndvi": (0.0, 0.95), "evi": (0.0, 1.0), "npp": (0.0, 1600.0), "rsei": (0.0, 1.0),
        "temperature": (5.0, 27.0), "precipitation": (1200.0, 2400.0), "aridity": (0.5, 5.0),
        "landuse": (1, 8), "dem": (0.0, 1800.0), "slope": (0.0, 89.0), "soil_type": (1, 8),
        "veg_type": (1, 8),
    }
    data = synthetic.data_params(tiny)
    for name, (lo, hi) in ranges.items():
        values = read_band(data["layers"][name]["path"].format(year=2021))
        assert np.isfinite(values).all(), name
        assert values.min() >= lo and values.max() <= hi, (name, values.min(), values.max())
        assert np.unique(values).size > 3, name  # not a constant field
    assert read_band(tiny.raster_path("dem")).max() > 800  # a mountain range is present
    ndvi = read_band(tiny.raster_path("ndvi", 2021))
    lu = read_band(tiny.raster_path("landuse", 2021))
    assert ndvi[lu == synthetic.FOREST].mean() > ndvi[lu == synthetic.CROP].mean()
    assert ndvi[lu == synthetic.FOREST].mean() > ndvi[lu == synthetic.BUILT].mean() + 0.4


def test_slope_is_the_dem_gradient(tiny):
    dem = read_band(tiny.raster_path("dem")).astype(float)
    gy, gx = np.gradient(dem, 500.0)
    expected = np.degrees(np.arctan(np.hypot(gx, gy)))
    np.testing.assert_allclose(read_band(tiny.raster_path("slope")), expected, atol=1e-3)


def test_aridity_is_precipitation_over_thornthwaite_pet(tiny):
    # Worked example of the annual Thornthwaite PET at T = 22 degC:
    # I = 12 * 4.4**1.514 = 113.08; a = 0.9760 - 0.9859 + 2.0264 + 0.4924 = 2.5089;
    # PET = 12 * 16 * (220 / 113.08)**2.5089 = 12 * 16 * 5.311 = 1019.8 mm.
    def pet(t):
        heat = 12.0 * (t / 5.0) ** 1.514
        a = 6.75e-7 * heat**3 - 7.71e-5 * heat**2 + 1.792e-2 * heat + 0.49239
        return 192.0 * (10.0 * t / heat) ** a

    assert pet(22.0) == pytest.approx(1019.8, abs=1.0)
    t = read_band(tiny.raster_path("temperature", 2017)).astype(float)
    p = read_band(tiny.raster_path("precipitation", 2017)).astype(float)
    np.testing.assert_allclose(read_band(tiny.raster_path("aridity", 2017)), p / pet(t),
                               rtol=1e-5)


def test_temperature_lapse_rate_and_warming(tiny):
    dem = read_band(tiny.raster_path("dem")).astype(float)
    t = np.stack([read_band(tiny.raster_path("temperature", y)) for y in range(2016, 2022)])
    slope_per_m = np.polyfit(dem.ravel(), t.mean(axis=0).ravel(), 1)[0]
    assert slope_per_m == pytest.approx(-0.0065, abs=0.001)
    # The yearly anomalies are ~0.3 degC; the area mean stays near the 24 degC sea-level base.
    assert 14.0 < t.mean() < 25.0


# --------------------------------------------------------------------------- planted truth


def test_landuse_changes_in_the_planted_direction(truth):
    zones, lu = truth.zones, truth.landuse
    restoration = lu.where(zones == 1)
    woody = ((restoration == synthetic.FOREST) | (restoration == synthetic.SHRUB)).sum(("y", "x"))
    degraded = restoration.isin([synthetic.CROP, synthetic.GRASS, synthetic.BARE]).sum(("y", "x"))
    assert woody.values[0] == 0 and (np.diff(woody.values) >= 0).all()
    assert woody.values[-1] > 0.6 * (zones == 1).sum()
    assert (np.diff(degraded.values) <= 0).all()

    urban = (lu.where(zones == 2) == synthetic.BUILT).sum(("y", "x")).values
    assert urban[0] == 0 and (np.diff(urban) >= 0).all() and urban[-1] == (zones == 2).sum()

    # Outside the planted zones, land use is static; water is static everywhere.
    calm = (zones == 0) & truth.region_mask
    assert (lu.where(calm) == lu.isel(year=0).where(calm)).where(calm).all()
    water = lu == synthetic.WATER
    assert (water == water.isel(year=0)).all()


def test_truth_trends_in_zones(truth):
    years = truth.year.values.astype(float)
    total = truth.veg_carbon_density + truth.soil_carbon_density
    slope_restoration = np.polyfit(years, zone_series(total, truth.zones, 1), 1)[0]
    slope_urban = np.polyfit(years, zone_series(total, truth.zones, 2), 1)[0]
    assert slope_restoration > 1.0  # t C ha-1 per year
    assert slope_urban < -1.0
    # Soil lags land-use change: in the restoration zone it rises more slowly than vegetation.
    soil_rise = np.diff(zone_series(truth.soil_carbon_density, truth.zones, 1)[[0, -1]])[0]
    veg_rise = np.diff(zone_series(truth.veg_carbon_density, truth.zones, 1)[[0, -1]])[0]
    assert 0 < soil_rise < veg_rise


def test_mountain_cluster_holds_the_highest_carbon(truth):
    from scipy import ndimage

    total = (truth.veg_carbon_density + truth.soil_carbon_density).mean("year")
    means = {z: float(total.where(truth.zones == z).mean()) for z in range(4)}
    assert means[3] == max(means.values())
    assert means[3] > 1.5 * means[0]
    labels, n = ndimage.label(truth.zones.values == 3)
    largest = np.bincount(labels.ravel())[1:].max()
    assert largest >= 0.8 * (truth.zones.values == 3).sum()


def test_carbon_ranges_by_land_use(truth):
    veg = truth.veg_carbon_density.values
    soil = truth.soil_carbon_density.values
    lu = truth.landuse.values
    assert 40 < np.median(veg[lu == synthetic.FOREST]) < 120
    assert 3 < np.median(veg[lu == synthetic.CROP]) < 10
    assert np.median(veg[lu == synthetic.BUILT]) < 2
    land = (lu > 0) & (lu != synthetic.WATER)
    assert 20 < np.percentile(soil[land], 5) and np.percentile(soil[land], 95) < 170
    assert (veg[lu == synthetic.WATER] == 0).all()


# --------------------------------------------------------------------------- plots


def test_plot_counts_years_and_positions(tiny):
    plots = pd.read_csv(tiny.plots)
    assert list(plots.columns) == ["plot_id", "lon", "lat", "year", "veg_carbon_t_ha",
                                   "soil_carbon_t_ha"]
    assert plots.veg_carbon_t_ha.notna().sum() == 120
    assert plots.soil_carbon_t_ha.notna().sum() == 200
    assert (plots.veg_carbon_t_ha.notna() & plots.soil_carbon_t_ha.notna()).sum() == N_BOTH
    assert len(plots) == 120 + 200 - N_BOTH and plots.plot_id.is_unique
    assert set(plots.year) <= {2018, 2021}

    boundary = json.loads(tiny.boundary.read_text())["features"][0]["geometry"]
    inside = shapely.contains_xy(shapely.geometry.shape(boundary), plots.lon, plots.lat)
    assert (~inside).sum() == 4
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32649", always_xy=True).transform(
        plots.lon[~inside], plots.lat[~inside])
    x0, y0 = tiny.origin_xy
    in_grid = (x > x0) & (x < x0 + 60 * 500.0) & (y < y0) & (y > y0 - 40 * 500.0)
    assert not in_grid.any()  # the planted outside plots are off the grid


def test_plot_values_are_noisy_truth(tiny, truth):
    plots = pd.read_csv(tiny.plots)
    key = pd.read_csv(tiny.plots_truth)
    assert (key.plot_id == plots.plot_id).all()
    ok = ~key.outside_grid & ~key.veg_outlier & key.veg_truth_t_ha.notna()
    # The key's pixel and truth agree with truth.nc.
    sel = key[ok]
    from_cube = truth.veg_carbon_density.values[sel.year - 2016, sel.row, sel.col]
    np.testing.assert_allclose(sel.veg_truth_t_ha, from_cube, rtol=1e-6)
    # 10 % multiplicative noise: log ratios have sd ~0.1 (and are not zero).
    log_ratio = np.log(plots.veg_carbon_t_ha[ok] / key.veg_truth_t_ha[ok])
    assert 0.07 < log_ratio.std() < 0.13 and abs(log_ratio.mean()) < 0.03
    # Plot lon/lat fall in the recorded pixel.
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32649", always_xy=True).transform(
        plots.lon[ok], plots.lat[ok])
    col = np.floor((x - 300000.0) / 500.0).astype(int)
    row = np.floor((2800000.0 - y) / 500.0).astype(int)
    np.testing.assert_array_equal(col, sel.col)
    np.testing.assert_array_equal(row, sel.row)


def test_outliers_are_exactly_what_a_three_sigma_filter_removes(tiny):
    plots = pd.read_csv(tiny.plots)
    key = pd.read_csv(tiny.plots_truth)
    assert key.veg_outlier.sum() + key.soil_outlier.sum() == 3
    for column, flag in (("veg_carbon_t_ha", "veg_outlier"), ("soil_carbon_t_ha", "soil_outlier")):
        values = plots[column]
        z = (values - values.mean()) / values.std()
        np.testing.assert_array_equal((z.abs() > 3).to_numpy(), key[flag].to_numpy())
    assert "outlier" not in " ".join(plots.columns)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nx": 5}, "nx=5; expected an integer >= 10"),
        ({"ny": 9.5}, "ny=9.5; expected an integer"),
        ({"pixel_size_m": 0.0}, "pixel_size_m=0.0; expected a positive"),
        ({"pixel_size_m": -500}, "pixel_size_m=-500; expected a positive"),
        ({"crs": "EPSG:99999"}, "not a known CRS"),
        ({"crs": "EPSG:4326"}, "not projected"),
        ({"years": [2000, 2001]}, "at least 3 strictly increasing"),
        ({"years": [2001, 2000, 2002]}, "at least 3 strictly increasing"),
        ({"plot_years": (1999,)}, "subset of years"),
        ({"n_outliers": 500}, "at most 5 %"),
        ({"n_veg_plots": 2, "n_soil_plots": 2, "n_outside_plots": 4}, "no plot inside"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_bad_arguments_raise_parameter_error(tmp_path, kwargs, match):
    args = {**TINY, **kwargs}
    with pytest.raises(ParameterError, match=match):
        synthetic.make_study(tmp_path / "bad", **args)
    assert not (tmp_path / "bad").exists()


# --------------------------------------------------------------------------- learnability


@pytest.mark.slow
def test_random_forest_learns_carbon_from_covariates_at_plots(tmp_path):
    """A quick RF on 12 covariates at the plots reaches R2 >= 0.75 against the truth.

    Spatially blocked 5-fold CV (20 x 20 pixel blocks), 3-sigma outlier filter, plots off
    the grid dropped: what the modelling stage will do, with sklearn only.
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    files = synthetic.make_study(tmp_path / "medium", nx=160, ny=120, years=range(2000, 2022),
                                 seed=3)
    plots = pd.read_csv(files.plots)
    key = pd.read_csv(files.plots_truth)
    x, y = Transformer.from_crs("EPSG:4326", files.crs, always_xy=True).transform(
        plots.lon, plots.lat)
    col = np.floor((x - files.origin_xy[0]) / files.pixel_size_m).astype(int)
    row = np.floor((files.origin_xy[1] - y) / files.pixel_size_m).astype(int)
    on_grid = (col >= 0) & (col < files.nx) & (row >= 0) & (row < files.ny)
    assert (~on_grid).sum() == 5
    plots, key, row, col = plots[on_grid], key[on_grid], row[on_grid], col[on_grid]

    layers = synthetic.data_params(files)["layers"]
    features = np.empty((len(plots), len(layers)))
    for j, (name, layer) in enumerate(layers.items()):
        for year in (2018, 2021):
            at = (plots.year == year).to_numpy()
            band = read_band(Path(layer["path"].format(year=year)))
            features[at, j] = band[row[at], col[at]]
    groups = (row // 20) * 100 + col // 20

    truth = synthetic.open_truth(files.truth)
    total = (truth.veg_carbon_density + truth.soil_carbon_density).sum(("y", "x")).values
    total_before, total_after = total[0], total[-1]
    assert 0.005 < total_after / total_before - 1 < 0.08  # a few % over 22 years

    for target, true_col in (("veg_carbon_t_ha", "veg_truth_t_ha"),
                             ("soil_carbon_t_ha", "soil_truth_t_ha")):
        values = plots[target]
        z = (values - values.mean()) / values.std()
        use = (values.notna() & (z.abs() <= 3)).to_numpy()
        model = RandomForestRegressor(n_estimators=100, min_samples_leaf=2, n_jobs=1,
                                      random_state=0)
        predicted = cross_val_predict(model, features[use], values[use], groups=groups[use],
                                      cv=GroupKFold(n_splits=5))
        r2 = r2_score(key[true_col][use], predicted)
        assert r2 >= 0.75, (target, r2)
