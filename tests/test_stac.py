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


# --- a STAC layer in a study: parameters, fingerprints, stage 01 (#18 item 4) -----------------

# The VHP stack's own CRS at its own 100 km pixel, China window (params/examples/
# vhp_ndvi_trends.yaml): 69 x 42 cells, 3 years, the smallest real annual stack.
ECKERT_IV = "ESRI:54012"
CHINA_WINDOW = [5600000, 2300000, 12500000, 6500000]


def _study(folder: Path, layer: dict, *, years=YEARS, stages=("01_data_prep",)) -> Path:
    import yaml

    study = {"study": {"name": "stac_ndvi", "stages": list(stages)},
             "synthetic": {"enabled": False},
             "grid": {"crs": ECKERT_IV, "pixel_size_m": 100000, "bounds_m": CHINA_WINDOW},
             "data": {"years": list(years), "plots": None, "layers": {"ndvi": layer}},
             "prep": {"composite_window": 1},
             "trends": {"source_stage": "01_data_prep", "variable": "ndvi", "drivers": []},
             "zoning": {"source_stage": "01_data_prep", "variable": "ndvi"}}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _layer(**extra) -> dict:
    return {"kind": "continuous", "units": "1", "long_name": "annual mean NDVI",
            "resampling": "nearest", **extra}


def test_a_study_declares_a_stac_layer_and_bad_ones_name_the_parameter(tmp_path):
    from terracarbon.pipeline.params import load_params

    _catalog(tmp_path / "stac", [_item(y) for y in YEARS])
    # a relative 'stac' is relative to the study file, like a path
    params = load_params(_study(tmp_path, _layer(stac="stac/catalog.json", asset="ndvi")))
    layer = params["data"]["layers"]["ndvi"]
    assert layer["stac"] == str(tmp_path / "stac" / "catalog.json")
    with pytest.raises(ParameterError, match=r"data\.layers\.ndvi\.stac: given together with "
                                             r"data\.layers\.ndvi\.path"):
        load_params(_study(tmp_path, _layer(stac="stac/catalog.json", asset="ndvi",
                                            path="x_{year}.tif")))
    with pytest.raises(ParameterError, match=r"data\.layers\.ndvi\.path: missing; .* or a STAC "
                                             "source instead"):
        load_params(_study(tmp_path, _layer()))
    with pytest.raises(ParameterError, match=r"data\.layers\.ndvi\.asset: missing"):
        load_params(_study(tmp_path, _layer(stac="stac/catalog.json")))
    with pytest.raises(ParameterError, match=r"data\.layers\.ndvi\.asset: is a STAC option"):
        load_params(_study(tmp_path, _layer(path=str(VHP / "VHP_SMN_annual_ndvi_{year}.tif"),
                                            asset="ndvi")))
    # preflight, before any stage: the source exists, and has an item for every study year
    with pytest.raises(ParameterError, match=r"data\.layers\.ndvi\.stac: file not found: .*"
                                             r"nowhere\.json"):
        load_params(_study(tmp_path, _layer(stac="nowhere.json", asset="ndvi")))
    with pytest.raises(ParameterError, match=r"data\.layers\.ndvi\.stac: .* no item for year\(s\) "
                                             r"\[1999, 2003\] \(its items cover 2000–2002"):
        load_params(_study(tmp_path, _layer(stac="stac/catalog.json", asset="ndvi"),
                           years=(1999, 2000, 2003)))
    with pytest.raises(ParameterError, match=r"data\.layers\.ndvi\.stac: .* no asset 'evi'"):
        load_params(_study(tmp_path, _layer(stac="stac/catalog.json", asset="evi")))
    with pytest.raises(ParameterError, match=r"no item .* belongs to collection 'evi' "
                                             r"\(collections of its items: \['None'\]\)"):
        load_params(_study(tmp_path, _layer(stac="stac/catalog.json", asset="ndvi",
                                            collection="evi")))


