"""Stage contexts, manifests and skip logic (no notebooks involved)."""

from __future__ import annotations

import json

import pytest

from terracarbon.pipeline import params as tc_params
from terracarbon.pipeline import report
from terracarbon.pipeline import stages
from terracarbon.errors import ParameterError, StageError

from helpers import assert_complete_stage, write_placeholder_outputs


@pytest.fixture()
def resolved():
    return tc_params.load_params(tc_params.REPO_ROOT / "params" / "quick.yaml")


def sections(p, stage_id):
    return {name: p[name] for name in stages.STAGES[stage_id].sections}


def complete_stage(run_dir, p, stage_id, payload="x"):
    ctx = stages.open_stage(run_dir, stage_id, params=sections(p, stage_id))
    write_placeholder_outputs(ctx, payload)
    ctx.headline("total", 1.5, units="Pg C", text="Total carbon")
    stages.finish_stage(ctx)
    return ctx


def test_manifest_contents(tmp_path, resolved):
    ctx = complete_stage(tmp_path, resolved, "01_data_prep")
    m = json.loads((tmp_path / "01_data_prep" / "manifest.json").read_text())
    assert m["status"] == "complete" and m["stage"] == "01_data_prep"
    assert m["outputs"]["samples"] == {"path": "01_data_prep/samples.csv", "units": "t C ha-1",
                                       "description": "field plots with same-year covariates"}
    assert_complete_stage(tmp_path, "01_data_prep", check_datasets=False)
    assert set(m["params"]) == set(stages.STAGES["01_data_prep"].sections)
    assert m["params_hash"] == stages.params_hash(sections(resolved, "01_data_prep"))
    assert m["stage_hash"] == ctx.stage_hash
    assert m["headlines"]["total"]["units"] == "Pg C"
    prov = m["provenance"]
    assert prov["packages"]["numpy"] and prov["python"]
    assert len(prov["git_commit"] or "") in (0, 40) and "git_dirty" in prov


def test_downstream_needs_complete_upstream(tmp_path, resolved):
    with pytest.raises(StageError, match="needs stage 01_data_prep .* manifest is missing"):
        stages.open_stage(tmp_path, "02_train_models", params=sections(resolved, "02_train_models"))
    complete_stage(tmp_path, resolved, "01_data_prep")
    ctx = stages.open_stage(tmp_path, "02_train_models", params=sections(resolved, "02_train_models"))
    assert ctx.input("01_data_prep", "samples").read_text() == "x"
    with pytest.raises(StageError, match="has no output 'truth'"):
        ctx.input("01_data_prep", "truth")
    assert ctx.input("01_data_prep", "truth", required=False) is None
    with pytest.raises(StageError, match="does not declare as an input"):
        ctx.input("01_data_prep", "vif")


def test_up_to_date_follows_params_and_upstream(tmp_path, resolved):
    ctx1 = complete_stage(tmp_path, resolved, "01_data_prep")
    ctx2 = complete_stage(tmp_path, resolved, "02_train_models")
    assert stages.is_up_to_date(tmp_path, "02_train_models", ctx2.stage_hash)
    # a changed parameter of stage 1 changes stage 1's hash, hence stage 2's expected hash
    changed = tc_params.load_params(tc_params.REPO_ROOT / "params" / "quick.yaml",
                                    ["prep.outlier_sigma=2.5"])
    ctx1b = complete_stage(tmp_path, changed, "01_data_prep")
    assert ctx1b.stage_hash != ctx1.stage_hash
    expected2 = stages.stage_hash(stages.params_hash(sections(changed, "02_train_models")),
                                  stages.upstream_hashes(tmp_path, "02_train_models"))
    assert not stages.is_up_to_date(tmp_path, "02_train_models", expected2)
    # a deleted output makes a stage stale even with matching hashes
    (tmp_path / "01_data_prep" / "samples.csv").unlink()
    assert not stages.is_up_to_date(tmp_path, "01_data_prep", ctx1b.stage_hash)


def test_invalid_section_rejected(tmp_path, resolved):
    bad = sections(resolved, "01_data_prep")
    bad["prep"] = {**bad["prep"], "outlier_sigma": "three"}
    with pytest.raises(ParameterError, match="prep.outlier_sigma: expected number"):
        stages.open_stage(tmp_path, "01_data_prep", params=bad)


