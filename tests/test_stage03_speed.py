"""Stage 03 does each piece of work once (issue #19): the single pass over the bootstrap
members gives the numbers of the separate passes, each member predicts each year once, and
thinned members keep their forests' first trees."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon import uncertainty
from terracarbon.models.average import AveragedModel
from terracarbon.models.baselines import MultipleLinear
from terracarbon.models.rf import RandomForestCarbon

YEARS = (2000, 2001, 2002, 2003)


def _cube(ny=36, nx=42):
    yy, xx = np.mgrid[0:ny, 0:nx]
    f = np.stack([np.sin(yy / 7.0) + np.cos(xx / 5.0) + 2.0 + 0.15 * k
                  for k in range(len(YEARS))]).astype("float32")
    g = np.stack([(yy + xx) / 40.0 + 0.05 * k for k in range(len(YEARS))]).astype("float32")
    mask = (yy - ny / 2) ** 2 + (xx - nx / 2) ** 2 < (0.48 * nx) ** 2
    return xr.Dataset({"f": (("year", "y", "x"), f, {"units": "1"}),
                       "g": (("year", "y", "x"), g, {"units": "1"}),
                       "region_mask": (("y", "x"), mask)},
                      coords={"year": list(YEARS), "y": 5000.0 - np.arange(ny) * 100.0,
                              "x": np.arange(nx) * 100.0})


def _plots(cube, n=240, seed=0):
    rng = np.random.default_rng(seed)
    r, c = rng.integers(0, cube.sizes["y"], n), rng.integers(0, cube.sizes["x"], n)
    year = rng.choice(YEARS, n)
    k = np.searchsorted(YEARS, year)
    f, g = cube["f"].values[k, r, c], cube["g"].values[k, r, c]
    return pd.DataFrame({"year": year, "f": f, "g": g,
                         "veg_carbon_t_ha": 30 * f + 10 * g + rng.normal(0, 3, n),
                         "soil_carbon_t_ha": 50 + 8 * g + rng.normal(0, 2, n)})


def _average(plots, seed, rows=None):
    table = plots if rows is None else plots.iloc[rows]
    return AveragedModel([MultipleLinear(["f", "g"]),
                          RandomForestCarbon(["f", "g"], n_estimators=12, min_samples_leaf=5,
                                             seed=seed, n_jobs=1)]).fit(table)


class _Counting:
    """Delegates to a model and counts the years it predicts, on the sample and on maps."""

    def __init__(self, model):
        self.model, self.targets, self.features = model, model.targets, model.features
        self.sample_years, self.map_years = Counter(), Counter()

    def predict_samples(self, table, cube=None):
        self.sample_years.update(int(y) for y in np.unique(table["year"]))
        return self.model.predict_samples(table, cube)

    def predict_map(self, cube, year, **kwargs):
        self.map_years[int(year)] += 1
        return self.model.predict_map(cube, year, **kwargs)


def _study():
    cube = _cube()
    plots = _plots(cube)
    central = _average(plots, seed=0)
    rng = np.random.default_rng(3)
    members = [_average(plots, seed=i + 1, rows=rng.integers(0, len(plots), len(plots)))
               for i in range(5)]
    area = xr.DataArray(np.full((cube.sizes["y"], cube.sizes["x"]), 1.0), dims=("y", "x"))
    maps = xr.concat([central.predict_map(cube, y).expand_dims(year=[y]) for y in YEARS], "year")
    mask = cube["region_mask"].values
    rows = []
    for y in YEARS:
        for pool in ("veg", "soil"):
            rows.append({"year": y, "pool": pool, "area_ha": float(mask.sum()),
                         "storage_Tg": float(np.nansum(maps[f"{pool}_carbon_density"].sel(year=y))) / 1e6})
    totals = pd.DataFrame(rows)
    totals = pd.concat([totals, totals.groupby("year", as_index=False).agg(
        storage_Tg=("storage_Tg", "sum"), area_ha=("area_ha", "first")).assign(pool="total")],
        ignore_index=True)
    change = pd.DataFrame([{"pool": p, "start_year": YEARS[0], "end_year": YEARS[-1],
                            "period": "whole",
                            "change_Tg": float(totals.query("pool == @p and year == @YEARS[-1]").storage_Tg.iloc[0]
                                               - totals.query("pool == @p and year == @YEARS[0]").storage_Tg.iloc[0])}
                           for p in ("veg", "soil", "total")])
    return cube, central, members, area, totals, change


def test_single_pass_equals_the_separate_passes_and_predicts_each_year_once():
    cube, central, members, area, totals, change = _study()
    kwargs = dict(interval=0.9, year_error={"veg": 0.02, "soil": 0.01}, seed=7, step=3)
    lv, ch, sample = uncertainty.regional_intervals(totals, change, central, members, cube,
                                                    area, **kwargs)
    pixels = uncertainty.pixel_change_interval(members, cube, start=YEARS[0], end=YEARS[-1],
                                               interval=0.9)
    counted = [_Counting(m) for m in members]
    one = uncertainty.ensemble_intervals(totals, change, central, counted, cube, area,
                                         start=YEARS[0], end=YEARS[-1], **kwargs)
    # identical numbers, not merely close: the work is reorganised, not changed
    pd.testing.assert_frame_equal(one.totals, lv)
    pd.testing.assert_frame_equal(one.change, ch)
    xr.testing.assert_identical(one.sample, sample)
    xr.testing.assert_identical(one.pixel_change, pixels)
    inside = cube["region_mask"].values
    lo = one.pixel_change["total_carbon_density_change_lower"].values[inside]
    hi = one.pixel_change["total_carbon_density_change_upper"].values[inside]
    assert np.isfinite(one.change["lower_Tg"]).all() and (hi >= lo).all() and (hi > lo).any()
    for member in counted:  # every year sampled once; the change years mapped once
        assert member.sample_years == Counter(YEARS)
        assert member.map_years == Counter({YEARS[0]: 1, YEARS[-1]: 1})
    # without change years: the regional part alone
    only = uncertainty.ensemble_intervals(totals, change, central, members, cube, area, **kwargs)
    assert only.pixel_change is None
    pd.testing.assert_frame_equal(only.totals, lv)


def test_a_forest_of_fewer_trees_is_the_first_trees_of_the_larger_one():
    """What ``models.ensemble_member_trees`` relies on: with the same seed, a k-tree forest
    is the first k trees of the n-tree forest, so thinner members are the same fit, cheaper."""
    plots = _plots(_cube())
    full = RandomForestCarbon(["f", "g"], n_estimators=12, min_samples_leaf=5, seed=4,
                              n_jobs=1).fit(plots)
    few = RandomForestCarbon(["f", "g"], n_estimators=5, min_samples_leaf=5, seed=4,
                             n_jobs=1).fit(plots)
    assert len(few.forests_["soil"].estimators_) == 5
    X = plots[["f", "g"]].to_numpy(np.float32)
    by_hand = np.mean([t.predict(X) for t in full.forests_["soil"].estimators_[:5]], axis=0)
    np.testing.assert_allclose(few.predict_samples(plots)[:, 1], by_hand, rtol=1e-12)
    assert not np.allclose(full.predict_samples(plots)[:, 1], by_hand)  # 12 trees differ


def test_member_settings_give_the_members_forests_their_own_tree_count():
    from terracarbon.models.training import _member_settings, model_factory

    settings = {"features": ["f", "g"],
                "rf": {"n_estimators": 12, "max_depth": None, "min_samples_leaf": 5},
                "ensemble_member_trees": 5}
    assert _member_settings({**settings, "ensemble_member_trees": None})["rf"]["n_estimators"] == 12
    member = model_factory("rf", features=["f", "g"], settings=_member_settings(settings),
                           seed=4, targets=("veg", "soil"))()
    central = model_factory("rf", features=["f", "g"], settings=settings, seed=4,
                            targets=("veg", "soil"))()
    assert (member.n_estimators, central.n_estimators) == (5, 12)
    assert settings["rf"]["n_estimators"] == 12  # the mapped model's section is not changed


# --------------------------------------------------------------- the change bounds by chunk


class _Smoothing:
    """A model that reads context, as a network does: density is the 3 x 3 mean of ``f``
    (``halo`` = 1 px), so a block mapped without its context differs at the block's edge."""

    features, targets, halo = ["f"], ["veg", "soil"], 1

    def __init__(self, gain: float):
        self.gain = gain

    def predict_map(self, cube, year, **kwargs):
        f = cube["f"].sel(year=year).values.astype("float64")
        ny, nx = f.shape
        edge = np.pad(f, 1, mode="edge")  # the same sum order at every pixel, block or grid
        mean = sum(edge[1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
        veg = (self.gain * mean).astype("float32")
        soil = (2.0 * self.gain * f).astype("float32")
        coords = {"y": cube["y"], "x": cube["x"]}
        return xr.Dataset({"veg_carbon_density": (("y", "x"), veg),
                           "soil_carbon_density": (("y", "x"), soil)}, coords=coords)


def test_change_bounds_by_chunk_equal_the_whole_grid():
    """#17: on a chunked cube the per-pixel change bounds are one task per spatial chunk;
    each reads its chunk plus the members' context and gives the whole grid's numbers."""
    cube, _, members, *_ = _study()
    chunked = cube.chunk({"year": 1, "y": 10, "x": 16})
    for group in (members, [_Smoothing(g) for g in (0.8, 1.0, 1.1, 1.3, 0.9)]):
        whole = uncertainty.pixel_change_interval(group, cube, start=YEARS[0], end=YEARS[-1],
                                                  interval=0.8)
        lazy = uncertainty.pixel_change_interval(group, chunked, start=YEARS[0],
                                                 end=YEARS[-1], interval=0.8)
        bound = lazy["total_carbon_density_change_upper"]
        assert bound.chunks == ((10, 10, 10, 6), (16, 16, 10))  # nothing computed yet
        xr.testing.assert_identical(whole, lazy.compute())
        assert (whole["total_carbon_density_change_upper"]
                > whole["total_carbon_density_change_lower"]).any()


def test_change_bounds_hold_a_few_chunks_never_the_members_maps(tmp_path):
    """#17: writing the change bounds of 4x the pixels (same chunks) costs about the same
    peak memory, and a fraction of what the same bounds cost computed on the whole grid at
    once (which holds every member's change maps of the grid: members x pools x pixels;
    121 against 16 MB at 800 x 800 px when this test was written)."""
    import tracemalloc

    import dask.array as dsa

    plots = _plots(_cube())
    members = [MultipleLinear(["f", "g"]).fit(plots.sample(frac=1.0, replace=True,
                                                           random_state=i)) for i in range(4)]

    def peak(n: int, *, whole_grid: bool = False) -> int:
        rng = dsa.random.default_rng(2)  # each chunk drawn when read
        shape, chunks = (len(YEARS), n, n), (1, 200, 200)
        cube = xr.Dataset(
            {"f": (("year", "y", "x"), rng.random(shape, chunks=chunks, dtype=np.float32)),
             "g": (("year", "y", "x"), rng.random(shape, chunks=chunks, dtype=np.float32))},
            coords={"year": list(YEARS), "y": 1e6 - 100.0 * np.arange(n),
                    "x": 100.0 * np.arange(n)})
        if whole_grid:
            cube = cube.compute()  # in memory: one block, the members' maps of the grid
        tracemalloc.start()
        try:
            bounds = uncertainty.pixel_change_interval(members, cube, start=YEARS[0],
                                                       end=YEARS[-1], interval=0.9)
            bounds.to_zarr(tmp_path / f"bounds_{n}_{whole_grid}.zarr")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(400), peak(800)
    assert large < 1.5 * small, (small / 1e6, large / 1e6)
    whole = peak(800, whole_grid=True)
    assert large < whole / 3, (large / 1e6, whole / 1e6)
    written = xr.open_zarr(tmp_path / "bounds_800_False.zarr")
    assert int(written["total_carbon_density_change_upper"].isnull().sum()) == 0


def test_the_ensemble_sample_reports_each_model(tmp_path, monkeypatch):
    """#17: the pass over the central model and the members (minutes at China scale) names
    the model it predicts and counts them on the console."""
    from terracarbon import progress

    events_file = tmp_path / ".progress.tmp-test"
    monkeypatch.delenv(progress.ENV_MODE, raising=False)
    monkeypatch.setenv(progress.ENV_FILE, str(events_file))
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)
    cube, central, members, area, totals, change = _study()
    uncertainty.ensemble_intervals(totals, change, central, members, cube, area, interval=0.9,
                                   seed=7, step=3)
    events = progress.read_events(events_file)[0]
    start = next(e for e in events if e["event"] == "start" and e["name"] == "ensemble sample")
    assert start["total"] == len(members) + 1 and start["unit"] == "models"
    ends = [e for e in events if e["event"] == "end" and e["id"] == start["id"]]
    assert ends[0]["done"] == len(members) + 1
