"""Carbon totals of the default synthetic study against its planted truth (issue: maps).

The default study (800 x 600 px of 500 m, 2000-2021, plots from four campaigns 2006-2021 with
30 % permanent plots) is regenerated, its cube built with the default 3-year composites, the
default features fitted with the multiple linear regression (best by spatial CV) and the
random forest, and the years mapped, as stages 01-03 do. About two minutes.
"""

from __future__ import annotations

import pytest

import terracarbon as tc
from terracarbon.pipeline import params as P


@pytest.fixture(scope="module")
def default_study(tmp_path_factory):
    p = P.load_params(P.DEFAULT_PARAMS)
    inputs = tc.inputs.resolve_inputs(synthetic=p["synthetic"], grid=p["grid"], data=p["data"],
                                      seed=p["study"]["seed"],
                                      workdir=tmp_path_factory.mktemp("default_study"))
    cube = tc.prep.build_cube(inputs.data, inputs.grid)
    cube = tc.prep.add_temporal_composites(cube, p["prep"]["composite_window"],
                                           p["prep"]["composite_variables"])
    samples = tc.prep.prepare_samples(inputs.data["plots"], inputs.grid, cube,
                                      sigma=p["prep"]["outlier_sigma"]).samples
    return p, inputs, cube, samples


def test_default_study_totals_within_5_percent_every_year_and_pool(default_study):
    p, inputs, cube, samples = default_study
    truth = tc.synthetic.open_truth(inputs.truth)
    model = tc.models.training.model_factory(
        "mlr", features=p["models"]["features"], settings=p["models"], seed=p["study"]["seed"]
    )().fit(samples, cube)
    area_ha = tc.carbon.pixel_area_ha(cube)
    errors = {}
    for year in cube.year.values:
        density = model.predict_map(cube, int(year))
        for pool, name in (("veg", "veg_carbon_density"), ("soil", "soil_carbon_density")):
            mapped = float((density[name] * area_ha).sum())
            planted = float((truth[name].sel(year=year) * area_ha)
                            .where(density[name].notnull()).sum())
            errors[(int(year), pool)] = mapped / planted - 1
        total = sum(float((density[n] * area_ha).sum())
                    for n in ("veg_carbon_density", "soil_carbon_density"))
        planted_total = sum(float((truth[n].sel(year=year) * area_ha)
                                  .where(density[n].notnull()).sum())
                            for n in ("veg_carbon_density", "soil_carbon_density"))
        errors[(int(year), "total")] = total / planted_total - 1
    worst = max(errors, key=lambda k: abs(errors[k]))
    assert abs(errors[worst]) < 0.05, f"{worst}: {errors[worst]:+.1%}"
    assert len(errors) == 3 * cube.sizes["year"]



def _region_change(model, cube, area_ha, first, last):
    out = {}
    for year in (first, last):
        density = model.predict_map(cube, int(year))
        out[year] = {pool: float((density[f"{pool}_carbon_density"] * area_ha).sum()) / 1e6
                     for pool in ("veg", "soil")}
    change = {pool: out[last][pool] - out[first][pool] for pool in ("veg", "soil")}
    change["total"] = change["veg"] + change["soil"]
    return change


def test_default_study_change_of_the_chosen_model_within_15_percent(default_study):
    """The default run chooses the average of the MLR and the RF (remeasured plots tie them
    on change, the average has the better spatial CV; README "Change"): its 2000→2021 change
    is within 15 % of the planted change for the total and vegetation, where the MLR alone,
    which reads the regional greening as carbon, is not."""
    from terracarbon.models.average import AveragedModel

    p, inputs, cube, samples = default_study
    truth = tc.synthetic.open_truth(inputs.truth)
    area_ha = tc.carbon.pixel_area_ha(cube)
    first, last = int(cube.year.min()), int(cube.year.max())
    factory = {name: tc.models.training.model_factory(
        name, features=p["models"]["features"], settings=p["models"], seed=p["study"]["seed"])
        for name in ("mlr", "rf")}
    mlr, rf = factory["mlr"]().fit(samples, cube), factory["rf"]().fit(samples, cube)
    planted = {pool: float(((truth[f"{pool}_carbon_density"].sel(year=last)
                             - truth[f"{pool}_carbon_density"].sel(year=first)) * area_ha)
                           .where(cube["region_mask"]).sum()) / 1e6 for pool in ("veg", "soil")}
    planted["total"] = planted["veg"] + planted["soil"]
    chosen = _region_change(AveragedModel([mlr, rf]), cube, area_ha, first, last)
    for pool in ("total", "veg"):
        assert abs(chosen[pool] / planted[pool] - 1) < 0.15, (pool, chosen, planted)
    alone = _region_change(mlr, cube, area_ha, first, last)
    assert alone["total"] / planted["total"] - 1 > 0.25, (alone, planted)
