"""Tests of the CNN and CNN-TCN carbon models (the terracarbon.models.cnn package).

Fixtures: a 40 x 40 px cube, 3 years, 6 covariates (incl. categorical land use), a region
mask and a NaN hole; 200 plots whose carbon densities are a planted function of the
covariates in a 3 x 3 neighbourhood, with soil carbon unmeasured at half of the plots.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from scipy.ndimage import uniform_filter

from terracarbon.errors import ModelError, ParameterError
from terracarbon.models.base import CarbonModel
from terracarbon.models.cnn import CnnCarbon, CnnTcnCarbon, TemporalConv, masked_mse
from terracarbon.models.cnn.encoding import InputEncoder
from terracarbon.models.cnn.mapping import empirical_quantiles
from terracarbon.models.cnn.patches import cut_patches, pad_raw

from helpers import make_cube, smooth_field

YEARS = (2001, 2002, 2003)
NY = NX = 40
TARGET_COLS = ["veg_carbon_t_ha", "soil_carbon_t_ha"]


def covariate_cube(seed: int = 0) -> xr.Dataset:
    """Six covariates on a 40 x 40 grid of 500 m pixels, a region mask and a NaN hole."""
    rng = np.random.default_rng(seed)
    nt = len(YEARS)

    def smooth(shape: tuple[int, ...], size: int = 5) -> np.ndarray:
        return smooth_field(rng, shape, size, kernel="box")

    ndvi = (0.5 + 0.15 * smooth((nt, NY, NX))).astype(np.float32)
    npp = (400 + 80 * smooth((nt, NY, NX))).astype(np.float32)
    temp = (15 + 2 * smooth((nt, NY, NX))).astype(np.float32)
    dem = (300 + 100 * smooth((NY, NX), 7)).astype(np.float32)
    slope = np.abs(5 + 3 * smooth((NY, NX))).astype(np.float32)
    landuse = (np.digitize(smooth((nt, NY, NX), 7), [-0.5, 0.0, 0.5]) + 1).astype(np.int16)
    region = np.ones((NY, NX), bool)
    region[:4, :6] = False
    for a in (ndvi, npp, temp):
        a[:, ~region] = np.nan
    dem[~region] = np.nan
    slope[~region] = np.nan
    landuse[:, ~region] = 0
    ndvi[1, 20:22, 30:33] = np.nan  # a hole inside the region
    return make_cube({
        "ndvi": (ndvi, "1", "NDVI"),
        "npp": (npp, "g C m-2 yr-1", "NPP"),
        "temperature": (temp, "degC", "T"),
        "dem": (dem, "m", "elevation"),
        "slope": (slope, "degree", "slope"),
        "landuse": (landuse, "1", "land use"),
        "region_mask": (region, "1", "study region"),
    }, years=YEARS, pixel_m=500.0, crs=None)


def planted_truth(cube: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Veg depends on the 3 x 3 mean NDVI and land use; soil on DEM and NPP (t C ha-1)."""
    ndvi = np.nan_to_num(cube["ndvi"].values.astype(np.float64), nan=0.5)
    veg = 10 + 80 * uniform_filter(ndvi, size=3, axes=(-2, -1)) + 8 * (cube["landuse"].values == 1)
    soil = 40 + 0.05 * (cube["dem"].values - 300)[None] + 0.02 * (cube["npp"].values - 400)
    return veg, soil


