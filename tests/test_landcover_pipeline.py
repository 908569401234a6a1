"""Land cover through the stages (issue #20): a study whose land-use raster holds GLC_FCS30 codes
runs every stage and reports totals, contributions and transitions by subtype and by group;
the raster is checked against the study's classes up front; the default study's tables do not
change."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import terracarbon as tc
from helpers import as_map, assert_complete_stage
from terracarbon.carbon import (
    conversion_decomposition,
    ecosystem_contribution,
    totals_by_class,
    transition_matrix,
)
from terracarbon.conventions import LANDUSE
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.landcover import LandCoverTable
from terracarbon.pipeline.params import REPO_ROOT, load_params
from tiny_study import load_run_all, make_tiny_study

run_all = load_run_all()
GLC = LandCoverTable.from_scheme("glc_fcs30")
STAGES = ("01_data_prep", "02_train_models", "03_carbon_maps", "04_trends", "05_zoning")

# the smallest synthetic study that runs every stage: 40 x 30 pixels in one chunk, 8 years (the
# trend stage's minimum), a linear model and the land-use lookup, no ensemble, dask in-thread
# (80-100 s for the five stages with the cores shared; nearly all of it the fixed costs of the
# stages: kernels, imports, figures, reports)
GLC_STUDY = {
    "study": {"name": "glc", "stages": list(STAGES)},
    "synthetic": {"nx_pixels": 40, "ny_pixels": 30, "first_year": 2014, "last_year": 2021,
                  "n_veg_plots": 200, "n_soil_plots": 200, "plot_years": [2015, 2018, 2021],
                  "landcover_scheme": "glc_fcs30"},
    "models": {"candidates": ["mlr", "lookup"], "cv_folds": 3, "cv_block_size_m": 5000.0,
               "ensemble_members": 0},
    "maps": {"interval_method": "correlated"},
    "zoning": {"permutations": 99},
    "compute": {"chunk_px": 64, "scheduler": "synchronous", "n_workers": 1},
}


@pytest.fixture(scope="module")
def glc_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("landcover_glc")
    params = folder / "glc.yaml"
    params.write_text(json.dumps(GLC_STUDY))  # JSON is YAML
    assert run_all.main(["--params", str(params), "--runs-dir", str(folder / "runs")]) == 0
    return folder / "runs" / "glc"


def _group(code: int) -> int:
    return GLC[int(code)].group_code


# --------------------------------------------------------------------------- the GLC study
def test_glc_fcs30_study_runs_every_stage_with_real_codes(glc_run):
    run = glc_run
    for stage in STAGES:
        assert_complete_stage(run, stage)
    cube = tc.io.open_cube(run / "01_data_prep" / "cube.zarr")
    classes, groups = cube["landcover"].values, cube["landuse"].values
    present = set(np.unique(classes).tolist()) - {0}
    # real GLC_FCS30 codes (level-2 forests 51..92, shrub 120..122 ...), many more than 8
    assert present <= set(GLC.codes) and len(present) >= 20
    assert {52, 121, 130, 190, 210} <= present
    assert cube["landcover"].attrs["landcover_scheme"] == "glc_fcs30"
    assert len(cube["landcover"].attrs["flag_colors"].split()) == len(GLC) + 1
    # the group layer is the subtypes grouped, and the planted land use of the synthetic study
    lut = np.zeros(max(GLC.codes) + 1, dtype=np.int16)
    for c in GLC.classes:
        lut[c.code] = c.group_code
    np.testing.assert_array_equal(groups, lut[classes])
    truth = tc.synthetic.open_truth(run / "01_data_prep" / "synthetic_inputs" / "truth" /
                                    "truth.nc")
    np.testing.assert_array_equal(groups, truth["landuse"].values)
    # the models saw the eight groups (the plots' land use), never a subtype code
    samples = pd.read_csv(run / "01_data_prep" / "samples.csv")
    assert set(samples["landuse"].dropna().astype(int)) <= set(LANDUSE.codes)
    assert set(samples["landcover"].dropna().astype(int)) <= set(GLC.codes)


def test_totals_and_contributions_by_subtype_sum_to_their_groups(glc_run):
    stage = glc_run / "03_carbon_maps"
    fine = pd.read_csv(stage / "by_landuse.csv")
    coarse = pd.read_csv(stage / "by_landuse_group.csv")
    assert set(fine["landuse_code"]) == set(GLC.codes)            # every subtype listed
    assert set(coarse["landuse_code"]) == set(LANDUSE.codes)      # the eight groups
    assert set(fine["landuse_class"]) >= {"closed_evergreen_broadleaved_forest",
                                          "evergreen_shrubland", "irrigated_cropland"}
    summed = (fine.assign(landuse_code=fine["landuse_code"].map(_group))
              .groupby(["year", "pool", "landuse_code"])[["area_ha", "storage_Tg"]].sum())
    coarse = coarse.set_index(["year", "pool", "landuse_code"])[["area_ha", "storage_Tg"]]
    pd.testing.assert_frame_equal(summed.loc[coarse.index], coarse, rtol=1e-9, atol=1e-12)
    assert coarse["storage_Tg"].sum() > 0

    fine = pd.read_csv(stage / "ecosystem_contribution.csv")
    coarse = pd.read_csv(stage / "ecosystem_contribution_group.csv").set_index("landuse_code")
    assert len(fine) == len(GLC) and len(coarse) == 8
    summed = fine.groupby(fine["landuse_code"].map(_group))[["area_ha", "change_Tg"]].sum()
    np.testing.assert_allclose(summed.reindex(coarse.index, fill_value=0.0).to_numpy(),
                               coarse[["area_ha", "change_Tg"]].to_numpy(), rtol=1e-9,
                               atol=1e-12)
    for table in (fine, coarse):
        assert table["contribution_percent"].sum() == pytest.approx(100.0)


def test_transitions_by_subtype_regroup_to_the_group_matrix(glc_run):
    stage = glc_run / "03_carbon_maps"
    fine = pd.read_csv(stage / "transitions.csv", index_col=0)
    coarse = pd.read_csv(stage / "transitions_group.csv", index_col=0)
    assert fine.shape == (len(GLC), len(GLC)) and coarse.shape == (8, 8)
    group_of = {c.name: c.group for c in GLC.classes}
    regrouped = fine.groupby(group_of).sum().T.groupby(group_of).sum().T
    regrouped = regrouped.reindex(index=coarse.index, columns=coarse.columns, fill_value=0.0)
    np.testing.assert_allclose(regrouped.to_numpy(), coarse.to_numpy())
    # the synthetic study has conversions (restoration, urbanisation)
    assert np.trace(coarse.to_numpy()) < coarse.to_numpy().sum()

    fine = pd.read_csv(stage / "decomposition.csv")
    coarse = pd.read_csv(stage / "decomposition_group.csv")
    assert fine["change_t"].sum() == pytest.approx(coarse["change_t"].sum(), rel=1e-9)
    keyed = fine.assign(from_code=fine["from_code"].map(_group),
                        to_code=fine["to_code"].map(_group))
    summed = keyed.groupby(["from_code", "to_code"])[["area_ha", "change_t"]].sum()
    coarse = coarse.set_index(["from_code", "to_code"])[["area_ha", "change_t"]]
    np.testing.assert_allclose(summed.loc[coarse.index].to_numpy(), coarse.to_numpy(),
                               rtol=1e-9, atol=1e-6)
    classes = pd.read_csv(stage / "landcover_classes.csv")
    assert len(classes) == len(GLC) and set(classes["scheme"]) == {"glc_fcs30"}
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["params"]["landcover"]["scheme"] == "glc_fcs30"


def test_trend_tables_use_the_studys_classes(glc_run):
    shares = pd.read_csv(glc_run / "04_trends" / "trend5_by_landuse.csv")
    assert set(shares["landuse"]) <= set(GLC.codes) and len(set(shares["landuse"])) > 8
    names = dict(zip(GLC.codes, GLC.names))
    assert all(names[c] == n for c, n in zip(shares["landuse"], shares["landuse_name"]))


# --------------------------------------------------------------------------- validation
def test_a_raster_with_codes_the_table_does_not_name_lists_them_with_pixel_counts():
    codes = np.full((2, 6, 5), 52, dtype=np.int16)
    codes[0, 0, :3] = 99       # 3 pixels of an unknown code
    codes[1, 5, :2] = 7        # 2 pixels of a CLCD-like code
    codes[1, 4, 0] = 250       # GLC_FCS30's fill value: no data, fine
    raw = as_map(codes, years=[2015, 2020], name="landuse", units="1")
    cube = xr.Dataset({"landuse": raw})
    with pytest.raises(InputDataError) as err:
        tc.landcover.validate_landcover(cube["landuse"], GLC, name="data.layers.landuse")
    message = str(err.value)
    assert "2 problem(s)" in message and "data.layers.landuse" in message
    assert "code 7 is not a class of the table: 2 pixels" in message
    assert "code 99 is not a class of the table: 3 pixels" in message
    assert "landcover.reclassify" in message          # the fix is named
    # the same raster with the codes named (99 as no data, 7 as a study class) passes
    table = tc.landcover.landcover_from_params(
        {"scheme": "glc_fcs30", "reclassify": {99: 0},
         "classes": {7: {"name": "tea garden", "group": "cropland"}}})
    counts = tc.landcover.validate_landcover(cube["landuse"], table)
    prepared = tc.landcover.prepare_landuse(cube, table, counts=counts)
    assert set(np.unique(prepared["landuse"].values)) == {0, 1, 4}
    summary = tc.landcover.counts_table(counts).set_index("code")
    assert summary.loc[7, "pixels"] == 2 and summary.loc[0, "pixels"] == 4   # 3 + fill


def test_data_prep_stops_naming_every_unknown_code_with_its_pixels(tmp_path, capsys):
    """A real-data-style study (land use in codes 1..8) declared as ESA WorldCover (10..100):
    the preflight warns from a decimated read, data prep stops with every code counted."""
    study = make_tiny_study(tmp_path / "study")
    argv = ["--params", str(study), "--runs-dir", str(tmp_path / "runs"),
            "--set", "study.stages=[01_data_prep]", "--set", "landcover.scheme=esa_worldcover"]
    assert run_all.main(argv) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "data.layers.landuse: codes 1 (" in text and "sampled pixels" in text   # preflight
    assert "with the land-cover raster 'data.layers.landuse'" in text
    assert "(scheme esa_worldcover)" in text
    found = re.findall(r"code (\d+) is not a class of the table: ([\d,]+) pixels", text)
    assert {int(c) for c, _ in found} >= {1, 3, 4} and all(int(n.replace(",", "")) > 0
                                                           for _, n in found)
    assert "landcover.reclassify" in text
    manifest = json.loads((tmp_path / "runs" / "tiny" / "01_data_prep" /
                           "manifest.json").read_text())
    assert manifest["status"] == "failed" and not (tmp_path / "runs" / "tiny" /
                                                   "01_data_prep" / "cube.zarr").exists()


def test_params_list_every_landcover_problem_in_one_message(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("""
landcover:
  scheme: glc_fs30
  groups: {150: urban}                 # no such group
  classes:
    11: {group: cropland}
    "11": forest                       # the same code twice
  reclassify: {12: 999}                # to a code the table does not have
  colour_map: {}                       # an unknown key
