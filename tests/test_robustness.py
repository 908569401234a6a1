"""Robustness suite (issue 13): bad inputs a hostile but realistic user gives ``run_all.py``.

Every case is one mutation of the tiny real-data-style study (tests/tiny_study.py): a YAML
edit, a ``--set``, or an edited input file. Each goes through the whole ``run_all.main``
path (in-process for speed; a few through a real subprocess) and must:

1. exit non-zero;
2. print a message that names the key or file and says what to do (a substring per case);
3. print no Python traceback;
4. leave nothing a rerun would trust: these all fail before any stage runs, so nothing at
   all is written into --runs-dir, and nothing (no params.yaml, no run folder) outside it;
5. leave the inputs untouched (the study folder hashes the same before and after).

The study folder is built once per session and copied per case (a few hundred kB).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from terracarbon.pipeline.params import REPO_ROOT
from tiny_study import (NODATA, NX, NY, ORIGIN, RES, folder_digest, load_run_all,
                        make_tiny_study)

# --------------------------------------------------------------------------- harness


run_all = load_run_all()


@pytest.fixture(scope="session")
def pristine_study(tmp_path_factory) -> Path:
    """The tiny study, written once; cases copy it."""
    folder = tmp_path_factory.mktemp("tiny_pristine") / "study"
    make_tiny_study(folder)
    return folder


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable[[Path], list[str] | None]
    """Edits the study folder (a copy); returns extra command-line arguments."""
    expect: tuple[str, ...]
    """Substrings the message must contain: the key or file, and the fix."""


@dataclass
class Workspace:
    root: Path      # tmp_path
    study: Path     # the study folder (copy)
    work: Path      # holds runs/ (and would hold ../escaped)
    runs: Path
    elsewhere: Path  # the working directory of the command


@pytest.fixture
def workspace(tmp_path, pristine_study, monkeypatch) -> Workspace:
    study = tmp_path / "study"
    shutil.copytree(pristine_study, study)
    work = tmp_path / "work"
    work.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the command runs from a folder that is neither the repository nor the study folder,
    # so relative paths resolve against the right base (or visibly fail to)
    monkeypatch.chdir(elsewhere)
    return Workspace(tmp_path, study, work, work / "runs", elsewhere)


def base_argv(ws: Workspace) -> list[str]:
    return ["--params", str(ws.study / "study.yaml"), "--runs-dir", str(ws.runs)]


def assert_refused(ws: Workspace, rc: int, out: str, err: str, expect: tuple[str, ...],
                   before: dict[str, str]) -> None:
    text = out + err
    assert rc != 0, f"exit 0 for a bad input:\n{text[-3000:]}"
    assert rc == 1, f"exit {rc}, expected 1 (an error, not an interrupt or a crash)"
    assert "Traceback" not in text, text[-4000:]
    for part in expect:
        assert part in err, f"{part!r} not in the message:\n{err[-3000:]}"
    assert err.startswith("error: "), err[:500]
    # nothing written into --runs-dir (the run stopped before anything ran) ...
    written = sorted(p for p in ws.runs.rglob("*")) if ws.runs.exists() else []
    assert not written, f"files written by a refused run: {written[:10]}"
    # ... nor beside it (../escaped), nor in the working directory
    assert sorted(p.name for p in ws.work.iterdir()) in ([], ["runs"])
    assert not any(ws.elsewhere.iterdir()), list(ws.elsewhere.iterdir())
    leaked = [p for p in ws.root.rglob("params.yaml")]
    assert not leaked, f"params.yaml written: {leaked}"
    trusted = [p for p in ws.root.rglob("manifest.json")
               if json.loads(p.read_text()).get("status") == "complete"]
    assert not trusted
    # inputs untouched (and no side files such as .aux.xml next to them)
    assert folder_digest(ws.study) == before, "the study folder was modified"


# --------------------------------------------------------------------------- mutations


def edit_yaml(fn: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    def mutate(study: Path) -> list[str]:
        path = study / "study.yaml"
        params = yaml.safe_load(path.read_text())
        fn(params)
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return []
    return mutate


def put(dotted: str, value) -> Callable[[Path], list[str]]:
    """Set ``dotted`` (creating sections) in study.yaml; value None writes YAML null."""
    def fn(params: dict) -> None:
        *parents, last = dotted.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return edit_yaml(fn)


def drop(dotted: str) -> Callable[[Path], list[str]]:
    def fn(params: dict) -> None:
        *parents, last = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        del node[last]
    return edit_yaml(fn)


def sets(*pairs: str) -> Callable[[Path], list[str]]:
    return lambda study: [arg for pair in pairs for arg in ("--set", pair)]


def args(*extra: str) -> Callable[[Path], list[str]]:
    return lambda study: list(extra)


def both(*mutations: Callable[[Path], list[str] | None]) -> Callable[[Path], list[str]]:
    def mutate(study: Path) -> list[str]:
        out: list[str] = []
        for m in mutations:
            out += m(study) or []
        return out
    return mutate


def write_file(relative: str, content: str | bytes) -> Callable[[Path], list[str]]:
    def mutate(study: Path) -> list[str]:
        path = study / relative
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return []
    return mutate


def remove_file(relative: str) -> Callable[[Path], list[str]]:
    return lambda study: (study / relative).unlink() or []


def truncate_file(relative: str, n_bytes: int) -> Callable[[Path], list[str]]:
    def mutate(study: Path) -> list[str]:
        path = study / relative
        path.write_bytes(path.read_bytes()[:n_bytes])
        return []
    return mutate


def rewrite_raster(relative: str, *, fill=None, crs="keep",
                   shift_m: float = 0.0) -> Callable[[Path], list[str]]:
    """Rewrite a tiny-study raster: constant ``fill``, no CRS, or shifted east by ``shift_m``."""
    def mutate(study: Path) -> list[str]:
        import rasterio
        from affine import Affine

        path = study / relative
        with rasterio.open(path) as src:
            data, profile = src.read(1), src.profile
        if fill is not None:
            data = np.full_like(data, fill)
        profile["transform"] = Affine(RES, 0.0, ORIGIN[0] + shift_m, 0.0, -RES, ORIGIN[1])
        if crs != "keep":
            profile["crs"] = crs
        path.unlink()
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
        return []
    return mutate


def edit_plots(fn: Callable[[list[dict]], list[dict]], *, header: list[str] | None = None,
               sep: str = ",") -> Callable[[Path], list[str]]:
    """Rewrite plots.csv through ``fn(rows)`` (rows as dicts of strings)."""
    def mutate(study: Path) -> list[str]:
        path = study / "plots.csv"
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        names = header or list(rows[0])
        rows = fn(rows)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=names, delimiter=sep, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(buf.getvalue())
        return []
    return mutate


def set_column(column: str, value: Callable[[dict], str], rows_idx=None):
    def fn(rows: list[dict]) -> list[dict]:
        for i, row in enumerate(rows):
            if rows_idx is None or i in rows_idx:
                row[column] = value(row)
        return rows
    return fn


def swap_lonlat(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["lon"], row["lat"] = row["lat"], row["lon"]
    return rows


def move_plots_to(x: float, y: float) -> Callable[[list[dict]], list[dict]]:
    """Every plot to one point given in the grid CRS (m)."""
    def fn(rows: list[dict]) -> list[dict]:
        import pyproj

        lon, lat = pyproj.Transformer.from_crs("EPSG:32649", "EPSG:4326",
                                               always_xy=True).transform(x, y)
        for row in rows:
            row["lon"], row["lat"] = f"{lon:.6f}", f"{lat:.6f}"
        return rows
    return fn


def shapefile_boundary_without_prj(study: Path) -> list[str]:
    """The boundary as a shapefile whose .prj got lost (a common e-mail accident)."""
    import geopandas as gpd

    shapes = gpd.read_file(study / "boundary.geojson")
    shapes.to_file(study / "county.shp")
    (study / "county.prj").unlink()
    return ["--set", f"data.boundary={study / 'county.shp'}"]


def write_geojson(features: list[dict]) -> Callable[[Path], list[str]]:
    return write_file("boundary.geojson",
                      json.dumps({"type": "FeatureCollection", "features": features}))


def shifted_boundary(dlon: float) -> Callable[[Path], list[str]]:
    def mutate(study: Path) -> list[str]:
        path = study / "boundary.geojson"
        gj = json.loads(path.read_text())
        for feature in gj["features"]:
            ring = feature["geometry"]["coordinates"][0]
            feature["geometry"]["coordinates"][0] = [[x + dlon, y] for x, y in ring]
        path.write_text(json.dumps(gj))
        return []
    return mutate


YEARS6 = [2016, 2017, 2018, 2019, 2020, 2021]

# --------------------------------------------------------------------------- the cases

CASES: list[Case] = [
    # -- the study file itself
    Case("empty_study_file", write_file("study.yaml", ""),
         ("study.yaml", "the study file is empty", "params/examples/")),
    Case("comments_only_study_file", write_file("study.yaml", "# my study\n# todo\n"),
         ("the study file is empty", "run without --params")),
    Case("study_file_is_a_list", write_file("study.yaml", "- study\n- grid\n"),
         ("study.yaml", "expected a mapping of sections", "params/quick.yaml")),
    Case("study_file_invalid_yaml", write_file("study.yaml", "study: {name: [tiny\n"),
         ("study.yaml", "not valid YAML", "fix the syntax")),
    Case("study_file_missing", args("--params", "no_such_study.yaml"),
         ("no_such_study.yaml", "parameter file not found", "pass an existing YAML file")),
    Case("study_file_is_a_csv", lambda s: ["--params", str(s / "plots.csv")],
         ("plots.csv", "expected a mapping of sections, got str")),
    Case("study_file_is_a_folder", lambda s: ["--params", str(s)],
         ("parameter file not found", "pass an existing YAML file")),
    # -- unknown keys, wrong types, out-of-range values
    Case("unknown_section", put("studdy", {"name": "x"}),
         ("studdy: unknown parameter", "did you mean 'study'")),
    Case("unknown_key", put("trends.alpah", 0.01),
         ("trends.alpah: unknown parameter", "did you mean 'alpha'")),
    Case("unknown_key_via_set", sets("models.rf.n_trees=5"),
         ("models.rf.n_trees: unknown parameter", "known: [")),
    Case("string_for_number", put("trends.alpha", "high"),
         ("trends.alpha: expected number, got str 'high'",)),
    Case("bool_for_number", put("grid.pixel_size_m", True),
         ("grid.pixel_size_m: expected number, got bool",)),
    Case("list_for_int", put("models.cv_folds", [3]),
         ("models.cv_folds: expected int, got list",)),
    Case("number_for_string", put("study.region_code", 12),
         ("study.region_code: expected str, got int",)),
    Case("scalar_for_section", put("trends", "fast"),
         ("trends: expected a section (mapping)",)),
    Case("null_for_required", put("trends.alpha", None),
         ("trends.alpha: is null but a value is required",)),
    Case("alpha_out_of_range", sets("trends.alpha=0.9"),
         ("trends.alpha: got 0.9; must be <= 0.5",)),
    Case("cv_folds_out_of_range", put("models.cv_folds", 1),
         ("models.cv_folds: got 1; must be >= 2",)),
    Case("negative_seed", put("study.seed", -1), ("study.seed: got -1; must be >= 0",)),
    Case("zero_workers", sets("compute.n_workers=0"), ("compute.n_workers: got 0; must be >= 1",)),
    Case("interval_out_of_range", put("maps.interval", 1.5), ("maps.interval: got 1.5",)),
    Case("even_composite_window", put("prep.composite_window", 2),
         ("prep.composite_window", "use an odd number of years")),
    Case("bad_choice_trend_method", put("trends.method", "sen"),
         ("trends.method: got 'sen'; expected one of",)),
    Case("unknown_scheduler", sets("compute.scheduler=gpu"),
         ("compute.scheduler: got 'gpu'; expected one of",)),
    Case("bad_holdout", put("models.holdout", "50pct"), ("models.holdout: got '50pct'",)),
    Case("unknown_model_family", put("models.candidates", ["rf", "svm"]),
         ("models.candidates: list item 'svm' is not one of",)),
    Case("unknown_stage", put("study.stages", ["01_data_prep", "06_magic"]),
         ("study.stages: list item '06_magic' is not one of",)),
    Case("stages_not_a_list", sets("study.stages=01_data_prep"),
         ("study.stages: expected a list, got str",)),
    Case("no_stages", put("study.stages", []), ("study.stages", "is empty", "list the stages")),
    Case("stages_out_of_order", put("study.stages", ["02_train_models", "01_data_prep"]),
         ("study.stages", "pipeline order", "01_data_prep, 02_train_models")),
    Case("stage_listed_twice", put("study.stages", ["01_data_prep", "01_data_prep"]),
         ("study.stages", "twice")),
    Case("rf_without_trees", put("models.rf.n_estimators", 0),
         ("models.rf.n_estimators: got 0; must be >= 1",)),
    Case("cnn_even_patch", put("models.cnn.patch_size_px", 8),
         ("models.cnn.patch_size_px", "use an odd number of pixels")),
    Case("zero_cv_block", put("models.cv_block_size_m", 0),
         ("models.cv_block_size_m: got 0; must be >= 1",)),
    Case("zoning_persistence_typo", put("zoning.persistence", "persistant"),
         ("zoning.persistence: got 'persistant'; expected one of",)),
    Case("zoning_rules_empty", put("zoning.rules", []),
         ("zoning.rules", "is empty", "give rules such as")),
    Case("zoning_rule_unknown_cluster",
         put("zoning.rules", [{"cluster": "HX", "future": "*", "zone": "protect"}]),
         ("zoning.rules[0].cluster: got 'HX'", "expected '*' or one of")),
    Case("zoning_rule_missing_zone", put("zoning.rules", [{"cluster": "HH", "future": "*"}]),
         ("zoning.rules[0]", "expected exactly the keys cluster, future, zone")),
    Case("region_code_with_space", put("study.region_code", "gd 2"),
         ("study.region_code", "letters, digits")),
    Case("memory_limit_not_a_size", sets("compute.memory_limit=lots"),
         ("compute.memory_limit: got 'lots'", "4GB")),
    Case("memory_limit_empty", sets("compute.memory_limit=''"),
         ("compute.memory_limit: got ''", "4GB")),
    Case("synthetic_plots_outside_years",
         sets("synthetic.enabled=true", "synthetic.nx_pixels=20", "synthetic.ny_pixels=16",
              "synthetic.plot_years=[1990]"),
         ("synthetic.plot_years", "[1990]", "study years (2000–2021)")),
    Case("synthetic_crs_geographic", sets("synthetic.enabled=true", "synthetic.crs=EPSG:4326"),
         ("synthetic.crs", "not projected")),
    # -- --set syntax and --from / --only / --runs-dir
    Case("set_without_equals", sets("trends.alpha"), ("--set 'trends.alpha'", "KEY=VALUE")),
    Case("set_empty_key_part", sets("trends..alpha=0.1"), ("not a dotted key path",)),
    Case("set_invalid_yaml", sets("trends.drivers=[temperature"),
         ("--set 'trends.drivers=[temperature'", "value is not valid YAML")),
    Case("set_below_a_number", sets("trends.alpha.value=0.1"),
         ("trends.alpha: expected number, got dict",)),
    Case("from_unknown_stage", args("--from", "07_report"),
         ("--from '07_report': not a stage of this study",)),
    Case("only_stage_without_upstream", args("--only", "04_trends"),
         ("04_trends needs 01_data_prep", "run it first")),
    Case("runs_dir_is_a_file", lambda s: ["--runs-dir", str(s / "plots.csv")],
         ("--runs-dir", "plots.csv", "is not a folder")),
    # -- run names
    Case("run_name_escapes", sets("study.name=../escaped"),
         ("study.name", "'../escaped'", "plain folder name")),
    Case("run_name_empty", put("study.name", ""), ("study.name", "''", "plain folder name")),
    Case("run_name_null", sets("study.name="), ("study.name: is null but a value is required",)),
    Case("run_name_with_slash", put("study.name", "a/b"), ("study.name", "plain folder name")),
    Case("run_name_absolute", sets("study.name=/tmp/elsewhere"),
         ("study.name", "plain folder name")),
    Case("run_name_dot", put("study.name", "."), ("study.name", "plain folder name")),
    Case("run_name_with_space", put("study.name", "my study"), ("study.name", "'my study'")),
    # -- parameters against each other and the data
    Case("maps_model_not_trained", put("maps.model", "cnn"),
         ("maps.model", "'cnn' was not trained", "set maps.model: best")),
    Case("unknown_driver", put("trends.drivers", ["temperature", "wind_speed"]),
         ("trends.drivers", "wind_speed", "name layers declared under data.layers")),
    Case("unknown_feature", put("models.features", ["ndvi", "lai"]),
         ("models.features", "'lai'", "data.layers")),
    Case("composite_feature_without_composites", put("models.features", ["ndvi_3yr", "dem"]),
         ("models.features", "ndvi_3yr", "prep.composite_window")),
    Case("no_features", put("models.features", []), ("models.features", "is empty")),
    Case("no_candidates", put("models.candidates", []), ("models.candidates", "is empty")),
    Case("too_few_years_for_trends", put("trends.min_valid_years", 8),
         ("trends.min_valid_years", "the study has 6 year(s)", "at most 6")),
    Case("three_year_study", both(put("data.years", [2016, 2017, 2018]),
                                  put("trends.min_valid_years", 3)),
         ("data.years", "need at least 5 years", "drop 04_trends")),
    Case("trends_variable_not_a_layer", both(put("trends.source_stage", "01_data_prep"),
                                             put("trends.variable", "lai")),
         ("trends.variable", "'lai' is not a layer",)),
    Case("trends_source_stage_not_run", both(
        put("study.stages", ["01_data_prep", "04_trends"]),
        put("trends.source_stage", "03_carbon_maps")),
        ("trends.source_stage", "03_carbon_maps", "add 03_carbon_maps to study.stages")),
    Case("zoning_source_stage_not_run", both(
        put("study.stages", ["01_data_prep", "04_trends", "05_zoning"]),
        put("trends.source_stage", "01_data_prep"), put("trends.variable", "ndvi"),
        put("zoning.source_stage", "03_carbon_maps")),
        ("zoning.source_stage", "03_carbon_maps", "add 03_carbon_maps to study.stages")),
    Case("zoning_variable_not_a_layer", both(put("zoning.source_stage", "01_data_prep"),
                                             put("zoning.variable", "lai")),
         ("zoning.variable", "'lai' is not a layer",)),
    Case("zoning_and_trends_differ", put("zoning.variable", "veg_carbon_density"),
         ("zoning.variable", "'veg_carbon_density'", "must describe the same series")),
    Case("augment_without_npp", put("prep.augment", True),
         ("prep.augment", "['npp'] are not layers of the cube", "set prep.augment: false")),
    Case("composite_variable_unknown", both(put("prep.composite_window", 3),
                                            put("prep.composite_variables", ["lai"])),
         ("prep.composite_variables", "'lai'",)),
    Case("lookup_table_missing", put("maps.lookup_table", "lookup.csv"),
         ("maps.lookup_table", "not found", "lookup.csv")),
    Case("lookup_table_without_pools", both(write_file("lookup.csv", "lucode,name\n1,forest\n"),
                                            put("maps.lookup_table", "lookup.csv")),
         ("maps.lookup_table", "expected pool columns c_above")),
    Case("lookup_table_negative_density", both(
        write_file("lookup.csv", "lucode,c_above,c_below,c_soil,c_dead\n1,-5,1,40,0\n"),
        put("maps.lookup_table", "lookup.csv")),
        ("maps.lookup_table", "negative densities")),
    # -- the target grid
    Case("pixel_size_needs_terabytes", put("grid.pixel_size_m", 0.01),
         ("grid.pixel_size_m", "GiB", "coarser pixel size")),
    Case("pixel_larger_than_the_study", put("grid.pixel_size_m", 5000),
         ("grid.pixel_size_m", "only 2 x 2 pixel(s)", "finer pixel size")),
    Case("negative_pixel_size", put("grid.pixel_size_m", -500), ("grid.pixel_size_m: got -500",)),
    Case("zero_pixel_size", put("grid.pixel_size_m", 0),
         ("grid.pixel_size_m", "set the target pixel size in metres")),
    Case("bad_crs_string", put("grid.crs", "EPSG:999999"),
         ("grid.crs", "EPSG:999999", "cannot interpret")),
    Case("geographic_grid_crs", put("grid.crs", "EPSG:4326"),
         ("grid.crs", "not projected", "UTM")),
    Case("no_grid_crs", put("grid.crs", None), ("grid.crs", "set the target grid CRS")),
    Case("bounds_three_numbers", put("grid.bounds_m", [700000, 2552000, 710000]),
         ("grid.bounds_m", "four numbers")),
    Case("bounds_inverted", put("grid.bounds_m", [710000, 2552000, 700000, 2560000]),
         ("grid.bounds_m", "xmin < xmax")),
    Case("bounds_far_from_rasters", put("grid.bounds_m", [900000, 100000, 910000, 110000]),
         ("grid.bounds_m", "overlaps none of the input rasters", "Check grid.bounds_m")),
    # -- data.years and data.layers
    Case("no_years", put("data.years", None), ("data.years", "list the study years")),
    Case("year_as_string", put("data.years", [2016, "2017", 2018, 2019, 2020, 2021]),
         ("data.years: list item '2017' is not int",)),
    Case("duplicate_year", put("data.years", [2016, 2016, 2017, 2018, 2019, 2020, 2021]),
         ("data.years", "2016", "more than once")),
    Case("year_without_files", put("data.years", YEARS6 + [2022]),
         ("data.layers.ndvi.path", "ndvi_2022.tif", "not found")),
    Case("no_layers", put("data.layers", {}), ("data.layers", "no input layers")),
    Case("layer_not_a_mapping", put("data.layers.dem", "rasters/dem.tif"),
         ("data.layers.dem", "expected a mapping")),
    Case("layer_kind_missing", drop("data.layers.dem.kind"),
         ("data.layers.dem.kind: missing", "every layer needs kind and units")),
    Case("layer_kind_unknown", put("data.layers.dem.kind", "numeric"),
         ("data.layers.dem.kind: got 'numeric'",)),
    Case("layer_units_missing", drop("data.layers.ndvi.units"),
         ("data.layers.ndvi.units", "every layer needs kind and units")),
    Case("layer_units_not_text", put("data.layers.dem.units", ["m"]),
         ("data.layers.dem.units: expected text", "degC")),
    Case("layer_unknown_option", put("data.layers.ndvi.scale", 0.1),
         ("data.layers.ndvi.scale: unknown layer option",)),
    Case("scale_factor_not_a_number", put("data.layers.ndvi.scale_factor", "0.1x"),
         ("data.layers.ndvi.scale_factor", "expected a number, got '0.1x'")),
    Case("nodata_not_a_number", put("data.layers.dem.nodata", "none"),
         ("data.layers.dem.nodata", "expected a number")),
    Case("band_zero", put("data.layers.dem.band", 0),
         ("data.layers.dem.band", "1-based band number")),
    Case("missing_band", put("data.layers.dem.band", 2),
         ("data.layers.dem.path", "dem.tif has 1 band(s) but band 2")),
    Case("band_years_beyond_bands", both(
        put("data.layers.dem.band_years", {y: i + 1 for i, y in enumerate(YEARS6)})),
        ("data.layers.dem.path", "dem.tif has 1 band(s) but band 6")),
    Case("band_and_band_years", both(put("data.layers.dem.band", 1),
                                     put("data.layers.dem.band_years", {2016: 1})),
         ("data.layers.dem", "not both")),
    Case("unknown_resampling", put("data.layers.dem.resampling", "cubic_spline_x"),
         ("data.layers.dem", "resampling 'cubic_spline_x' is not one of")),
    Case("categorical_resampling_average", put("data.layers.landuse.resampling", "average"),
         ("data.layers.landuse.resampling", "would invent class codes", "use mode")),
    Case("band_years_without_a_study_year", both(
        put("data.layers.dem.band_years", {2016: 1, 2017: 1}),
        put("data.layers.dem.path", "rasters/dem.tif")),
        ("data.layers.dem.band_years", "no band for year(s) [2018, 2019, 2020, 2021]")),
    Case("categorical_with_scale_factor", put("data.layers.landuse.scale_factor", 0.1),
         ("data.layers.landuse", "scale_factor/offset make no sense")),
    Case("landuse_declared_continuous", put("data.layers.landuse.kind", "continuous"),
         ("data.layers.landuse.kind", "declare it kind: categorical")),
    Case("continuous_declared_categorical", put("data.layers.dem.kind", "categorical"),
         ("data.layers.dem.kind", "fractional values", "declare it kind: continuous")),
    Case("layer_file_missing", remove_file("rasters/ndvi_2018.tif"),
         ("data.layers.ndvi.path", "ndvi_2018.tif", "not found")),
    Case("static_layer_missing", remove_file("rasters/dem.tif"),
         ("data.layers.dem.path", "dem.tif")),
    Case("layer_path_is_a_folder", put("data.layers.dem.path", "rasters"),
         ("data.layers.dem.path", "not found")),
    Case("text_file_named_tif", write_file("rasters/precipitation_2018.tif", "mm per year\n"),
         ("data.layers.precipitation.path", "precipitation_2018.tif",
          "not a raster GDAL can read")),
    Case("empty_tif", write_file("rasters/temperature_2019.tif", b""),
         ("data.layers.temperature.path", "temperature_2019.tif", "not a raster")),
    Case("truncated_tif", truncate_file("rasters/ndvi_2020.tif", 600),
         ("data.layers.ndvi.path", "ndvi_2020.tif", "not a raster GDAL can read")),
    Case("all_nodata_raster", rewrite_raster("rasters/precipitation_2019.tif", fill=NODATA),
         ("data.layers.precipitation.path", "precipitation_2019.tif", "nodata or NaN")),
    Case("all_nan_raster", rewrite_raster("rasters/ndvi_2017.tif", fill=np.nan),
         ("data.layers.ndvi.path", "ndvi_2017.tif", "nodata or NaN")),
    Case("all_nodata_landuse", rewrite_raster("rasters/landuse_2021.tif", fill=0),
         ("data.layers.landuse.path", "landuse_2021.tif", "nodata")),
    Case("raster_without_crs", rewrite_raster("rasters/dem.tif", crs=None),
         ("data.layers.dem.path", "dem.tif has no CRS", "assign one")),
    Case("raster_far_from_grid", rewrite_raster("rasters/temperature_2016.tif", shift_m=500000),
         ("data.layers.temperature.path", "temperature_2016.tif",
          "does not overlap the target grid")),
    # -- the boundary
    Case("boundary_not_a_vector_file", write_file("boundary.geojson", "county outline\n"),
         ("data.boundary", "boundary.geojson", "not a vector file")),
    Case("boundary_is_a_raster", put("data.boundary", "rasters/dem.tif"),
         ("data.boundary", "dem.tif", "not a vector file")),
    Case("boundary_missing", remove_file("boundary.geojson"),
         ("data.boundary", "file not found", "boundary.geojson")),
    Case("boundary_without_crs", shapefile_boundary_without_prj,
         ("data.boundary", "has no CRS", "missing .prj")),
    Case("boundary_without_features", write_geojson([]),
         ("data.boundary", "holds no features")),
    Case("boundary_far_from_rasters", shifted_boundary(20.0),
         ("data.boundary", "overlaps none of the input rasters", "Check data.boundary")),
    Case("boundary_filter_unknown_column", put("data.boundary_filter",
                                               {"column": "NAME_1", "value": "x"}),
         ("data.boundary_filter.column", "'NAME_1'", "columns present")),
    Case("boundary_filter_no_match", put("data.boundary_filter",
                                         {"column": "name", "value": "Atlantis"}),
         ("data.boundary_filter.value", "'Atlantis'", "tiny county")),
    Case("boundary_filter_malformed", put("data.boundary_filter", {"col": "name"}),
         ("data.boundary_filter", "expected {column: <attribute>, value:")),
    # -- the field plots
    Case("plots_empty_file", write_file("plots.csv", ""),
         ("data.plots.path", "plots.csv is empty", "data.plots: null")),
    Case("plots_header_only", write_file("plots.csv", "plot_id,year,lon,lat,veg_c,soil_c\n"),
         ("data.plots.path", "has a header but no rows")),
    Case("plots_header_and_blank_lines",
         write_file("plots.csv", "plot_id,year,lon,lat,veg_c,soil_c\n\n\n"),
         ("data.plots.path", "has a header but no rows")),
    Case("plots_binary_file", lambda s: shutil.copy(s / "rasters/dem.tif", s / "plots.csv") and [],
         ("data.plots.path", "plots.csv", "not a readable CSV")),
    Case("plots_semicolon_separated", edit_plots(lambda rows: rows, sep=";"),
         ("data.plots.x_column", "'lon' not in", "separated by ';'")),
    Case("negative_densities", edit_plots(set_column("veg_c", lambda r: "-120", {1, 5})),
         ("data.plots.veg_column", "2 negative carbon densities", "line(s) 3, 7",
          "fix or remove those rows")),
    Case("absurd_densities", edit_plots(set_column("soil_c", lambda r: "52000", {0})),
         ("data.plots.soil_column", "above 4000", "line(s) 2", "check the units")),
    Case("absurd_factor", put("data.plots.veg_factor", 100),
         ("data.plots.veg_column", "check the units and veg_factor (now 100)")),
    Case("negative_factor", put("data.plots.soil_factor", -1),
         ("data.plots.soil_column", "negative carbon densities")),
    Case("density_column_empty", edit_plots(set_column("soil_c", lambda r: "")),
         ("data.plots.soil_column", "'soil_c'", "has no values", "soil_column: null")),
    Case("factor_not_a_number", put("data.plots.veg_factor", "0.47x"),
         ("data.plots.veg_factor", "expected a number, got '0.47x'")),
    Case("non_numeric_density", edit_plots(set_column("veg_c", lambda r: "12,5", {3})),
         ("data.plots.veg_column", "'veg_c'", "non-numeric", "line(s) 5")),
    Case("missing_latitude", edit_plots(set_column("lat", lambda r: "", {2})),
         ("data.plots.y_column", "'lat'", "empty", "line(s) 4")),
    Case("lonlat_swapped_in_file", edit_plots(swap_lonlat),
         ("data.plots", "swap data.plots.x_column and y_column")),
    Case("lonlat_swapped_in_yaml", both(put("data.plots.x_column", "lat"),
                                        put("data.plots.y_column", "lon")),
         ("data.plots", "swap data.plots.x_column and y_column")),
    Case("all_plots_off_grid", edit_plots(set_column("lon", lambda r: str(float(r["lon"]) + 3))),
         ("data.plots", "no plot is usable", "140 off the grid", "data.plots.crs")),
    Case("plots_outside_boundary", both(
        put("grid.bounds_m", [ORIGIN[0], ORIGIN[1] - NY * RES, ORIGIN[0] + NX * RES, ORIGIN[1]]),
        edit_plots(move_plots_to(ORIGIN[0] + 400, ORIGIN[1] - 400))),
        ("data.plots", "no plot is usable", "140 on the grid but outside the boundary")),
    Case("plot_years_outside_study", edit_plots(set_column("year", lambda r: "1999")),
         ("data.plots", "no plot is usable", "140 from years outside the study",
          "data.years")),
    Case("plots_crs_wrong", put("data.plots.crs", "EPSG:32649"),
         ("data.plots", "no plot is usable", "look like degrees",
          "set data.plots.crs: EPSG:4326")),
    Case("plots_crs_garbage", put("data.plots.crs", "WGS84-ish"),
         ("  - data.plots.crs: cannot interpret", "EPSG:4326")),
    Case("plots_column_missing", put("data.plots.veg_column", "agb"),
         ("data.plots.veg_column", "column 'agb' not in", "plots.csv")),
    Case("plots_no_targets", both(put("data.plots.veg_column", None),
                                  put("data.plots.soil_column", None)),
         ("data.plots", "name at least one measured pool's column")),
    Case("plots_unknown_option", put("data.plots.lon_col", "lon"),
         ("data.plots.lon_col: unknown option",)),
    Case("plots_required_option_missing", drop("data.plots.year_column"),
         ("data.plots.year_column", "missing")),
    Case("plots_file_missing", remove_file("plots.csv"),
         ("data.plots.path: file not found", "plots.csv")),
    Case("plots_not_a_mapping", put("data.plots", "plots.csv"),
         ("data.plots: expected dict, got str",)),
    Case("relative_set_plots_path", sets("data.plots.path=plots.csv"),
         ("data.plots.path: file not found", "elsewhere/plots.csv",
          "relative to the folder the command runs in")),
    Case("relative_set_layer_path", sets("data.layers.dem.path=rasters/dem.tif"),
         ("data.layers.dem.path", "elsewhere/rasters/dem.tif",
          "relative to the folder the command runs in")),
]


def test_enough_distinct_cases():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_refused_in_process(case: Case, workspace: Workspace, capsys):
    extra = case.mutate(workspace.study) or []
    before = folder_digest(workspace.study)
    rc = run_all.main(base_argv(workspace) + extra)
    out, err = capsys.readouterr()
    assert_refused(workspace, rc, out, err, case.expect, before)


SUBPROCESS_CASES = ["empty_study_file", "run_name_escapes", "text_file_named_tif",
                    "negative_densities", "plots_empty_file", "lonlat_swapped_in_file"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_refused_through_a_real_process(case_id: str, workspace: Workspace):
    case = next(c for c in CASES if c.id == case_id)
    extra = case.mutate(workspace.study) or []
    before = folder_digest(workspace.study)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "run_all.py"),
                             *base_argv(workspace), *extra], cwd=workspace.elsewhere,
                            capture_output=True, text=True, timeout=120)
    assert_refused(workspace, result.returncode, result.stdout, result.stderr, case.expect,
                   before)


# --------------------------------------------------------------------------- warnings


def _resolved(study: Path, overrides=()) -> dict:
    from terracarbon.pipeline.params import load_params

    return load_params(study / "study.yaml", overrides)


def test_the_tiny_study_passes_the_checks_without_warnings(workspace):
    from terracarbon.pipeline import preflight

    params = _resolved(workspace.study)
    assert preflight.check_study(params, params["study"]["stages"]) == []


def test_self_intersecting_boundary_is_a_warning(workspace):
    """A bow-tie polygon is repaired by data prep; the user is told (not silently)."""
    from terracarbon.pipeline import preflight

    gj = json.loads((workspace.study / "boundary.geojson").read_text())
    ring = gj["features"][0]["geometry"]["coordinates"][0]
    # corners of the densified rectangle are at 0, 8, 16, 24: swap two → a bow tie
    bow = [ring[0], ring[16], ring[8], ring[24], ring[0]]
    gj["features"][0]["geometry"]["coordinates"][0] = bow
    (workspace.study / "boundary.geojson").write_text(json.dumps(gj))
    params = _resolved(workspace.study)
    warnings = preflight.check_study(params, ["01_data_prep"])
    assert any("data.boundary" in w and "self-intersecting" in w for w in warnings), warnings


def test_rare_but_possible_densities_are_a_warning(workspace):
    from terracarbon.pipeline import preflight

    edit_plots(set_column("veg_c", lambda r: "650", {4}))(workspace.study)
    params = _resolved(workspace.study)
    warnings = preflight.check_study(params, ["01_data_prep"])
    assert any("data.plots.veg_column" in w and "line(s) 6" in w for w in warnings), warnings


def test_some_plots_off_grid_are_a_warning_with_counts(workspace):
    from terracarbon.pipeline import preflight

    edit_plots(set_column("lon", lambda r: str(float(r["lon"]) + 3), {0, 1, 2}))(workspace.study)
    edit_plots(set_column("year", lambda r: "1990", {10}))(workspace.study)
    params = _resolved(workspace.study)
    warnings = preflight.check_study(params, ["01_data_prep"])
    assert any("3 off the grid" in w and "1 from years outside the study" in w
               for w in warnings), warnings


def test_grid_layer_too_big_for_memory_names_the_key(workspace):
    """The memory check compares with this machine: 1 m pixels over 8 km are fine, 1 cm not."""
    from terracarbon.errors import ParameterError
    from terracarbon.pipeline import preflight

    params = _resolved(workspace.study, ["grid.pixel_size_m=1"])
    preflight.check_study(params, ["01_data_prep"])  # 8000 x 6000 px: 0.36 GiB, allowed
    params = _resolved(workspace.study, ["grid.pixel_size_m=0.01"])
    with pytest.raises(ParameterError, match="grid.pixel_size_m"):
        preflight.check_study(params, ["01_data_prep"])


def test_nx_ny_constants_match_the_files(pristine_study):
    import rasterio

    with rasterio.open(pristine_study / "rasters" / "dem.tif") as src:
        assert (src.width, src.height) == (NX, NY)
