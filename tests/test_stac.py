"""Input layers from STAC (#18): a local catalog over real rasters in ../shared/realdata.

The catalog is built here, in tmp_path, with pystac: one item per year (datetime mid-year)
whose ``ndvi`` asset is a real VHP annual-NDVI GeoTIFF. A layer read through the catalog
must give exactly the cube the same files give through a ``{year}`` path pattern, aligned to
the same study grid. Offline: every href is a local file.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

pystac = pytest.importorskip("pystac")

from terracarbon.data import prep, stac  # noqa: E402
from terracarbon.errors import InputDataError, ParameterError  # noqa: E402

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
VHP = REALDATA / "vhp_ndvi_annual_global_1982_2023"
YEARS = (2000, 2001, 2002)
CHINA_ALBERS = ("+proj=aea +lat_1=25 +lat_2=47 +lat_0=0 +lon_0=105 +x_0=0 +y_0=0 +datum=WGS84 "
                "+units=m")


@pytest.fixture(autouse=True)
def _need_realdata():
    if not VHP.is_dir():
        pytest.skip(f"real data folder {VHP} not present")


def _item(year: int, *, asset: str = "ndvi", item_id: str | None = None) -> "pystac.Item":
    item = pystac.Item(
        id=item_id or f"vhp-ndvi-{year}", geometry=None, bbox=None, properties={},
        datetime=dt.datetime(year, 7, 1, tzinfo=dt.timezone.utc))
    item.add_asset(asset, pystac.Asset(href=str(VHP / f"VHP_SMN_annual_ndvi_{year}.tif"),
                                       media_type=pystac.MediaType.COG, roles=["data"]))
    return item


def _catalog(folder: Path, items) -> Path:
    catalog = pystac.Catalog(id="vhp", description="VHP annual NDVI (test catalog)")
    catalog.add_items(items)
    catalog.normalize_hrefs(str(folder))
    catalog.make_all_asset_hrefs_relative()
    # self-contained: asset hrefs are written relative to the item files, as in an archive
    catalog.normalize_and_save(str(folder), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog.json"


def _spec(source: Path, **extra) -> dict:
    return {"stac": str(source), "asset": "ndvi", "kind": "continuous", "units": "1",
            "long_name": "annual mean NDVI", "resampling": "nearest", **extra}


def test_catalog_layer_gives_the_same_cube_as_the_files(tmp_path):
    source = _catalog(tmp_path / "stac", [_item(y) for y in YEARS])
    item_json = json.loads(next((tmp_path / "stac").glob("*/*.json")).read_text())
    assert not Path(item_json["assets"]["ndvi"]["href"]).is_absolute()  # relative hrefs
    spec = _spec(source)
    assert prep.available_years(spec) == list(YEARS)
    files = {"path": str(VHP / "VHP_SMN_annual_ndvi_{year}.tif"), "kind": "continuous",
             "units": "1", "long_name": "annual mean NDVI", "resampling": "nearest"}
    grid = prep.GridSpec.from_bounds((-2_700_000, 1_800_000, 2_300_000, 6_000_000),
                                     crs=CHINA_ALBERS, resolution=100_000)
    from_stac = prep.build_cube({"years": list(YEARS), "layers": {"ndvi": spec}}, grid)
    from_files = prep.build_cube({"years": list(YEARS), "layers": {"ndvi": files}}, grid)
    assert from_stac["ndvi"].shape == (3, 42, 50)
    np.testing.assert_array_equal(from_stac["ndvi"].values, from_files["ndvi"].values)
    assert from_stac["ndvi"].attrs["units"] == "1"
    assert 1500 < np.isfinite(from_stac["ndvi"].sel(year=2001).values).sum() < 2100
    one = prep.read_layer(spec, year=2001, name="ndvi")
    assert one.attrs["source"].endswith("VHP_SMN_annual_ndvi_2001.tif")
    with pytest.raises(InputDataError, match="no item for year 1999"):
        prep.read_layer(spec, year=1999, name="ndvi")


def test_item_collection_and_a_static_layer(tmp_path):
    collection = pystac.ItemCollection([_item(y) for y in YEARS])
    path = tmp_path / "items.json"
    collection.save_object(dest_href=str(path))
    assert stac.asset_hrefs(path, "ndvi") == {
        y: str(VHP / f"VHP_SMN_annual_ndvi_{y}.tif") for y in YEARS}
    # static: the latest item stands for every year
    static = prep.normalise_layer_spec("ndvi", _spec(path, static=True))
    assert static["static"] and static["stac_hrefs"] == {
        None: str(VHP / "VHP_SMN_annual_ndvi_2002.tif")}
    da = prep.read_layer(_spec(path, static=True), name="ndvi")
    assert da.dims == ("y", "x") and da.attrs["source"].endswith("2002.tif")
    # a source of one item is static too
    single = tmp_path / "one.json"
    pystac.ItemCollection([_item(2001)]).save_object(dest_href=str(single))
    assert prep.normalise_layer_spec("ndvi", _spec(single))["static"]


def test_stac_problems_name_the_item_and_the_fix(tmp_path):
    wrong = tmp_path / "wrong.json"
    pystac.ItemCollection([_item(2000, asset="red")]).save_object(dest_href=str(wrong))
    with pytest.raises(InputDataError, match=r"'vhp-ndvi-2000' .* no asset 'ndvi' .*\['red'\]"):
        prep.normalise_layer_spec("ndvi", _spec(wrong))
    twice = tmp_path / "twice.json"
    pystac.ItemCollection([_item(2000), _item(2000, item_id="again")]).save_object(
        dest_href=str(twice))
    with pytest.raises(InputDataError, match="'vhp-ndvi-2000' and 'again' .* both from 2000"):
        prep.normalise_layer_spec("ndvi", _spec(twice))
    with pytest.raises(InputDataError, match="not found"):
        prep.normalise_layer_spec("ndvi", _spec(tmp_path / "missing.json"))
    not_stac = tmp_path / "plain.json"
    not_stac.write_text('{"hello": 1}')
    with pytest.raises(InputDataError, match="not a STAC"):
        prep.normalise_layer_spec("ndvi", _spec(not_stac))
    with pytest.raises(ParameterError, match="'stac' needs 'asset'"):
        prep.normalise_layer_spec("ndvi", {**_spec(wrong), "asset": None})
    with pytest.raises(ParameterError, match="'asset' is a STAC option"):
        prep.normalise_layer_spec("ndvi", {"path": "x.tif", "asset": "ndvi", "kind":
                                           "continuous", "units": "1"})
