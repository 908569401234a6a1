"""Tests for terracarbon.units: units by dimension, carbon labels, conversion factors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from terracarbon import units
from terracarbon.errors import InputDataError

from helpers import assert_numpy_equals_dask


def density(values, unit: str, name: str = "veg_carbon_density") -> xr.DataArray:
    return xr.DataArray(np.asarray(values, dtype="float64"), dims="x", name=name,
                        attrs={"units": unit, "long_name": "vegetation carbon density"})


@pytest.mark.parametrize(("source", "target", "factor"), [
    # 1 g m-2 = 1e-6 t / 1e-4 ha = 0.01 t ha-1
    ("g C m-2", "t C ha-1", 0.01),
    # 1 Mg = 1e6 g = 1 t: the same unit, two spellings
    ("Mg C ha-1", "t C ha-1", 1.0),
    # 1 kg m-2 = 1e-3 t / 1e-4 ha = 10 t ha-1
    ("kg C m-2", "t C ha-1", 10.0),
    # a flux keeps its time unit: 1 g C m-2 yr-1 = 0.01 t C ha-1 yr-1
    ("g C m-2 yr-1", "t C ha-1 yr-1", 0.01),
    # FLUXNET glues the label: gC m-2 d-1, and 1 yr = 365.25 d
    ("gC m-2 d-1", "g C m-2 yr-1", 365.25),
    ("Tg C", "t C", 1e6),
    ("Pg C", "Tg C", 1e3),
    ("m2", "ha", 1e-4),
])
def test_conversion_factors_known_answers(source, target, factor):
    assert units.conversion_factor(source, target) == factor


def test_substance_label_is_not_a_unit():
    # "C" alone is a unit (cf-xarray reads it as degree Celsius; pint's own default is
    # coulomb); after a mass unit it is the substance carbon and is taken out before pint.
    assert units.split_substance("t C ha-1") == ("t ha-1", "C")
    assert units.split_substance("kg_C m-2") == ("kg m-2", "C")
    assert units.split_substance("t CO2 ha-1") == ("t ha-1", "CO2")
    assert units.split_substance("degC") == ("degC", None)
    assert units.to_pint("t C ha-1").dimensionality == units.to_pint("t ha-1").dimensionality
    assert "[current]" not in str(units.to_pint("g C m-2 yr-1").dimensionality)
    assert "[temperature]" not in str(units.to_pint("g C m-2 yr-1").dimensionality)
    # a coulomb written out is still a charge, and does not pass for carbon mass
    assert "[current]" in str(units.to_pint("coulomb").dimensionality)
    with pytest.raises(InputDataError, match="dimensions differ"):
        units.conversion_factor("coulomb", "t")
    with pytest.raises(InputDataError, match="substances differ"):
        units.conversion_factor("coulomb", "t C")


def test_carbon_does_not_mix_with_biomass_or_co2():
    with pytest.raises(InputDataError, match=r"substances differ \(C vs none\)"):
        units.conversion_factor("t C ha-1", "t ha-1")
    with pytest.raises(InputDataError, match="CO2_PER_C"):
        units.conversion_factor("t C ha-1", "t CO2 ha-1")
    with pytest.raises(InputDataError, match="density: 'veg_carbon_density' has units 't ha-1'"):
        units.check_dimension(density([1.0], "t ha-1"), "t C ha-1", name="density")


def test_check_dimension_names_argument_units_and_expectation():
    units.check_dimension(density([1.0], "Mg C ha-1"), "t C ha-1", name="density")
    units.check_dimension(density([1.0], "kg C m-2"), "[mass] / [length] ** 2", name="density")
    with pytest.raises(InputDataError) as err:
        units.check_dimension(density([1.0], "g C m-2 yr-1"), "t C ha-1", name="density_ds")
    message = str(err.value)
    assert message.startswith("density_ds: 'veg_carbon_density' has units 'g C m-2 yr-1'")
    assert "[mass] / [length] ** 2 / [time] of C" in message
    assert "expected 't C ha-1' ([mass] / [length] ** 2 of C)" in message
    with pytest.raises(InputDataError, match="area: None has no 'units' attribute"):
        units.check_dimension(xr.DataArray([1.0]), "ha", name="area")
    with pytest.raises(InputDataError, match="'bushels of apples' are not understood"):
        units.to_pint("bushels of apples")


def test_convert_scales_values_and_sets_units():
    da = density([1.5, 2.0], "kg C m-2")
    out = units.convert(da, "t C ha-1", name="density")
    np.testing.assert_array_equal(out.values, [15.0, 20.0])
    assert out.attrs == {"units": "t C ha-1", "long_name": "vegetation carbon density"}
    assert out.name == da.name and da.attrs["units"] == "kg C m-2"  # input untouched
    same = units.convert(density([1.5], "Mg C ha-1"), "t C ha-1")
    assert same.values.tolist() == [1.5] and same.attrs["units"] == "t C ha-1"
    float32 = units.convert(density([1.0], "g C m-2").astype("float32"), "t C ha-1")
    assert float32.dtype == np.float32
    with pytest.raises(InputDataError, match="density: 'veg_carbon_density' has units"):
        units.convert(density([1.0], "t C"), "t C ha-1", name="density")


def test_convert_stays_lazy_on_dask():
    # a multiplication added to the graph, nothing computed; the same numbers as on NumPy
    out = assert_numpy_equals_dask(units.convert, density(np.arange(6.0), "g C m-2"),
                                   "t C ha-1", chunks={"x": 2})
    np.testing.assert_allclose(out.values, np.arange(6.0) * 0.01, rtol=1e-15)


def test_offset_units_are_converted_but_have_no_factor():
    # 20 degC = 293.15 K: an offset, not a factor
    with pytest.raises(InputDataError, match="offset"):
        units.conversion_factor("degC", "K")
    out = units.convert(xr.DataArray([20.0], attrs={"units": "degC"}), "K")
    assert out.values.tolist() == pytest.approx([293.15])