""")
    with pytest.raises(ParameterError) as err:
        load_params(study, validate_files=False)
    message = str(err.value)
    for expected in ("5 problem(s)",
                     "landcover.groups.150: 'urban' is not a land-cover group",
                     "landcover.classes.11: code given twice",
                     "reclassify 12 -> 999: 999 is not a class of the table",
                     "unknown key(s) ['colour_map']",
                     # the synthetic study writes the eight groups unless told otherwise
                     "landcover.scheme: 'glc_fcs30', but the synthetic study writes"):
        assert expected in message, message


def test_a_synthetic_study_names_the_scheme_its_raster_is_written_in(tmp_path):
    follows = load_params(REPO_ROOT / "params" / "quick.yaml",
                          ["synthetic.landcover_scheme=glc_fcs30d"])
    assert follows["landcover"]["scheme"] == "glc_fcs30d"
    with pytest.raises(ParameterError, match="synthetic.landcover_scheme"):
        load_params(REPO_ROOT / "params" / "quick.yaml",
                    ["synthetic.landcover_scheme=glc_fcs30", "landcover.scheme=clcd"])
    with pytest.raises(ParameterError, match="expected one of"):
        load_params(REPO_ROOT / "params" / "quick.yaml", ["synthetic.landcover_scheme=clcd"])


# --------------------------------------------------------------------------- the default study
def _default_case():
    """A small synthetic-like map of the eight groups with storage and density, by hand."""
    rng = np.random.default_rng(3)
    lu = rng.integers(0, 9, size=(2, 8, 10)).astype(np.int16)
    landuse = as_map(lu, years=[2010, 2020], name="landuse", units="1")
    density = xr.Dataset({f"{pool}_carbon_density": as_map(
        rng.uniform(5, 60, size=(2, 8, 10)), years=[2010, 2020], units="t C ha-1")
        for pool in ("veg", "soil")})
    density = tc.carbon.add_total(density)
    area = tc.carbon.pixel_area_ha(density)
    stock = tc.carbon.storage(density, area)
    return xr.Dataset({"landuse": landuse}), density, stock, area


def test_the_default_study_keeps_its_cube_and_class_tables():
    cube, density, stock, area = _default_case()
    table = tc.landcover.landcover_from_params(load_params()["landcover"])
    assert table.scheme == "terracarbon"
    assert tc.landcover.prepare_landuse(cube, table) is cube      # nothing rewritten
    levels = tc.landcover.class_levels(cube, table)
    assert levels.levels == ("class",)                            # no group duplicates
    lu = cube["landuse"]
    pd.testing.assert_frame_equal(tc.landcover.totals_by_level(stock, levels)["class"],
                                  totals_by_class(stock, lu))
    pd.testing.assert_frame_equal(
        tc.landcover.contribution_by_level(stock, levels, start=2010, end=2020)["class"],
        ecosystem_contribution(stock, lu, start=2010, end=2020))
    matrix, parts = tc.landcover.transitions_by_level(density, levels, area, start=2010,
                                                      end=2020)["class"]
    pd.testing.assert_frame_equal(matrix, transition_matrix(lu.sel(year=2010),
                                                            lu.sel(year=2020), area))
    old = conversion_decomposition(density.sel(year=2010), density.sel(year=2020),
                                   lu.sel(year=2010), lu.sel(year=2020), area)
    pd.testing.assert_frame_equal(parts["by_transition"], old["by_transition"])


def test_default_synthetic_inputs_are_the_group_rasters(tmp_path):
    params = load_params(REPO_ROOT / "params" / "quick.yaml",
                         ["synthetic.nx_pixels=12", "synthetic.ny_pixels=10",
                          "synthetic.n_veg_plots=20", "synthetic.n_soil_plots=20"])
    inputs = tc.inputs.resolve_inputs(synthetic=params["synthetic"], grid=params["grid"],
                                      data=params["data"], seed=1, workdir=tmp_path)
    path = inputs.data["layers"]["landuse"]["path"]
    assert path.endswith("rasters/landuse_{year}.tif")
    assert not (tmp_path / "synthetic_inputs" / "landcover").exists()
    glc = tc.inputs.resolve_inputs(synthetic={**params["synthetic"],
                                              "landcover_scheme": "glc_fcs30"},
                                   grid=params["grid"], data=params["data"], seed=1,
                                   workdir=tmp_path)
    pattern = glc.data["layers"]["landuse"]["path"]
    assert "landcover/landuse_glc_fcs30_{year}.tif" in pattern
    import rasterio

    for year in params["data"].get("years") or range(2010, 2022):
        with rasterio.open(path.format(year=year)) as a, \
                rasterio.open(pattern.format(year=year)) as b:
            groups, codes = a.read(1), b.read(1)
        grouped = GLC.to_groups(xr.DataArray(codes, dims=("y", "x"))).values
        np.testing.assert_array_equal(grouped, groups)   # same land, in real codes
    stamp = (tmp_path / "synthetic_inputs" / "landcover" / "landcover.json").stat().st_mtime_ns
    tc.inputs.resolve_inputs(synthetic={**params["synthetic"], "landcover_scheme": "glc_fcs30"},
                             grid=params["grid"], data=params["data"], seed=1, workdir=tmp_path)
    assert (tmp_path / "synthetic_inputs" / "landcover" /
            "landcover.json").stat().st_mtime_ns == stamp   # reused, not rewritten


def test_default_quick_run_has_no_group_duplicates(quick_run_session):
    run, _ = quick_run_session
    stage = run / "03_carbon_maps"
    table = pd.read_csv(stage / "by_landuse.csv")
    assert list(table.columns) == ["year", "pool", "landuse_code", "landuse_class", "area_ha",
                                   "storage_Tg", "mean_density_t_ha"]
    assert set(table["landuse_code"]) == set(LANDUSE.codes)
    assert not list(stage.glob("*_group.csv"))
    assert "landcover" not in tc.io.open_cube(run / "01_data_prep" / "cube.zarr")


# --------------------------------------------------------------------------- tables, legends
def test_trend_shares_and_legends_read_the_studys_classes():
    table = tc.landcover.landcover_from_params({"scheme": "clcd"})
    raw = as_map(np.array([[2, 2, 1], [5, 8, 0]], dtype=np.int16), name="landuse", units="1")
    classes = tc.landcover.prepare_landuse(xr.Dataset({"landuse": raw}), table)["landcover"]
    trend = xr.DataArray(np.array([[1, 2, 1], [1, 1, 0]], dtype=np.int16), dims=("y", "x"),
                         coords=classes.coords, attrs={"flag_values": [0, 1, 2],
                                                       "flag_meanings": "nodata up down"})
    shares = tc.trends.area_shares(trend, landuse=classes, pixel_area_ha=1.0)
    named = dict(zip(shares["landuse"], shares["landuse_name"]))
    assert named == {1: "cropland", 2: "forest", 5: "water", 8: "impervious"}
    legend = tc.viz.classes.class_table_for(classes)
    assert legend.codes == table.codes and legend.names == table.names
    assert legend.colors == tuple(c.color for c in table.classes)
    assert tc.viz.classes.class_table_for(raw, table).codes == table.codes
