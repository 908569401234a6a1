"""Land-cover class tables (#20): built-in schemes against their published legends, the
crosswalk to the eight groups, grouping and reclassifying rasters (NumPy and dask), one
validation error listing every problem, the IGBP join of flux towers, and the synthetic
GLC_FCS30-coded raster."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from dask.threaded import get as threaded_get

sys.path.insert(0, str(Path(__file__).parent))

import terracarbon.landcover as lc  # noqa: E402
import terracarbon.landcover.validate as lc_validate  # noqa: E402
from helpers import assert_numpy_equals_dask  # noqa: E402
from terracarbon.conventions import LANDUSE  # noqa: E402
from terracarbon.data import synthetic  # noqa: E402
from terracarbon.data.synthetic.landcover import glc_fcs30_landuse  # noqa: E402
from terracarbon.errors import InputDataError, ParameterError  # noqa: E402
from terracarbon.landcover import LandCoverTable  # noqa: E402
from terracarbon.landcover.schemes import SCHEMES  # noqa: E402

# --------------------------------------------------------------------------- legends
# The published legends, typed from the sources (not from the module): "code label" per
# line; CNLUCC "code English | Chinese"; IGBP "code ABBR label".
LEGENDS = {
    # Yang & Huang (2021), ESSD 13, 3907-3925
    "clcd": """
        1 Cropland
        2 Forest
        3 Shrub
        4 Grassland
        5 Water
        6 Snow/Ice
        7 Barren
        8 Impervious
        9 Wetland
    """,
    # Zhang et al. (2021), ESSD 13, 2753-2776 (GLC_FCS30 legend; 250 = filled value)
    "glc_fcs30": """
        10 Rainfed cropland
        11 Herbaceous cover
        12 Tree or shrub cover (Orchard)
        20 Irrigated cropland
        51 Open evergreen broadleaved forest
        52 Closed evergreen broadleaved forest
        61 Open deciduous broadleaved forest (0.15<fc<0.4)
        62 Closed deciduous broadleaved forest (fc>0.4)
        71 Open evergreen needle-leaved forest (0.15< fc <0.4)
        72 Closed evergreen needle-leaved forest (fc >0.4)
        81 Open deciduous needle-leaved forest (0.15< fc <0.4)
        82 Closed deciduous needle-leaved forest (fc >0.4)
        91 Open mixed leaf forest (broadleaved and needle-leaved)
        92 Closed mixed leaf forest (broadleaved and needle-leaved)
        120 Shrubland
        121 Evergreen shrubland
        122 Deciduous shrubland
        130 Grassland
        140 Lichens and mosses
        150 Sparse vegetation (fc<0.15)
        152 Sparse shrubland (fc<0.15)
        153 Sparse herbaceous (fc<0.15)
        180 Wetlands
        190 Impervious surfaces
        200 Bare areas
        201 Consolidated bare areas
        202 Unconsolidated bare areas
        210 Water body
        220 Permanent ice and snow
    """,
    # Zhang et al. (2024), ESSD 16, 1353-1381 (GLC_FCS30D: 35 classes; 0, 250 filled value)
    "glc_fcs30d": """
        10 Rainfed cropland
        11 Herbaceous cover
        12 Tree or shrub cover (Orchard)
        20 Irrigated cropland
        51 Open evergreen broadleaved forest
        52 Closed evergreen broadleaved forest
        61 Open deciduous broadleaved forest (0.15<fc<0.4)
        62 Closed deciduous broadleaved forest (fc>0.4)
        71 Open evergreen needle-leaved forest (0.15< fc <0.4)
        72 Closed evergreen needle-leaved forest (fc >0.4)
        81 Open deciduous needle-leaved forest (0.15< fc <0.4)
        82 Closed deciduous needle-leaved forest (fc >0.4)
        91 Open mixed leaf forest (broadleaved and needle-leaved)
        92 Closed mixed leaf forest (broadleaved and needle-leaved)
        120 Shrubland
        121 Evergreen shrubland
        122 Deciduous shrubland
        130 Grassland
        140 Lichens and mosses
        150 Sparse vegetation (fc<0.15)
        152 Sparse shrubland (fc<0.15)
        153 Sparse herbaceous (fc<0.15)
        181 Swamp
        182 Marsh
        183 Flooded flat
        184 Saline
        185 Mangrove
        186 Salt marsh
        187 Tidal flat
        190 Impervious surfaces
        200 Bare areas
        201 Consolidated bare areas
        202 Unconsolidated bare areas
        210 Water body
        220 Permanent ice and snow
    """,
    # RESDC (Xu et al. 2018; Liu et al. 2014): level-2 codes
    "cnlucc": """
        11 Paddy field | 水田
        12 Dry land | 旱地
        21 Forest | 有林地
        22 Shrubland | 灌木林
        23 Sparse woodland | 疏林地
        24 Other woodland | 其他林地
        31 High-coverage grassland | 高覆盖度草地
        32 Medium-coverage grassland | 中覆盖度草地
        33 Low-coverage grassland | 低覆盖度草地
        41 Rivers and canals | 河渠
        42 Lakes | 湖泊
        43 Reservoirs and ponds | 水库坑塘
        44 Permanent glacier and snow | 永久性冰川雪地
        45 Tidal flat | 滩涂
        46 Bottomland | 滩地
        51 Urban land | 城镇用地
        52 Rural residential land | 农村居民点
        53 Other construction land | 其他建设用地
        61 Sandy land | 沙地
        62 Gobi | 戈壁
        63 Saline-alkali land | 盐碱地
        64 Marsh | 沼泽地
        65 Bare soil | 裸土地
        66 Bare rock | 裸岩石质地
        67 Other unused land | 其他
    """,
    # ESA WorldCover Product User Manual v2.0
    "esa_worldcover": """
        10 Tree cover
        20 Shrubland
        30 Grassland
        40 Cropland
        50 Built-up
        60 Bare / sparse vegetation
        70 Snow and ice
        80 Permanent water bodies
        90 Herbaceous wetland
        95 Mangroves
        100 Moss and lichen
    """,
    # MCD12Q1 C6 user guide (Sulla-Menashe & Friedl 2018), LC_Type1
    "modis_igbp": """
        1 ENF Evergreen Needleleaf Forests
        2 EBF Evergreen Broadleaf Forests
        3 DNF Deciduous Needleleaf Forests
        4 DBF Deciduous Broadleaf Forests
        5 MF Mixed Forests
        6 CSH Closed Shrublands
        7 OSH Open Shrublands
        8 WSA Woody Savannas
        9 SAV Savannas
        10 GRA Grasslands
        11 WET Permanent Wetlands
        12 CRO Croplands
        13 URB Urban and Built-up Lands
        14 CVM Cropland/Natural Vegetation Mosaics
        15 SNO Permanent Snow and Ice
        16 BSV Barren
        17 WAT Water Bodies
    """,
}
FILL = {"glc_fcs30": (250,), "glc_fcs30d": (250,), "modis_igbp": (255,)}

# The crosswalk to the groups, written down independently (group: codes).
CROSSWALK = {
    "clcd": {"cropland": "1", "forest": "2", "shrub": "3", "grassland": "4", "water": "5",
             "bare": "6 7", "built-up": "8", "wetland": "9"},
    "glc_fcs30": {"cropland": "10 11 12 20", "forest": "51 52 61 62 71 72 81 82 91 92",
                  "shrub": "120 121 122", "grassland": "130 140 150 152 153",
                  "wetland": "180", "built-up": "190", "bare": "200 201 202 220",
                  "water": "210"},
    "glc_fcs30d": {"cropland": "10 11 12 20", "forest": "51 52 61 62 71 72 81 82 91 92",
                   "shrub": "120 121 122", "grassland": "130 140 150 152 153",
                   "wetland": "181 182 183 184 185 186 187", "built-up": "190",
                   "bare": "200 201 202 220", "water": "210"},
    "cnlucc": {"cropland": "11 12", "forest": "21 23 24", "shrub": "22",
               "grassland": "31 32 33", "water": "41 42 43", "wetland": "45 46 64",
               "built-up": "51 52 53", "bare": "44 61 62 63 65 66 67"},
    "esa_worldcover": {"forest": "10", "shrub": "20", "grassland": "30 100", "cropland": "40",
                       "built-up": "50", "bare": "60 70", "water": "80",
                       "wetland": "90 95"},
    "modis_igbp": {"forest": "1 2 3 4 5 8", "shrub": "6 7", "grassland": "9 10",
                   "wetland": "11", "cropland": "12 14", "built-up": "13", "bare": "15 16",
                   "water": "17"},
}
# Where the group is a judgement, not a rename, the class must say so.
JUDGEMENTS = {"clcd": {6}, "glc_fcs30": {12, 140, 150, 152, 153, 220},
              "glc_fcs30d": {12, 140, 150, 152, 153, 185, 220},
              "cnlucc": {23, 24, 44, 45, 46, 67},
              "esa_worldcover": {70, 95, 100}, "modis_igbp": {8, 9, 14, 15}}


def _legend(key: str) -> list[tuple[int, str]]:
    rows = []
    for line in LEGENDS[key].strip().splitlines():
        code, label = line.strip().split(" ", 1)
        rows.append((int(code), label))
    return rows


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _da(values, name="landuse", **attrs) -> xr.DataArray:
    values = np.asarray(values)
    dims = ("year", "y", "x")[-values.ndim:]
    return xr.DataArray(values, dims=dims, name=name, attrs={"units": "1", **attrs})


class _CountingScheduler:
    def __init__(self) -> None:
        self.computes = 0

    def __call__(self, dsk, keys, **kwargs):
        self.computes += 1
        return threaded_get(dsk, keys, **kwargs)


# --------------------------------------------------------------------------- schemes
@pytest.mark.parametrize("key", list(LEGENDS))
def test_scheme_codes_and_names_match_the_published_legend(key):
    s = lc.scheme(key)
    legend = _legend(key)
    assert [c.code for c in s.classes] == [code for code, _ in legend]
    for c, (code, text) in zip(s.classes, legend, strict=True):
        if key == "cnlucc":
            english, chinese = (t.strip() for t in text.split("|"))
            assert (c.label, c.label_zh) == (english, chinese), code
        elif key == "modis_igbp":
            abbreviation, label = text.split(" ", 1)
            assert (c.abbreviation, c.label) == (abbreviation, label), code
        else:
            assert _norm(c.label) == _norm(text), code
        assert c.name == c.name.lower() and " " not in c.name
    assert s.fill == FILL.get(key, ())
    assert s.nodata == 0


@pytest.mark.parametrize("key", list(CROSSWALK))
def test_crosswalk_covers_every_code_as_written_down(key):
    expected = {int(code): group for group, codes in CROSSWALK[key].items()
                for code in codes.split()}
    assert dict(lc.crosswalk(key)) == expected
    assert set(expected.values()) == set(LANDUSE.names)   # every scheme reaches all eight
    table = LandCoverTable.from_scheme(key)
    assert set(table.raw_codes) == {*expected, 0, *FILL.get(key, ())}
    for c in table.classes:
        if c.code in JUDGEMENTS[key]:
            assert "judgement" in c.note, (key, c.code)


def test_every_scheme_cites_its_source_and_has_distinct_colours_and_names():
    import terracarbon.landcover.schemes as module

    for key, s in SCHEMES.items():
        table = LandCoverTable.from_scheme(key)
        colours = [c.color for c in table.classes]
        assert len(set(colours)) == len(colours), key
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours), key
        assert len(set(table.names)) == len(table.names), key
        if key == "terracarbon":
            continue
        dois = [d.rstrip(",;") for d in re.findall(r"doi:(\S+)", s.reference)]
        assert dois and all(d in module.__doc__ for d in dois), key


def test_level1_classes_of_two_level_legends():
    glc = LandCoverTable.from_scheme("glc_fcs30")
    level1 = glc.level1()
    # the 16 LCCS level-1 classes of GLC_FCS30; forests 50-90 are parents only
    assert level1.codes == (10, 20, 50, 60, 70, 80, 90, 120, 130, 140, 150, 180, 190, 200,
                            210, 220)
    assert level1.level == 1 and glc.level == 2
    assert level1.reclass_map[92] == 90 and level1.reclass_map[153] == 150
    da = _da(np.array(glc.codes, dtype=np.int16)[None, :])
    # each GLC_FCS30 level-1 class is in one group, so both levels give the same groups
    xr.testing.assert_equal(level1.to_groups(da).drop_attrs(), glc.to_groups(da).drop_attrs())
    assert level1.reclassify(da).values.tolist()[0][:6] == [10, 10, 10, 20, 50, 50]
    cn = LandCoverTable.from_scheme("cnlucc", level=1)
    assert cn.codes == (1, 2, 3, 4, 5, 6)
    assert cn.names == ("cropland", "woodland", "grassland", "water_bodies", "built-up_land",
                        "unused_land")
    assert lc.landcover_from_params({"scheme": "clcd", "level": 1}).codes == tuple(range(1, 10))


# --------------------------------------------------------------------------- the default
def test_default_table_is_the_eight_groups_so_the_default_study_keeps_its_numbers():
    table = lc.default_table()
    assert table.scheme == "terracarbon"
    assert table.to_class_table() == LANDUSE
    assert LandCoverTable.group_table() is LANDUSE
    assert lc.landcover_from_params({}).to_class_table() == LANDUSE
    assert lc.landcover_from_params({"scheme": "groups"}).to_class_table() == LANDUSE
    assert all(c.group == c.name for c in table.classes)
    lu = _da(np.arange(9, dtype=np.int16).reshape(3, 3))
    assert (table.to_groups(lu) == lu).all()
    assert (table.reclassify(lu) == lu).all()
    for key in SCHEMES:
        assert LandCoverTable.from_scheme(key).group_table() == LANDUSE


# --------------------------------------------------------------------------- rasters
@pytest.fixture(scope="module")
def glc_cube() -> xr.DataArray:
    table = LandCoverTable.from_scheme("glc_fcs30")
    rng = np.random.default_rng(20)
    values = rng.choice(np.array(table.raw_codes), size=(3, 12, 17)).astype(np.int16)
    return _da(values, history="made by the test")


def test_to_groups_numpy_and_dask_agree_and_keep_cf_attrs(glc_cube):
    table = LandCoverTable.from_scheme("glc_fcs30")
    lazy = assert_numpy_equals_dask(table.to_groups, glc_cube, chunks={"y": 5, "x": 6})
    eager = table.to_groups(glc_cube)
    expected = np.vectorize(lambda c: 0 if c in (0, 250) else LANDUSE.code_of(
        lc.crosswalk("glc_fcs30")[c]))(glc_cube.values)
    np.testing.assert_array_equal(eager.values, expected)
    assert eager.dtype == np.int16 and lazy.dtype == np.int16
    assert eager.attrs["flag_values"].tolist() == list(range(9))
    assert eager.attrs["flag_meanings"] == "nodata " + " ".join(LANDUSE.names)
    assert eager.attrs["landcover_scheme"] == "glc_fcs30"
    assert eager.attrs["history"].splitlines()[0] == "made by the test"
    assert "landcover.to_groups" in eager.attrs["history"]


def test_to_groups_refuses_codes_the_table_does_not_name(glc_cube):
    table = LandCoverTable.from_scheme("glc_fcs30")
    bad = glc_cube.copy()
    bad[0, 0, :3] = 99
    with pytest.raises(InputDataError, match=r"99 \(3 px\).*landcover.reclassify"):
        table.to_groups(bad)
    lazy = table.to_groups(bad.chunk({"y": 4}))       # lazy: raises when computed
    with pytest.raises(InputDataError, match="99"):
        lazy.compute()
    floats = xr.DataArray([[52.0, np.nan], [0.0, 210.0]], dims=("y", "x"))
    assert table.to_groups(floats).values.tolist() == [[1, 0], [0, 6]]
    with pytest.raises(InputDataError, match="non-integer"):
        table.to_groups(xr.DataArray([52.5], dims="x"))


def test_reclassification_in_params_and_by_mapping(glc_cube):
    table = lc.landcover_from_params({"scheme": "glc_fcs30",
                                      "reclassify": {99: 0, 251: 200, 11: 10, 12: 10}})
    assert 11 not in table and 12 not in table and 10 in table
    raw = _da(np.array([[99, 251, 11], [12, 52, 250]], dtype=np.int16))
    assert table.reclassify(raw).values.tolist() == [[0, 200, 10], [10, 52, 0]]
    assert table.to_groups(raw).values.tolist() == [[0, 8, 4], [4, 1, 0]]
    assert 11 not in table.reclassify(raw).attrs["flag_values"]
    # a mapping given at the call merges classes the same way
    base = LandCoverTable.from_scheme("glc_fcs30")
    merged = base.reclassify(glc_cube, {121: 120, 122: 120})
    assert not np.isin(merged.values, [121, 122]).any()
    assert_numpy_equals_dask(base.reclassify, glc_cube, chunks={"x": 5},
                             mapping={121: 120, 122: 120})
    with pytest.raises(ParameterError, match="999 is not a class of the table"):
        base.reclassify(glc_cube, {11: 999})
    with pytest.raises(ParameterError, match="chains are not followed: map 11 to 20"):
        lc.landcover_from_params({"scheme": "glc_fcs30", "reclassify": {11: 10, 10: 20}})


# --------------------------------------------------------------------------- params
def test_params_list_every_problem_in_one_error():
    section = {
        "scheme": "glc_fcs30",
        "classes": {300: {"name": "tea garden", "group": "urban"},
                    301: {"name": "rubber", "group": "forest", "color": "not-a-colour"},
                    302: {"name": "bamboo"},
                    "303": "forest", 303: "shrub",
                    304: {"name": "Grassland", "group": "grassland"}},
        "groups": {150: "bare", 999: "forest", 152: "meadow"},
        "reclassify": {251: 777, 300: 10},
        "level": 3,
        "schema": 1,
    }
    with pytest.raises(ParameterError) as info:
        lc.landcover_from_params(section)
    message = str(info.value)
    expected = [
        "unknown key(s) ['schema']",
        "landcover.classes.300.group: 'urban' is not a land-cover group",
        "landcover.classes.301.color: color 'not-a-colour' is not a colour",
        "landcover.classes.302.group: missing",
        "landcover.classes.303: code given twice",
        "landcover.groups.999: 999 is not a class",
        "landcover.groups.152: 'meadow' is not a land-cover group",
        "landcover.reclassify.300: 300 is also one of landcover.classes",
        "landcover.level: got 3",
        "class 304: name 'grassland' is also class 130's",
        "reclassify 251 -> 777: 777 is not a class of the table",
    ]
    for part in expected:
        assert part in message, part
    assert message.startswith(f"{len(expected)} problem(s) in the parameters (landcover)")
    with pytest.raises(ParameterError, match=r"landcover.scheme='glc30' is not a built-in .*"
                                             r"'cnlucc'"):
        lc.landcover_from_params({"scheme": "glc30"})
    with pytest.raises(ParameterError, match="expected a mapping"):
        lc.landcover_from_params(["glc_fcs30"])


def test_own_classes_alone_or_with_a_scheme():
    own = lc.landcover_from_params({"classes": {
        1: {"name": "Paddy field", "group": "cropland"}, 2: {"name": "dry land",
                                                             "group": "Cropland"},
        3: {"name": "orchard", "group": "cropland", "color": "orange", "parent": 1},
        5: "forest", 7: {"name": "水田", "group": "cropland"}}})
    assert own.scheme == "custom"
    assert own.names == ("paddy_field", "dry_land", "orchard", "forest", "水田")
    assert own[1].label == "Paddy field" and own[3].color == "#ffa500" and own[3].parent == 1
    colours = [c.color for c in own.classes]
    assert len(set(colours)) == len(colours)          # automatic shades stay distinct
    assert own.group_of(5) == "forest" and own.codes_in_group("cropland") == (1, 2, 3, 7)
    mixed = lc.landcover_from_params({"scheme": "glc_fcs30", "groups": {150: "bare"},
                                      "classes": {300: {"name": "tea garden",
                                                        "group": "cropland", "parent": 10},
                                                  52: {"color": "#123456"}}})
    assert mixed.scheme == "glc_fcs30+custom" and len(mixed) == 30
    assert mixed.group_of(150) == "bare" and "moved from grassland" in mixed[150].note
    assert mixed[52].color == "#123456" and mixed[52].label.startswith("Closed evergreen")
    assert mixed.level1().reclass_map[300] == 10
    # a study's own class of a fill code makes it a class; parents must be level 1
    clouds = lc.landcover_from_params({"scheme": "glc_fcs30",
                                       "classes": {250: {"name": "cloud", "group": "bare"}}})
    assert 250 in clouds and clouds.fill == ()
    with pytest.raises(ParameterError, match=r"parent 11 has a parent itself \(10\)"):
        lc.landcover_from_params({"scheme": "glc_fcs30", "classes": {
            300: {"name": "tea garden", "group": "cropland", "parent": 11}}})
    frame = mixed.crosswalk()
    assert list(frame.columns) == ["code", "name", "label", "level", "parent", "group",
                                   "group_code", "note"]
    assert frame.set_index("code").loc[300, "group_code"] == LANDUSE.code_of("cropland")


# --------------------------------------------------------------------------- validation
def test_validation_lists_every_problem_with_pixel_counts():
    values = np.zeros((2, 10, 10), dtype=np.int16)
    values[:, :5] = 52           # 100 px forest
    values[:, 5:7] = 300         # 40 px: a class with a group that does not exist
    values[0, 7] = 99            # 10 px: not in the table
    values[1, 7, :3] = 77        # 3 px: not in the table
    values[1, 8] = 11            # 10 px: reclassified to a code the table lacks
    da = _da(values, source="lc_{year}.tif")
    section = {"scheme": "glc_fcs30", "classes": {300: {"name": "tea", "group": "urban"}},
               "reclassify": {11: 999}}
    with pytest.raises(ParameterError) as info:
        lc.validate_landcover(da, section)
    message = str(info.value)
    assert message.startswith("landcover: 4 problem(s) with the land-cover raster 'landuse' "
                              "(lc_{year}.tif) and its classes (scheme not built):")
    for part in ["landcover.classes.300.group: 'urban' is not a land-cover group",
                 "[code 300 in the raster: 40 pixels (20.00 %)]",
                 "reclassify 11 -> 999: 999 is not a class of the table",
                 "[code 11 in the raster: 10 pixels (5.00 %)]",
                 "raster: code 77 is not a class of the table: 3 pixels (1.50 %)",
                 "raster: code 99 is not a class of the table: 10 pixels (5.00 %)"]:
        assert part in message, part
    # with a sound table only the raster is at fault: InputDataError, each code counted
    table = LandCoverTable.from_scheme("glc_fcs30")
    with pytest.raises(InputDataError) as info:
        lc.validate_landcover(da, table, name="data.layers.landuse")
    message = str(info.value)
    assert "3 problem(s) with the land-cover raster 'data.layers.landuse'" in message
    for part in ["code 77 is not a class of the table: 3 pixels (1.50 %)",
                 "code 99 is not a class of the table: 10 pixels (5.00 %)",
                 "code 300 is not a class of the table: 40 pixels (20.00 %)",
                 "landcover.reclassify"]:
        assert part in message, part


def test_validation_counts_chunk_by_chunk_in_one_compute(glc_cube, monkeypatch):
    table = LandCoverTable.from_scheme("glc_fcs30")
    eager = lc.validate_landcover(glc_cube, table)
    calls = []
    original = lc_validate.block_counts
    monkeypatch.setattr(lc_validate, "block_counts",
                        lambda block: calls.append(block.shape) or original(block))
    chunked = glc_cube.chunk({"year": 1, "y": 5, "x": 9})
    scheduler = _CountingScheduler()
    with dask.config.set(scheduler=scheduler):
        lazy = lc.validate_landcover(chunked, table)
    assert scheduler.computes == 1
    assert len(calls) == chunked.data.npartitions == 3 * 3 * 2
    assert max(np.prod(s) for s in calls) == 5 * 9          # never more than one chunk
    assert lazy.counts == eager.counts
    assert sum(eager.counts.values()) == glc_cube.size
    assert eager.nodata_pixels == int(np.isin(glc_cube.values, [0, 250]).sum())
    assert sum(eager.by_class.values()) + eager.nodata_pixels == glc_cube.size
    assert list(eager.by_group) == [g for g in LANDUSE.names if g in eager.by_group]


def test_validation_of_empty_and_fractional_rasters():
    table = LandCoverTable.from_scheme("glc_fcs30")
    with pytest.raises(InputDataError, match=r"every pixel is no data \(codes \[0, 250\]\)"):
        lc.validate_landcover(_da(np.array([[0, 250]], dtype=np.int16)), table)
    with pytest.raises(InputDataError, match="1 pixels .* hold non-integer values"):
        lc.validate_landcover(_da(np.array([[52.0, 52.5, np.nan]])), table)
    counts = lc.validate_landcover(_da(np.array([[52.0, np.nan]])), table)
    assert (counts.nan_pixels, counts.nodata_pixels, counts.by_class) == (1, 1, {52: 1})


# --------------------------------------------------------------------------- towers
def test_igbp_towers_join_map_classes_through_the_same_crosswalk():
    from terracarbon.data.synthetic import flux as synthetic_flux
    from terracarbon.flux.training import IGBP_CLASSES

    igbp = lc.scheme("modis_igbp")
    # the flux path's IGBP table is MCD12Q1's, in code order
    assert tuple(c.abbreviation for c in igbp.classes) == IGBP_CLASSES
    assert lc.IGBP_GROUPS == {c.abbreviation: c.group for c in igbp.classes}
    # the synthetic towers' labels come back to the land use they were drawn from
    for code, label in synthetic_flux._IGBP_BY_CLASS.items():
        assert lc.igbp_group(label) == LANDUSE.name_of(code)
    for label in synthetic_flux._FOREST_IGBP_BY_VEG_TYPE.values():
        assert lc.igbp_group(label) == "forest"
    glc = LandCoverTable.from_scheme("glc_fcs30")
    assert lc.map_classes_for_igbp("GRA", glc) == (130, 140, 150, 152, 153)
    assert lc.map_classes_for_igbp("wsa", glc) == (51, 52, 61, 62, 71, 72, 81, 82, 91, 92)
    towers = lc.towers_with_groups(pd.DataFrame({"site": ["a", "b", "c"],
                                                 "igbp": ["CRO", "SAV", "SNO"]}))
    assert towers["group"].tolist() == ["cropland", "grassland", "bare"]
    assert towers["group_code"].tolist() == [4, 3, 8]
    with pytest.raises(InputDataError, match=r"'TUN' \(2 row\(s\)\), 'XYZ' \(1 row\(s\)\)"):
        lc.igbp_groups(["TUN", "ENF", "XYZ", "TUN"])


# --------------------------------------------------------------------------- builder
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    import rioxarray

    files = synthetic.make_study(
        tmp_path_factory.mktemp("landcover") / "study", nx=60, ny=40,
        years=range(2016, 2022), plot_years=(2018, 2021), n_veg_plots=120, n_soil_plots=200,
        n_outliers=3, n_outside_plots=4, seed=7)
    landuse = synthetic.open_truth(files.truth)["landuse"].load()
    dem = rioxarray.open_rasterio(files.raster_dir / "dem.tif").squeeze("band", drop=True)
    return landuse, dem.values


def test_glc_fcs30_builder_keeps_the_groups_exactly(tiny_study):
    landuse, dem = tiny_study
    table = LandCoverTable.from_scheme("glc_fcs30")
    out = glc_fcs30_landuse(landuse, dem=dem, seed=3)
    assert out.dims == landuse.dims and out.dtype == np.int16
    xr.testing.assert_equal(table.to_groups(out).drop_attrs(), landuse.drop_attrs())
    counts = lc.validate_landcover(out, table)
    # every GLC_FCS30 subtype but ice appears on the tiny study, with real codes
    assert set(counts.by_class) == set(table.codes) - {220}
    assert out.attrs["landcover_scheme"] == "glc_fcs30"
    assert out.attrs["flag_values"].tolist() == [0, *table.codes]
    # a pixel keeps its subtype while its group stays
    same = (landuse.isel(year=0) == landuse.isel(year=-1)).values
    np.testing.assert_array_equal(out.isel(year=0).values[same], out.isel(year=-1).values[same])
    # subtypes follow elevation: evergreen broadleaved forest lies below needle-leaved
    forest = out.isel(year=0).values
    assert dem[forest // 10 == 5].mean() < dem[(forest // 10 == 7) | (forest // 10 == 8)].mean()
    # deterministic in the seed
    xr.testing.assert_identical(out, glc_fcs30_landuse(landuse, dem=dem, seed=3))
    assert (glc_fcs30_landuse(landuse, dem=dem, seed=4) != out).any()


def test_glc_fcs30_builder_on_dask_and_glc_fcs30d(tiny_study):
    landuse, dem = tiny_study
    assert_numpy_equals_dask(glc_fcs30_landuse, landuse, chunks={"year": 2, "y": 15},
                             max_computes=10, seed=1)
    out = glc_fcs30_landuse(landuse, seed=1, scheme="glc_fcs30d")     # no DEM: by northing
    table = LandCoverTable.from_scheme("glc_fcs30d")
    xr.testing.assert_equal(table.to_groups(out).drop_attrs(), landuse.drop_attrs())
    wet = set(np.unique(out.values[landuse.values == LANDUSE.code_of("wetland")]).tolist())
    assert wet and wet <= set(range(181, 188))
    with pytest.raises(InputDataError, match=r"holds codes \[12\]"):
        glc_fcs30_landuse(landuse.where(landuse != 3, 12))
    with pytest.raises(ParameterError, match="scheme='clcd'"):
        glc_fcs30_landuse(landuse, scheme="clcd")
