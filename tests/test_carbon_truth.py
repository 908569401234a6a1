"""Carbon totals of the default synthetic study against its planted truth (issue: maps).

The default study (800 x 600 px of 500 m, 2000-2021, plots from 2018 and 2021 only) is
regenerated, its cube built with the default 3-year composites, the default features fitted
with the multiple linear regression (the best model by spatial CV in the default run, see
benchmarks/README.md) and every year mapped, as stages 01-03 do. About a minute.
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