def test_record_requires_written_file_and_finish_requires_outputs(tmp_path, resolved):
    ctx = stages.open_stage(tmp_path, "01_data_prep", params=sections(resolved, "01_data_prep"))
    with pytest.raises(StageError, match="was not written"):
        ctx.record("cube", ctx.stage_dir / "cube.zarr")
    with pytest.raises(StageError, match=r"required outputs \['samples', 'vif', 'correlation'\]"):
        stages.finish_stage(ctx)
    assert stages.read_manifest(ctx.stage_dir)["status"] == "running"


def test_outputs_are_checked_against_the_stage_spec(tmp_path, resolved):
    import pandas as pd

    ctx = stages.open_stage(tmp_path, "01_data_prep", params=sections(resolved, "01_data_prep"))
    with pytest.raises(StageError, match="declares no output 'table'"):
        ctx.save("table", pd.DataFrame({"a": [1]}))
    stray = ctx.path("elsewhere.csv")
    stray.write_text("a\n1\n")
    with pytest.raises(StageError, match="declares 'vif.csv'"):
        ctx.record("vif", stray)
    # save writes by the declared kind, at the declared path, with the declared units
    path = ctx.save("correlation", pd.DataFrame({"r": [1.0]}, index=["ndvi"]))
    assert path == tmp_path / "01_data_prep" / "correlation.csv"
    assert pd.read_csv(path, index_col=0).loc["ndvi", "r"] == 1.0  # index kept (spec index=True)
    assert ctx.outputs["correlation"]["units"] == "1"
    # a NetCDF cube is the same output as the declared Zarr one
    assert ctx.path_of("cube", suffix=".nc").name == "cube.nc"
    with pytest.raises(StageError, match="cannot be written as"):
        ctx.path_of("cube", suffix=".tif")


def test_index_page_offline_and_links(tmp_path, resolved):
    complete_stage(tmp_path, resolved, "01_data_prep")
    (tmp_path / "01_data_prep" / "r.html").write_text("<html></html>")
    stages.update_manifest(tmp_path / "01_data_prep", report="01_data_prep/r.html")
    manifests = [stages.read_manifest(tmp_path / "01_data_prep"),
                 {"stage": "02_train_models", "status": "not run", "title": "Model training"}]
    page = report.render_index(tmp_path, manifests, params_file="params.yaml", title="t",
                               provenance={"git_commit": "abc"}).read_text()
    assert 'href="01_data_prep/r.html"' in page
    assert "Total carbon: <b>1.5</b> Pg C" in page and "not run" in page
    assert report.external_references(page) == []


def test_external_reference_detector():
    page = ('<script src="https://cdn.x/bokeh.js"></script><link href="//fonts.x/css">'
            '<style>@import url("https://f.x/a.css")</style><script>var a="http://x";</script>')
    assert report.external_references(page) == ["//fonts.x/css", "https://cdn.x/bokeh.js",
                                                 "https://f.x/a.css"]


def test_stage_list_does_not_change_hashes(resolved):
    subset = tc_params.load_params(tc_params.REPO_ROOT / "params" / "quick.yaml",
                                   ["study.stages=[01_data_prep]"])
    assert stages.params_hash(sections(subset, "01_data_prep")) == stages.params_hash(
        sections(resolved, "01_data_prep"))
    other_seed = tc_params.load_params(tc_params.REPO_ROOT / "params" / "quick.yaml",
                                       ["study.seed=7"])
    assert stages.params_hash(sections(other_seed, "01_data_prep")) != stages.params_hash(
        sections(resolved, "01_data_prep"))


def test_external_reference_detector_sees_urls_inside_bokeh_json():
    page = ('<script type="application/json">{"type":"object","name":"ImportedStyleSheet",'
            '"id":"p1","attributes":{"url":"https://cdn.holoviz.org/panel/x.css"}}</script>')
    assert report.external_references(page) == ["https://cdn.holoviz.org/panel/x.css"]
    escaped = page.replace('"', '\\"')  # the same document embedded in a JS string
    assert report.external_references(escaped) == ["https://cdn.holoviz.org/panel/x.css"]


def test_params_hash_is_order_independent_and_sensitive():
    a = {"trends": {"alpha": 0.05, "fdr": False}, "study": {"name": "q"}}
    b = {"study": {"name": "q"}, "trends": {"fdr": False, "alpha": 0.05}}
    assert stages.params_hash(a) == stages.params_hash(b)
    b["trends"]["alpha"] = 0.01
    assert stages.params_hash(a) != stages.params_hash(b)