def test_collection_filter_picks_one_product_of_a_catalog(tmp_path):
    """Two collections, each with one item per year: 'collection' picks the product."""
    catalog = pystac.Catalog(id="archive", description="two products")
    for product, offset in (("early", 0), ("late", 10)):
        coll = pystac.Collection(
            id=product, description=product, license="proprietary",
            extent=pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]),
                                 pystac.TemporalExtent([[None, None]])))
        for y in YEARS:
            item = _item(y + offset if product == "late" else y, item_id=f"{product}-{y}")
            item.datetime = dt.datetime(y, 7, 1, tzinfo=dt.timezone.utc)
            coll.add_item(item)
        catalog.add_child(coll)
    catalog.normalize_and_save(str(tmp_path / "stac"),
                               catalog_type=pystac.CatalogType.SELF_CONTAINED)
    source = tmp_path / "stac" / "catalog.json"
    with pytest.raises(InputDataError, match="'early-2000' and 'late-2000' .* both from 2000"):
        stac.asset_hrefs(source, "ndvi")
    late = stac.asset_hrefs(source, "ndvi", collection="late")
    assert late == {y: str(VHP / f"VHP_SMN_annual_ndvi_{y + 10}.tif") for y in YEARS}
    assert prep.available_years(_spec(source, collection="early")) == list(YEARS)


def test_fingerprints_cover_the_catalog_and_the_assets_read(tmp_path):
    from terracarbon.pipeline.fingerprints import input_files, input_fingerprints

    source = _catalog(tmp_path / "stac", [_item(y) for y in (1999, *YEARS)])
    sections = {"synthetic": {"enabled": False},
                "data": {"years": list(YEARS), "layers": {"ndvi": _spec(source)}}}
    files = input_files(sections)["data.layers.ndvi.stac"]
    items = sorted(str(p) for p in (tmp_path / "stac").glob("*/*.json"))
    assets = [str(VHP / f"VHP_SMN_annual_ndvi_{y}.tif") for y in YEARS]
    # the root, the four item documents, and the three assets of the study years (not 1999)
    assert sorted(files) == sorted([str(source), *items, *assets])
    before = input_fingerprints(sections)
    assert all(v not in ("missing", "remote") for v in before.values())
    # editing an item (its asset now points at another year's file) changes the fingerprints
    item_2001 = tmp_path / "stac" / "vhp-ndvi-2001" / "vhp-ndvi-2001.json"
    doc = json.loads(item_2001.read_text())
    doc["assets"]["ndvi"]["href"] = str(VHP / "VHP_SMN_annual_ndvi_1990.tif")
    item_2001.write_text(json.dumps(doc))
    after = input_fingerprints(sections)
    assert after[str(item_2001)] != before[str(item_2001)]
    assert str(VHP / "VHP_SMN_annual_ndvi_1990.tif") in after
    assert str(VHP / "VHP_SMN_annual_ndvi_2001.tif") not in after
    # a remote source is recorded by its address, never downloaded
    remote = {"synthetic": {"enabled": False}, "data": {"years": [2000], "layers": {
        "ndvi": _spec("https://example.invalid/catalog.json")}}}
    assert input_fingerprints(remote) == {"https://example.invalid/catalog.json": "remote"}