def make_samples(cube: xr.Dataset, n: int = 200, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(4, NY, n), rng.integers(0, NX, n)
    yi = rng.integers(0, len(YEARS), n)
    veg, soil = planted_truth(cube)
    df = pd.DataFrame({
        "plot_id": [f"p{i}" for i in range(n)], "year": np.asarray(YEARS)[yi],
        "row": rows, "col": cols,
        "veg_carbon_t_ha": veg[yi, rows, cols], "soil_carbon_t_ha": soil[yi, rows, cols],
    })
    df["soil_true"] = df["soil_carbon_t_ha"]
    df.loc[df.index[: n // 2], "soil_carbon_t_ha"] = np.nan  # soil measured at half the plots
    return df


def all_pixels(year: int) -> pd.DataFrame:
    rr, cc = np.meshgrid(np.arange(NY), np.arange(NX), indexing="ij")
    return pd.DataFrame({"row": rr.ravel(), "col": cc.ravel(), "year": year})


def r2(obs: np.ndarray, pred: np.ndarray) -> float:
    ok = np.isfinite(obs) & np.isfinite(pred)
    return 1 - ((obs[ok] - pred[ok]) ** 2).sum() / ((obs[ok] - obs[ok].mean()) ** 2).sum()


def assert_map_equals_patchwise(model, cube: xr.Dataset, year: int) -> None:
    ds = model.predict_map(cube, year)
    patchwise = model.predict_samples(all_pixels(year), cube)
    for j, var in enumerate(["veg_carbon_density", "soil_carbon_density"]):
        dense = ds[var].values.ravel()
        expected = patchwise[:, j].copy()
        expected[~cube["region_mask"].values.ravel()] = np.nan
        np.testing.assert_array_equal(np.isnan(dense), np.isnan(expected))
        assert np.nanmax(np.abs(dense - expected)) <= 1e-4


@pytest.fixture(scope="module")
def cube() -> xr.Dataset:
    return covariate_cube()


@pytest.fixture(scope="module")
def samples(cube) -> pd.DataFrame:
    return make_samples(cube)


@pytest.fixture(scope="module")
def cnn(cube, samples) -> CnnCarbon:
    # a higher lr than the default 1e-4 so the tiny data set trains in a few seconds
    return CnnCarbon(lr=3e-3, epochs=25, patience=25, tile_size=16, seed=0).fit(samples, cube)


@pytest.fixture(scope="module")
def tcn(cube, samples) -> CnnTcnCarbon:
    return CnnTcnCarbon(lr=3e-3, epochs=4, tile_size=16, seed=0).fit(samples, cube)


# ---- loss and encoding ---------------------------------------------------------------------


def test_masked_mse_matches_hand_computation_and_ignores_nan():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    target = torch.tensor([[0.0, np.nan], [5.0, np.nan]])
    loss = masked_mse(pred, target)
    # observed: (1 - 0)^2 + (3 - 5)^2 = 1 + 4 over 2 entries -> 2.5
    assert float(loss.detach()) == pytest.approx(2.5)
    loss.backward()
    # d/dpred of the mean over observed entries: 2 (pred - target) / 2; NaN column -> 0
    np.testing.assert_allclose(pred.grad.numpy(), [[1.0, 0.0], [-2.0, 0.0]])
    assert float(masked_mse(pred.detach(), torch.full((2, 2), np.nan))) == 0.0


def test_encoder_scales_one_hots_and_flags_missing():
    # feature a: training values 1, 3 -> mean 2, sd 1; feature lu: classes 1, 2 (0 = nodata)
    raw = np.array([[1.0, 3.0, np.nan], [1.0, 2.0, 0.0]], dtype=np.float32)  # (F, pixels)
    enc = InputEncoder(["a", "lu"], ["lu"]).fit(raw, feature_axis=0)
    assert enc.means == {"a": 2.0} and enc.sds == {"a": 1.0} and enc.classes == {"lu": [1, 2]}
    out = enc.encode(raw, feature_axis=0)
    assert enc.channel_names == ["a", "lu=1", "lu=2", "valid"]
    np.testing.assert_array_equal(out, [[-1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])


def test_patches_beyond_the_edge_are_missing():
    raw = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    patches = cut_patches(pad_raw(raw, 1), np.array([0, 2]), np.array([0, 3]), 3)
    assert patches.shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(patches[1], raw[:, 1:4, 2:5])
    assert np.isnan(patches[0][:, 0, :]).all() and np.isnan(patches[0][:, :, 0]).all()
    np.testing.assert_array_equal(patches[0][:, 1:, 1:], raw[:, :2, :2])


# ---- CNN -----------------------------------------------------------------------------------


def test_cnn_implements_the_protocol_and_records_learning_curves(cnn):
    assert isinstance(cnn, CarbonModel) and cnn.name == "cnn"
    h = cnn.history_
    assert len(h["epoch"]) == len(h["train_loss"]) == len(h["val_loss"]) <= 25
    assert np.isfinite(h["train_loss"]).all() and np.isfinite(h["val_loss"]).all()
    assert h["val_loss"][cnn.best_epoch_ - 1] == min(h["val_loss"])
    assert h["train_loss"][-1] < h["train_loss"][0]


def test_cnn_learns_planted_function_even_where_soil_unmeasured(cnn, cube, samples):
    pred = cnn.predict_samples(samples, cube)
    assert pred.shape == (len(samples), 2)
    assert r2(samples["veg_carbon_t_ha"].to_numpy(), pred[:, 0]) > 0.5
    # soil was NaN (unmeasured) at half of the plots: the masked loss ignored them, and the
    # model still recovers the planted soil carbon there
    unmeasured = samples["soil_carbon_t_ha"].isna().to_numpy()
    assert r2(samples["soil_true"].to_numpy()[unmeasured], pred[unmeasured, 1]) > 0.5


def test_determinism_is_on_inside_a_fit_and_restored_without_loading_the_compiler():
    """torch_determinism sets torch's deterministic flag for a fit and restores the caller's;
    in a fresh process it does so without importing torch's compiler config (about 1 s per
    worker process)."""
    import subprocess
    import sys

    from terracarbon.models.cnn.fitting import torch_determinism

    for before in (False, True):
        torch.use_deterministic_algorithms(before)
        try:
            with torch_determinism(seed=3, num_threads=1):
                assert torch.are_deterministic_algorithms_enabled()
                assert torch.get_num_threads() == 1
            assert torch.are_deterministic_algorithms_enabled() is before
        finally:
            torch.use_deterministic_algorithms(False)
    code = ("import sys, torch\n"
            "from terracarbon.models.cnn.fitting import torch_determinism\n"
            "with torch_determinism(seed=3, num_threads=1):\n"
            "    assert torch.are_deterministic_algorithms_enabled()\n"
            "print('torch._inductor.config' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_adam_gives_torch_adams_weights_to_the_bit(weight_decay):
    """fitting.Adam against torch.optim.Adam (the oracle): the same weights and moments after
    every step, with and without weight decay, and with a parameter that has no gradient in
    the first steps (its state starts later, as the class starts it)."""
    from terracarbon.models.cnn.fitting import Adam

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 4 * 4, 2))
    late = torch.nn.Parameter(torch.randn(2))  # no gradient in the first three steps
    ours_net, ours_late = copy.deepcopy(net), torch.nn.Parameter(late.detach().clone())
    theirs = torch.optim.Adam([*net.parameters(), late], lr=3e-3, weight_decay=weight_decay)
    ours = Adam([*ours_net.parameters(), ours_late], lr=3e-3, weight_decay=weight_decay)
    x = torch.randn(8, 3, 6, 6)
    for step in range(6):
        for model, extra, opt in ((net, late, theirs), (ours_net, ours_late, ours)):
            opt.zero_grad()
            out = model(x)
            loss = (out ** 2).mean() + (((out * extra).sum()) if step >= 3 else 0.0)
            loss.backward()
            opt.step()
        for a, b in zip([*net.parameters(), late], [*ours_net.parameters(), ours_late],
                        strict=True):
            assert torch.equal(a, b), f"step {step}"
    assert all(torch.equal(theirs.state[p]["exp_avg_sq"], ours._state[i][2])
               for i, p in enumerate([*net.parameters(), late]))
    assert int(theirs.state[late]["step"]) == int(ours._state[len(ours.params) - 1][0]) == 3


def test_a_network_fit_does_not_load_the_compiler():
    """torch's optimiser classes import torch._dynamo (about 1.2 s per worker process that
    fits a network); a CNN fit in a fresh process does not."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from terracarbon.models.cnn import CnnCarbon\n"
            "import test_cnn\n"
            "cube = test_cnn.covariate_cube()\n"
            "CnnCarbon(lr=3e-3, epochs=2, seed=7).fit(test_cnn.make_samples(cube), cube)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent)
    assert out.stdout.strip() == "False"


def test_cnn_same_seed_same_weights(cube, samples):
    kwargs = dict(lr=3e-3, epochs=2, seed=7)
    a = CnnCarbon(**kwargs).fit(samples, cube)
    b = CnnCarbon(**kwargs).fit(samples, cube)
    c = CnnCarbon(**{**kwargs, "seed": 8}).fit(samples, cube)
    sa, sb, sc = a.net_.state_dict(), b.net_.state_dict(), c.net_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    np.testing.assert_array_equal(a.predict_samples(samples, cube),
                                  b.predict_samples(samples, cube))


@pytest.mark.parametrize("year", [2001, 2002])
def test_cnn_dense_map_equals_patchwise_at_every_pixel(cnn, cube, year):
    # tile_size=16 on a 40 x 40 grid: seams at 16 and 32 and a partial last tile
    assert_map_equals_patchwise(cnn, cube, year)


def test_maps_of_a_chunked_cube_equal_the_whole_grid_maps(cnn, tcn, cube):
    """#17: on a dask cube every year is mapped chunk by chunk, each chunk read with the
    network's context (half its receptive field; the CNN-TCN also its earlier years), and
    the chunks equal the whole-grid map, seams and grid edges included."""
    from terracarbon.carbon import mapping

    chunked = cube.chunk({"year": 1, "y": 13, "x": 17})  # seams off the tiles' 16-px grid
    for model in (cnn, tcn):
        assert mapping.context_px(model) == model.halo > 0
        whole = mapping.predict_years(model, cube, years=YEARS[-2:], interval=0.9)
        lazy = mapping.predict_years(model, chunked, years=YEARS[-2:], interval=0.9)
        assert lazy["veg_carbon_density"].chunks[1] == (13, 13, 13, 1)
        for name in whole.data_vars:
            got, want = lazy[name].values, whole[name].values
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=name)


def test_dense_map_with_strided_pooling_and_asymmetric_field(cube, samples):
    # patch 11: conv3 -> 9, pool 2/2 -> 4 (drops the last row), conv3 -> 2, conv1, FC 2x2:
    # the dense pass needs dilation 2 after the pooling and a receptive field of 10 < 11
    model = CnnCarbon(patch_size=11, conv_channels=(8, 8, 8), conv_kernels=(3, 3, 1),
                      pool_after=1, pool_size=2, pool_stride=2, hidden=16, epochs=1,
                      tile_size=13, seed=3).fit(samples, cube)
    assert_map_equals_patchwise(model, cube, 2003)


def test_map_metadata_and_masks(cnn, cube):
    import rioxarray  # noqa: F401  registers .rio

    ds = cnn.predict_map(cube.rio.write_crs("EPSG:32649"), 2002)
    assert ds.rio.crs.to_epsg() == 32649 and int(ds["year"]) == 2002
    assert set(ds.data_vars) == {"veg_carbon_density", "soil_carbon_density"}
    assert ds["veg_carbon_density"].dims == ("y", "x")
    np.testing.assert_array_equal(ds["x"], cube["x"])
    for v in ds.data_vars.values():
        assert v.attrs["units"] == "t C ha-1" and v.attrs["long_name"] and v.attrs["history"]
    veg = ds["veg_carbon_density"].values
    assert np.isnan(veg[:4, :6]).all()  # outside the region mask
    assert np.isnan(veg[20:22, 30:33]).all()  # NDVI hole at the pixel itself (year 2002)
    assert np.isfinite(veg[19, 30]) and np.isfinite(veg[30, 39])


def test_uncertainty_bounds_bracket_the_prediction(cnn, cube):
    ds = cnn.predict_map(cube, 2003, interval=0.9)
    narrow = cnn.predict_map(cube, 2003, interval=0.5)
    for var in ("veg_carbon_density", "soil_carbon_density"):
        mid, lo, hi = (ds[var].values, ds[f"{var}_lower"].values, ds[f"{var}_upper"].values)
        ok = np.isfinite(mid)
        np.testing.assert_array_equal(ok, np.isfinite(lo))
        assert (lo[ok] <= mid[ok]).all() and (mid[ok] <= hi[ok]).all()
        assert (hi - lo)[ok].mean() > 0
        width_50 = (narrow[f"{var}_upper"] - narrow[f"{var}_lower"]).values[ok].mean()
        assert (hi - lo)[ok].mean() > width_50
        assert ds[f"{var}_lower"].attrs["units"] == "t C ha-1"
    # one dropout mask per pass for the whole map: bounds do not depend on the tiling
    untiled = copy.deepcopy(cnn)
    untiled._hyper["tile_size"] = 64
    xr.testing.assert_allclose(untiled.predict_map(cube, 2003, interval=0.9), ds, atol=1e-4)


def test_empirical_quantiles_match_numpy():
    draws = torch.from_numpy(np.random.default_rng(5).normal(size=(50, 30, 2)).astype(np.float32))
    lo, hi = empirical_quantiles(draws, (0.05, 0.95))
    expected = np.quantile(draws.numpy().astype(np.float64), [0.05, 0.95], axis=1)
    np.testing.assert_allclose(lo, expected[0], atol=1e-6)
    np.testing.assert_allclose(hi, expected[1], atol=1e-6)


def test_cnn_save_load_roundtrip(cnn, cube, samples, tmp_path):
    folder = cnn.save(tmp_path / "cnn")
    card = json.loads((folder / "model_card.json").read_text())
    assert card["name"] == "cnn" and card["seed"] == 0 and card["units"] == "t C ha-1"
    assert card["features"] == cnn.features and card["feature_units"]["npp"] == "g C m-2 yr-1"
    assert card["torch_version"] == torch.__version__
    assert card["input_encoding"]["scaling"]["classes"]["landuse"] == [1, 2, 3, 4]
    loaded = CnnCarbon.load(folder)
    np.testing.assert_array_equal(loaded.predict_samples(samples, cube),
                                  cnn.predict_samples(samples, cube))
    xr.testing.assert_identical(loaded.predict_map(cube, 2002), cnn.predict_map(cube, 2002))
    with pytest.raises(ModelError, match="describes model 'cnn', not 'cnn_tcn'"):
        CnnTcnCarbon.load(folder)


def test_single_target_model_maps_only_that_pool(cube, samples):
    model = CnnCarbon(targets=["soil"], epochs=1, seed=0).fit(samples, cube)
    assert model.predict_samples(samples, cube).shape == (len(samples), 1)
    ds = model.predict_map(cube, 2001, interval=0.8)
    assert set(ds.data_vars) == {"soil_carbon_density", "soil_carbon_density_lower",
                                 "soil_carbon_density_upper"}


# ---- CNN-TCN -------------------------------------------------------------------------------


def test_tcn_shapes_and_dense_map_equals_sequence_prediction(tcn, cube, samples):
    assert tcn.name == "cnn_tcn" and isinstance(tcn, CarbonModel)
    pred = tcn.predict_samples(samples, cube)
    assert pred.shape == (len(samples), 2) and np.isfinite(pred).all()
    assert_map_equals_patchwise(tcn, cube, 2002)


def test_tcn_pads_early_years_with_the_first_year_and_is_causal(tcn, cube):
    plots = all_pixels(2002).iloc[::7]
    base = tcn.predict_samples(plots, cube)
    # prepend a copy of 2001 labelled 2000: the sequence for 2002 (T=4) becomes
    # [2000, 2000, 2001, 2002] = the padded [2001, 2001, 2001, 2002] -> same prediction
    early = cube.sel(year=[2001]).assign_coords(year=[2000])
    extended = xr.concat([early, cube], dim="year", data_vars="minimal")
    np.testing.assert_array_equal(tcn.predict_samples(plots, extended), base)
    # causal: changing a later year leaves the 2002 prediction alone ...
    later = cube.copy(deep=True)
    later["ndvi"].loc[{"year": 2003}] = 0.9
    np.testing.assert_array_equal(tcn.predict_samples(plots, later), base)
    # ... while changing an earlier year does change it
    earlier = cube.copy(deep=True)
    earlier["ndvi"].loc[{"year": 2001}] = 0.9
    assert not np.array_equal(tcn.predict_samples(plots, earlier), base)


@pytest.mark.parametrize(("steps", "dilations"), [(1, [1]), (4, [1, 2]), (5, [1, 2, 4])])
def test_temporal_conv_matches_causal_conv1d(steps, dilations):
    torch.manual_seed(0)
    tcn = TemporalConv(6, 5, sequence_length=steps)
    # kernel 2: receptive field 1 + sum(dilations) must reach the sequence length
    assert tcn.dilations == dilations
    x = torch.randn(7, 6, steps)  # (n, channels, T)
    # reference: the textbook TCN with F.conv1d on left-padded sequences
    ref = x
    for i, (conv, d) in enumerate(zip(tcn.convs, tcn.dilations, strict=True)):
        y = F.relu(F.conv1d(F.pad(ref, (d, 0)), conv.weight, conv.bias, dilation=d))
        ref = y + (F.conv1d(ref, tcn.skip.weight, tcn.skip.bias) if i == 0 else ref)
    with torch.no_grad():
        np.testing.assert_allclose(tcn(x.permute(2, 0, 1)).numpy(), ref[:, :, -1].detach().numpy(),
                                   atol=1e-5)


def test_tcn_save_load_roundtrip(tcn, cube, samples, tmp_path):
    loaded = CnnTcnCarbon.load(tcn.save(tmp_path / "tcn"))
    assert loaded.card()["architecture"]["sequence_length"] == 4
    np.testing.assert_array_equal(loaded.predict_samples(samples, cube),
                                  tcn.predict_samples(samples, cube))


# ---- bad input -----------------------------------------------------------------------------


def test_features_missing_from_cube(cube, samples, cnn):
    with pytest.raises(ModelError, match=r"features \['evi', 'rsei'\] are not in the cube"):
        CnnCarbon(["ndvi", "evi", "rsei"], epochs=1).fit(samples, cube)
    with pytest.raises(ModelError, match=r"features \['npp'\] are not in the cube"):
        cnn.predict_map(cube.drop_vars("npp"), 2002)


def test_plot_year_missing_from_cube(cube, samples, cnn):
    bad = samples.copy()
    bad.loc[bad.index[:3], "year"] = 1999
    with pytest.raises(ModelError, match=r"years \[1999\] are not in the cube"):
        CnnCarbon(epochs=1).fit(bad, cube)
    with pytest.raises(ModelError, match=r"years \[2010\] are not in the cube"):
        cnn.predict_map(cube, 2010)


def test_covariate_all_nan_at_plots(cube, samples):
    bad = cube.copy(deep=True)
    bad["npp"][:] = np.nan
    with pytest.raises(ModelError, match=r"covariates \['npp'\] are missing"):
        CnnCarbon(epochs=1).fit(samples, bad)


def test_target_never_measured_and_plots_off_grid(cube, samples):
    with pytest.raises(ModelError, match="target 'soil'.*no measured value"):
        CnnCarbon(epochs=1).fit(samples.assign(soil_carbon_t_ha=np.nan), cube)
    with pytest.raises(ModelError, match="outside the 40 x 40 grid"):
        CnnCarbon(epochs=1).fit(samples.assign(row=samples["row"] + 10), cube)
    with pytest.raises(ModelError, match=r"missing column\(s\) \['row'\]"):
        CnnCarbon(epochs=1).fit(samples.drop(columns="row"), cube)


def test_bad_parameters(cnn, cube):
    with pytest.raises(ParameterError, match="patch_size=8 is invalid; expected an odd"):
        CnnCarbon(patch_size=8)
    with pytest.raises(ParameterError, match="patch_size=5 is too small"):
        CnnCarbon(patch_size=5)
    with pytest.raises(ParameterError, match=r"targets=\['wood'\]"):
        CnnCarbon(targets=["wood"])
    with pytest.raises(ParameterError, match="interval=1.5 is invalid"):
        cnn.predict_map(cube, 2002, interval=1.5)
    with pytest.raises(ModelError, match="not fitted"):
        CnnCarbon().predict_map(cube, 2002)


# ---- the plots' windows as a mosaic, and fits in worker processes ----------------------------

@pytest.mark.parametrize("cls, kwargs", [(CnnCarbon, {}), (CnnTcnCarbon, {"sequence_length": 3})])
def test_fit_on_the_window_mosaic_equals_fit_on_the_cube(cube, samples, cls, kwargs):
    """Plots at the grid edge (row 4 borders the masked corner; col 0 and 39 the edge) and in
    the first year (the TCN pads with the first year) see the same patches in the mosaic."""
    edge = samples.copy()
    edge.iloc[:4, edge.columns.get_loc("col")] = [0, NX - 1, 0, NX - 1]
    edge.iloc[:4, edge.columns.get_loc("year")] = YEARS[0]
    model = cls(["ndvi", "npp", "dem", "landuse"], patch_size=7, epochs=2, seed=3, **kwargs)
    local, mosaic = model.fit_inputs(edge, cube)
    assert mosaic.sizes["y"] * mosaic.sizes["x"] >= 49 * edge[["row", "col"]].drop_duplicates().shape[0]
    assert mosaic["landuse"].attrs["source_dtype"] == "int16"  # still one-hot encoded
    a = cls(["ndvi", "npp", "dem", "landuse"], patch_size=7, epochs=2, seed=3, **kwargs)
    b = cls(["ndvi", "npp", "dem", "landuse"], patch_size=7, epochs=2, seed=3, **kwargs)
    a.fit(edge, cube)
    b.fit(local, mosaic)
    assert a.encoder_.n_channels == b.encoder_.n_channels
    for wa, wb in zip(a.net_.state_dict().values(), b.net_.state_dict().values(), strict=True):
        assert torch.equal(wa, wb)
    np.testing.assert_array_equal(a.predict_samples(edge, cube), b.predict_samples(local, mosaic))


@pytest.mark.slow
def test_fits_in_worker_processes_equal_fits_in_this_process(cube, samples):
    from terracarbon.models import training, validation

    settings = {"features": ["ndvi", "npp", "dem", "landuse"],
                "cnn": {"patch_size_px": 7, "learning_rate": 1e-3, "weight_decay": 1e-5,
                        "max_epochs": 2, "patience": 2, "batch_size": 64},
                "cnn_tcn": {"sequence_years": 2, "max_epochs": 2}}
    factory = training.model_factory("cnn_tcn", features=settings["features"],
                                     settings=settings, seed=5, targets=("veg", "soil"))
    folds = validation.cv_folds(samples, scheme="random", k=3, seed=5)
    jobs = validation.fold_jobs(folds, scheme="random")
    jobs.append(validation.FitJob("final", np.arange(len(samples)), np.array([], int), True))
    # the whole cube in this process against the windows (model_inputs) in two workers
    here = training.run_fits(factory, samples, cube, jobs, n_jobs=1)
    there = training.run_fits(factory, *training.model_inputs(factory(), samples, cube), jobs,
                              n_jobs=2)
    for a, b in zip(here[:-1], there[:-1], strict=True):
        np.testing.assert_array_equal(a.predictions, b.predictions)
    assert here[-1].model is not None and there[-1].predictions is None
    np.testing.assert_array_equal(here[-1].model.predict_samples(samples, cube),
                                  there[-1].model.predict_samples(samples, cube))


def test_window_cube_reads_only_the_chunks_around_the_plots():
    """#17: patch extraction from a chunked cube touches the chunks holding a window and no
    other — here every chunk away from the plots raises when read — and gives the same mosaic
    as the in-memory cube."""
    import dask.array as dsa

    from terracarbon.models.cnn.patches import window_cube

    ny, nx, chunk = 64, 80, 16
    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, ny, nx)).astype("float32")
    plots = pd.DataFrame({"row": [1, 40, 41], "col": [2, 70, 33], "year": [2001, 2002, 2002]})
    halo = 2
    needed = {(r // chunk, c // chunk)
              for r0, c0 in zip(plots.row, plots.col)
              for r in range(max(0, r0 - halo), min(ny, r0 + halo + 1))
              for c in range(max(0, c0 - halo), min(nx, c0 + halo + 1))}
    touched = set()

    def guarded(block, block_info=None):
        where = tuple(block_info[0]["chunk-location"][1:])
        if where not in needed:
            raise RuntimeError(f"chunk {where} is far from every plot and was read")
        touched.add(where)
        return block

    lazy = dsa.from_array(values, chunks=(1, chunk, chunk)).map_blocks(guarded, dtype="float32")
    coords = {"year": [2000, 2001, 2002]}
    dask_cube = xr.Dataset({"a": (("year", "y", "x"), lazy)}, coords=coords)
    numpy_cube = xr.Dataset({"a": (("year", "y", "x"), values)}, coords=coords)
    mosaic, local = window_cube(dask_cube, plots, ["a"], patch_size=2 * halo + 1)
    expected, expected_local = window_cube(numpy_cube, plots, ["a"], patch_size=2 * halo + 1)
    np.testing.assert_array_equal(mosaic["a"].values, expected["a"].values)
    pd.testing.assert_frame_equal(local, expected_local)
    assert touched == needed and len(needed) < (ny // chunk) * (nx // chunk) / 2
    # the plot at (1, 2) sits at the grid corner: its window beyond the edge is NaN
    corner = mosaic["a"].sel(year=2001).values[:2 * halo + 1, :2 * halo + 1]
    assert np.isnan(corner[0]).all() and np.isfinite(corner[halo + 1:, halo + 1:]).all()


def test_training_a_network_never_reads_chunks_far_from_the_plots(cube, samples):
    """#17: stage 02 keeps the cube lazy; ``train_candidates`` cuts a network's windows once
    (``model_inputs``) and every fold, the hold-out and the final fit read only those, so a
    cube whose chunks far from every plot raise when read still trains — to the same metrics
    as the in-memory cube."""
    import dask.array as dsa

    from terracarbon.models import training

    chunk, halo = 8, 3
    near = samples[(samples.row < 20) & (samples.col < 20)].reset_index(drop=True)
    near = near.assign(x=cube["x"].values[near["col"]], y=cube["y"].values[near["row"]])
    needed = {(r // chunk, c // chunk)
              for r0, c0 in zip(near.row, near.col)
              for r in range(max(0, r0 - halo), min(NY, r0 + halo + 1))
              for c in range(max(0, c0 - halo), min(NX, c0 + halo + 1))}
    assert len(needed) < (NY // chunk) * (NX // chunk) / 2

    def guarded(block, block_info=None):
        where = tuple(block_info[0]["chunk-location"][-2:])
        if where not in needed:
            raise RuntimeError(f"chunk {where} is far from every plot and was read")
        return block

    lazy = cube.copy()
    for name, da in cube.data_vars.items():
        chunks = (1,) * (da.ndim - 2) + (chunk, chunk)
        lazy[name] = da.copy(data=dsa.from_array(da.values, chunks=chunks)
                             .map_blocks(guarded, dtype=da.dtype))
    settings = {"candidates": ["cnn"], "features": ["ndvi", "npp", "dem", "landuse"],
                "cv_folds": 3, "cv_folds_deep": 3, "cv_block_size_m": 2000.0,
                "holdout": "10pct", "n_jobs": 1,
                "cnn": {"patch_size_px": 2 * halo + 1, "learning_rate": 3e-3,
                        "weight_decay": 1e-5, "max_epochs": 2, "patience": 2,
                        "batch_size": 64}}
    streamed = training.train_candidates(near, lazy, settings=settings, seed=4)
    in_memory = training.train_candidates(near, cube, settings=settings, seed=4)
    pd.testing.assert_frame_equal(streamed.metrics, in_memory.metrics)
    assert streamed.metrics["r2"].notna().all()


@pytest.mark.slow
def test_networks_pooled_in_worker_processes_score_as_one_by_one(cube, samples):
    """#19: the CNN's and the CNN-TCN's fits share one pool of worker processes (costliest
    first), running while the tabular candidates fit and score in this process; every
    metric, out-of-fold prediction and final model equals the in-process run, in candidate
    order."""
    from terracarbon.models import training

    settings = {"candidates": ["mlr", "cnn", "ndvi_lr", "cnn_tcn"],
                "features": ["ndvi", "npp", "dem", "landuse"],
                "cv_folds": 3, "cv_folds_deep": 3, "cv_block_size_m": 2000.0,
                "holdout": "10pct", "ensemble_members": 0,
                "cnn": {"patch_size_px": 7, "learning_rate": 3e-3, "weight_decay": 1e-5,
                        "max_epochs": 2, "patience": 2, "batch_size": 64},
                "cnn_tcn": {"sequence_years": 2, "max_epochs": 2}}
    from terracarbon.data.survey import extract_covariates

    samples = extract_covariates(samples.assign(x=cube["x"].values[samples["col"]],
                                                y=cube["y"].values[samples["row"]]),
                                 cube, variables=settings["features"])
    one = training.train_candidates(samples, cube, settings={**settings, "n_jobs": 1}, seed=3)
    two = training.train_candidates(samples, cube, settings={**settings, "n_jobs": 2}, seed=3)
    pd.testing.assert_frame_equal(one.metrics, two.metrics, check_exact=True)
    assert list(one.oof) == list(two.oof) and list(one.fitted) == list(two.fitted)
    for key in one.oof:
        pd.testing.assert_frame_equal(one.oof[key], two.oof[key], check_exact=True)
    for name in settings["candidates"]:
        np.testing.assert_array_equal(one.fitted[name].predict_samples(samples, cube),
                                      two.fitted[name].predict_samples(samples, cube))
    for run in (one, two):
        assert run.metrics["model"].drop_duplicates().tolist()[:4] == settings["candidates"]
        assert list(run.fitted)[:4] == settings["candidates"]


def test_pooled_fits_start_with_the_costliest_and_come_back_in_job_order(monkeypatch):
    """The pool is handed the CNN-TCN's fits first (each encodes sequence_years patches), and
    each candidate gets its outputs back in its own job order."""
    from terracarbon.models import training, validation

    class Probe:
        def __init__(self, years):
            self.sequence_years = years

    def plan(name, years, n):
        jobs = [validation.FitJob(f"{name} {i}", np.arange(2), np.arange(1), False)
                for i in range(n)]
        return training._CandidatePlan(name, lambda: None, Probe(years), True, [], {}, jobs,
                                       None, None)

    seen = []

    def fake(tasks, *, n_jobs):
        seen.extend(task[-1].label for task in tasks)
        return iter([task[-1].label for task in tasks])

    monkeypatch.setattr(training, "start_fits_side_by_side", fake)
    out = training._start_pooled_fits([plan("cnn", 1, 3), plan("cnn_tcn", 4, 2)], 2).collect()
    assert seen == ["cnn_tcn 0", "cnn_tcn 1", "cnn 0", "cnn 1", "cnn 2"]
    assert out == {"cnn": ["cnn 0", "cnn 1", "cnn 2"], "cnn_tcn": ["cnn_tcn 0", "cnn_tcn 1"]}


def test_a_failed_in_process_fit_drops_the_networks_pool(monkeypatch, cube, samples):
    """The networks' pool runs while the tabular candidates fit: when one of those fails,
    the error reaches the caller and the pool's fits not yet started are dropped."""
    from terracarbon.data.survey import extract_covariates
    from terracarbon.models import training

    closed, started = [], []

    class Results:  # what joblib's generator offers: iteration and close()
        def __init__(self, labels):
            self.labels = iter(labels)

        def __iter__(self):
            return self.labels

        def close(self):
            closed.append(True)

    def pool(tasks, *, n_jobs):
        started.extend(task[-1].label for task in tasks)
        return Results(started)

    def failing_fits(*args, **kwargs):
        raise RuntimeError("a tabular fit failed")

    monkeypatch.setattr(training, "start_fits_side_by_side", pool)
    monkeypatch.setattr(training, "run_fits", failing_fits)
    settings = {"candidates": ["mlr", "cnn"], "features": ["ndvi", "npp", "dem", "landuse"],
                "cv_folds": 2, "cv_folds_deep": 2, "cv_block_size_m": 2000.0,
                "holdout": "10pct", "ensemble_members": 0, "n_jobs": 2,
                "cnn": {"patch_size_px": 7, "learning_rate": 3e-3, "weight_decay": 1e-5,
                        "max_epochs": 1, "patience": 1, "batch_size": 64}}
    samples = extract_covariates(samples.assign(x=cube["x"].values[samples["col"]],
                                                y=cube["y"].values[samples["row"]]),
                                 cube, variables=settings["features"])
    with pytest.raises(RuntimeError, match="a tabular fit failed"):
        training.train_candidates(samples, cube, settings=settings, seed=0)
    assert "final fit on all plots" in started  # the pool had been started
    assert closed == [True]


def test_encoder_layouts_give_the_same_outputs_and_gradients():
    """Channels-last (the default, for speed) and NCHW are the same network: outputs and
    weight gradients agree to float32 roundoff, on patches and on a dense tile."""
    from terracarbon.models.cnn.nets import PatchEncoder

    def encoder(layout):
        torch.manual_seed(3)
        return PatchEncoder(5, patch_size=9, conv_channels=(8, 8, 16), conv_kernels=(3, 3, 1),
                            pool_after=2, pool_size=3, pool_stride=2, hidden=6, layout=layout)

    fast, plain = encoder(torch.channels_last), encoder(torch.contiguous_format)
    assert fast.convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.convs[0].weight.is_contiguous()
    x = torch.randn(32, 5, 9, 9, generator=torch.Generator().manual_seed(4))
    outputs = [net(x) for net in (fast, plain)]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    for out in outputs:
        (out ** 2).sum().backward()
    for a, b in zip(fast.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    tile = torch.randn(1, 5, 20, 23, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(fast(tile, dense=True), plain(tile, dense=True),
                                   rtol=1e-5, atol=1e-5)
