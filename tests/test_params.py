"""Parameter layering and validation."""

from __future__ import annotations

import pytest
import yaml

from terracarbon.pipeline import params
from terracarbon.errors import ParameterError


def write(path, obj):
    path.write_text(yaml.safe_dump(obj))
    return path


def test_layering_default_study_override(tmp_path):
    study = write(tmp_path / "s.yaml", {"study": {"name": "x"}, "trends": {"alpha": 0.1}})
    p = params.load_params(study, ["trends.alpha=0.01", "zoning.permutations=99"])
    assert p["study"]["name"] == "x"  # study file beats default
    assert p["trends"]["alpha"] == 0.01  # override beats study file
    assert p["zoning"]["permutations"] == 99
    assert p["trends"]["min_valid_years"] == 8  # untouched default survives the merge
    assert p["_meta"]["overrides"] == ["trends.alpha=0.01", "zoning.permutations=99"]


def test_every_problem_listed_in_one_error(tmp_path):
    study = write(tmp_path / "s.yaml", {"trends": {"alpah": 0.1, "min_valid_years": "eight"},
                                        "zoning": {"contiguity": "king"},
                                        "models": {"cv_folds": 1}})
    with pytest.raises(ParameterError) as err:
        params.load_params(study)
    msg = str(err.value)
    assert "4 problem(s)" in msg
    assert "trends.alpah: unknown parameter" in msg and "did you mean 'alpha'" in msg
    assert "trends.min_valid_years: expected int, got str 'eight'" in msg
    assert "zoning.contiguity: got 'king'; expected one of ['queen', 'rook']" in msg
    assert "models.cv_folds: got 1; must be >= 2" in msg


def test_bool_is_not_a_number():
    with pytest.raises(ParameterError, match="trends.alpha: expected number, got bool"):
        params.load_params(None, ["trends.alpha=true"])


def test_unknown_section_and_bad_override_syntax():
    with pytest.raises(ParameterError, match="trendz: unknown parameter"):
        params.load_params(None, ["trendz.alpha=0.1"])
    with pytest.raises(ParameterError, match="expected KEY=VALUE"):
        params.load_params(None, ["trends.alpha"])


def test_stage_list_items_checked():
    with pytest.raises(ParameterError, match="list item '06_magic' is not one of"):
        params.load_params(None, ["study.stages=[01_data_prep, 06_magic]"])


def test_real_data_missing_files_and_columns_reported(tmp_path):
    csv = tmp_path / "plots.csv"
    csv.write_text("lon,lat,year,agb\n113.1,23.1,2018,50\n")
    study = write(tmp_path / "real.yaml", {
        "synthetic": {"enabled": False},
        "grid": {"crs": "EPSG:32649", "pixel_size_m": 1000},
        "data": {"years": [2000, 2001], "boundary": "nope.geojson",
                 "layers": {"ndvi": {"path": "ndvi_{year}.tif", "kind": "continuous"},
                            "lu": {"path": "lu.tif", "kind": "nominal"}},
                 "plots": {"path": "plots.csv", "x_column": "lon", "y_column": "lat",
                           "year_column": "year", "veg_column": "veg_c"}}})
    with pytest.raises(ParameterError) as err:
        params.load_params(study)
    msg = str(err.value)
    # relative paths resolve against the study file's folder
    assert f"{tmp_path / 'ndvi_2000.tif'}" in msg and "2 file(s) not found" in msg
    assert "data.layers.lu.kind: got 'nominal'" in msg
    assert f"data.boundary: file not found: {tmp_path / 'nope.geojson'}" in msg
    assert "data.plots.veg_column: column 'veg_c' not in" in msg and "agb" in msg


def test_real_data_requires_grid_and_layers():
    with pytest.raises(ParameterError) as err:
        params.load_params(None, ["synthetic.enabled=false"])
    msg = str(err.value)
    assert "data.layers: no input layers" in msg
    assert "grid.crs" in msg and "grid.pixel_size_m" in msg


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParameterError, match="parameter file not found"):
        params.load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed\n")
    with pytest.raises(ParameterError, match="not valid YAML"):
        params.load_params(bad)


def test_shipped_param_files_are_valid():
    root = params.REPO_ROOT / "params"
    for path in [root / "quick.yaml", *sorted((root / "examples").glob("*.yaml"))]:
        params.load_params(path, validate_files=False)


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1, "c": [1]}}
    out = params.deep_merge(base, {"a": {"b": 2}})
    assert out == {"a": {"b": 2, "c": [1]}} and base == {"a": {"b": 1, "c": [1]}}


def test_composite_window_must_be_odd(tmp_path):
    study = write(tmp_path / "s.yaml", {"prep": {"composite_window": 4,
                                                 "composite_variables": "ndvi"}})
    with pytest.raises(ParameterError) as err:
        params.load_params(study)
    msg = str(err.value)
    assert "prep.composite_window: = 4: use an odd number of years" in msg
    assert "prep.composite_variables" in msg


def test_flux_choose_by_must_be_a_scheme_that_runs(tmp_path):
    study = write(tmp_path / "s.yaml", {"flux": {"schemes": ["random", "year"]}})
    with pytest.raises(ParameterError, match=r"flux.choose_by: = 'site' is not among "
                                             r"flux.schemes \['random', 'year'\]"):
        params.load_params(study)
    for bad, words in (([], "flux.schemes: is empty"), (["random", "loso"], "flux.schemes")):
        with pytest.raises(ParameterError, match=words):
            params.load_params(write(tmp_path / "b.yaml", {"flux": {"schemes": bad}}))
    ok = params.load_params(write(tmp_path / "ok.yaml", {"flux": {"schemes": ["site"]}}))
    assert ok["flux"]["schemes"] == ["site"] and ok["flux"]["choose_by"] == "site"


def test_checking_a_study_loads_no_spatial_statistics():
    """The zoning rules are checked with their own light grammar (spatial.rules), so every
    run_all start validates its parameters without importing the statistics behind stage
    05 (dask.array, scipy.stats, the numba kernels): about 2 s per process before."""
    import subprocess
    import sys

    heavy = ("terracarbon.spatial.autocorrelation", "terracarbon.spatial.zoning",
             "terracarbon.spatial.kernels", "scipy.stats", "numba", "dask.array")
    code = ("import sys\n"
            "from terracarbon.pipeline.params import load_params\n"
            "load_params(None)\n"
            f"print([m for m in {heavy!r} if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_zoning_rules_are_one_grammar_for_the_check_and_the_stage():
    import importlib

    from terracarbon import spatial
    from terracarbon.spatial import rules, zoning

    assert zoning.parse_rules is rules.parse_rules
    assert spatial.CLUSTER_CLASSES is rules.CLUSTER_CLASSES
    # every public name of tc.spatial is the object its module defines
    for name in spatial.__all__:
        home = importlib.import_module(f"terracarbon.spatial.{spatial._HOME[name]}")
        assert getattr(spatial, name) is getattr(home, name), name
    assert {"kernels", "rules", "zoning"} <= set(dir(spatial))
    with pytest.raises(ParameterError, match=r"zoning.rules\[0\].cluster"):
        params.load_params(None, ["zoning.rules=[{cluster: XX, future: '*', zone: a}]"])