@pytest.mark.slow
@pytest.mark.realdata
def test_stage_01_aligns_a_stac_layer_like_its_files(tmp_path):
    """run_all.py, stage 01 only, on a study whose NDVI comes from a local catalog: the cube's
    layer equals the files warped onto the grid by GDAL directly (nearest), and the manifest
    fingerprints the catalog's documents and assets."""
    import subprocess
    import sys

    import rasterio
    from rasterio.warp import Resampling, reproject

    from terracarbon.data.io import open_cube
    from terracarbon.pipeline.params import REPO_ROOT

    _catalog(tmp_path / "stac", [_item(y) for y in YEARS])
    study = _study(tmp_path, _layer(stac="stac/catalog.json", asset="ndvi"))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_all.py"), "--params", str(study),
         "--runs-dir", str(tmp_path / "runs")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stage = tmp_path / "runs" / "stac_ndvi" / "01_data_prep"
    cube = open_cube(stage / "cube.zarr")
    ndvi = cube["ndvi"]
    assert list(cube.year.values) == list(YEARS) and ndvi.attrs["units"] == "1"
    grid = prep.GridSpec.from_bounds(tuple(CHINA_WINDOW), crs=ECKERT_IV, resolution=100_000)
    assert ndvi.shape == (3, grid.height, grid.width) == (3, 42, 69)
    for year in YEARS:
        expected = np.full((grid.height, grid.width), np.nan, dtype="float32")
        with rasterio.open(VHP / f"VHP_SMN_annual_ndvi_{year}.tif") as src:
            reproject(rasterio.band(src, 1), expected, dst_transform=grid.transform,
                      dst_crs=src.crs, resampling=Resampling.nearest, dst_nodata=np.nan)
        got = ndvi.sel(year=year).values
        assert np.isfinite(got).sum() > 1500  # China's land, not an empty window
        np.testing.assert_array_equal(got, expected)
    manifest = json.loads((stage / "manifest.json").read_text())
    fingerprinted = set(manifest["inputs"])
    assert str(tmp_path / "stac" / "catalog.json") in fingerprinted
    assert {str(VHP / f"VHP_SMN_annual_ndvi_{y}.tif") for y in YEARS} <= fingerprinted
    assert len([p for p in fingerprinted if p.endswith(".json")]) == 1 + len(YEARS)


def test_preflight_treats_a_stac_layer_like_its_files(tmp_path):
    """Before any stage: an annual STAC layer gets its composites named like a {year} layer's,
    and its asset files' headers are checked (a raster without CRS is named by parameter)."""
    import rasterio
    from affine import Affine

    from terracarbon.pipeline import preflight
    from terracarbon.pipeline.params import load_params

    _catalog(tmp_path / "stac", [_item(y) for y in YEARS])
    composites = {"composite_window": 3, "composite_variables": ["ndvi"]}

    def with_prep(path: Path) -> dict:
        params = load_params(path)
        params["prep"].update(composites)
        return params

    (tmp_path / "files").mkdir()
    pattern = str(VHP / "VHP_SMN_annual_ndvi_{year}.tif")
    from_files = with_prep(_study(tmp_path / "files", _layer(path=pattern)))
    from_stac = with_prep(_study(tmp_path, _layer(stac="stac/catalog.json", asset="ndvi")))
    assert preflight.layer_names(from_stac) == preflight.layer_names(from_files)
    assert "ndvi_3yr" in preflight.layer_names(from_stac)
    assert preflight.check_study(from_stac, ["01_data_prep"]) == []
    # one year's asset is a raster without CRS: the header check finds it in the STAC layer
    bad = tmp_path / "no_crs_2001.tif"
    with rasterio.open(bad, "w", driver="GTiff", width=8, height=6, count=1, dtype="float32",
                       transform=Affine(1e5, 0, 6e6, 0, -1e5, 4e6)) as dst:
        dst.write(np.full((1, 6, 8), 0.4, dtype="float32"))
    item = tmp_path / "stac" / "vhp-ndvi-2001" / "vhp-ndvi-2001.json"
    doc = json.loads(item.read_text())
    doc["assets"]["ndvi"]["href"] = str(bad)
    item.write_text(json.dumps(doc))
    edited = with_prep(_study(tmp_path, _layer(stac="stac/catalog.json", asset="ndvi")))
    with pytest.raises(ParameterError, match=r"data\.layers\.ndvi\.stac: .*no_crs_2001\.tif has "
                                             r"no CRS"):
        preflight.check_study(edited, ["01_data_prep"])