def test_downstream_parameter_reruns_only_downstream_stages(resolved):
    """A changed trends parameter leaves data prep, training and maps up to date; a changed
    scheduler or process count changes no stage (they do not change results)."""
    def hashes(p):
        return {s: stages.params_hash(sections(p, s)) for s in stages.STAGES}

    base = hashes(resolved)
    alpha = hashes(tc_params.load_params(tc_params.REPO_ROOT / "params" / "quick.yaml",
                                         ["trends.alpha=0.01"]))
    assert [s for s in base if base[s] != alpha[s]] == ["04_trends"]
    where = hashes(tc_params.load_params(tc_params.REPO_ROOT / "params" / "quick.yaml",
                                         ["compute.scheduler=synchronous", "models.n_jobs=1"]))
    assert where == base
    chunks = hashes(tc_params.load_params(tc_params.REPO_ROOT / "params" / "quick.yaml",
                                          ["compute.chunk_px=16"]))
    assert all(chunks[s] != base[s] for s in base)  # chunking may change float32 sums


def test_index_lists_outputs_with_units_and_input_fingerprints(tmp_path, resolved):
    complete_stage(tmp_path, resolved, "01_data_prep")
    stages.update_manifest(tmp_path / "01_data_prep",
                           inputs={"/data/plots.csv": "0123456789abcdef"})
    page = report.render_index(tmp_path, [stages.read_manifest(tmp_path / "01_data_prep")],
                               params_file="params.yaml", title="t",
                               warnings=["data.plots: 3 plot(s) off the grid"]).read_text()
    assert '<a href="01_data_prep/samples.csv"><code>samples</code></a> <small>[t C ha-1]</small>' in page
    assert "0123456789abcdef" in page and "/data/plots.csv" in page
    assert "3 plot(s) off the grid" in page


def test_a_downstream_parameter_never_retrains_upstream_stages():
    """#19: changing maps/trends/zoning settings leaves the training stage's hash alone (its
    skip decision), while the stages that read them rerun."""
    import copy

    from terracarbon.pipeline import params as P
    from terracarbon.pipeline.stages import STAGES, params_hash

    base = P.load_params(P.DEFAULT_PARAMS)

    def hashes(p):
        return {sid: params_hash({name: p[name] for name in spec.sections})
                for sid, spec in STAGES.items()}

    before = hashes(base)
    for key, value, reruns in (("maps.interval", 0.8, {"03_carbon_maps"}),
                               ("pools", {"veg": "model"}, {"03_carbon_maps"}),
                               ("trends.alpha", 0.1, {"04_trends"}),
                               ("zoning.permutations", 99, {"05_zoning"}),
                               ("models.cv_folds", 5, {"02_train_models"})):
        changed = copy.deepcopy(base)
        section, _, name = key.partition(".")
        if name:
            changed[section][name] = value
        else:
            changed[section] = value
        after = hashes(changed)
        assert {s for s in before if before[s] != after[s]} == reruns, key


def test_package_versions_are_the_installed_ones_and_each_call_is_a_new_dict():
    """Looked up once per process: the versions are importlib.metadata's, and a caller that
    edits its dict (provenance pops terracarbon out) does not change the next call's."""
    from importlib import metadata

    import numpy

    import terracarbon
    from terracarbon.pipeline import provenance

    first = provenance.package_versions()
    assert first["numpy"] == metadata.version("numpy") == numpy.__version__
    assert first["terracarbon"] == terracarbon.__version__
    assert set(first) == {"terracarbon", *provenance.PACKAGES}
    first.pop("terracarbon")
    first["numpy"] = "edited"
    again = provenance.package_versions()
    assert again["numpy"] == numpy.__version__ and "terracarbon" in again
    assert provenance.provenance()["terracarbon"] == terracarbon.__version__
    assert "terracarbon" in provenance.package_versions()


def test_every_module_a_stage_kernel_preloads_is_importable():
    """A misspelt module in ``StageSpec.preload`` (or the common list) would only be skipped
    with a line in kernel.log, and the speed-up lost without a sign: each must resolve."""
    import importlib.util

    from terracarbon.pipeline.kernel_preload import COMMON_MODULES

    names = {*COMMON_MODULES, *(m for spec in stages.STAGES.values() for m in spec.preload)}
    assert {"torch", "holoviews"} <= names
    missing = sorted(m for m in names if importlib.util.find_spec(m) is None)
    assert not missing, f"preload names no installed module: {missing}"
