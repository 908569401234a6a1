"""Built-in land-cover schemes: official codes and names, and their crosswalk to the groups.

Each scheme lists the classes of one published product exactly as its legend gives them
(code and English label; the Chinese label where the legend is Chinese), the class's
identifier (``name``: the label in lower case with underscores, written to CF
``flag_meanings`` and to tables), a colour, its parent class where the legend is two-level,
and its **group** (one of :data:`~terracarbon.landcover.groups.GROUPS`). Where the group is
a judgement rather than a rename, the class carries a ``note`` saying why; a study can move
any class to another group with ``landcover.groups`` (see :mod:`terracarbon.landcover.params`).

Schemes and their sources
-------------------------
``terracarbon`` (alias ``groups``)
    The eight groups themselves (:data:`terracarbon.conventions.LANDUSE`, codes 1..8), the
    synthetic study's codes; the group of each class is itself. The default.
``clcd``
    CLCD, the annual China Land Cover Dataset at 30 m: Yang, J. and Huang, X. (2021), "The
    30 m annual land cover dataset and its dynamics in China from 1990 to 2019", *Earth
    Syst. Sci. Data* 13, 3907–3925, https://doi.org/10.5194/essd-13-3907-2021 (the
    product's legend). Nine classes 1..9, 0 = no data. Judgement: 6 snow/ice -> bare
    (IPCC "other land").
``glc_fcs30`` (alias ``glc_fs30``)
    GLC_FCS30, the global 30 m land cover with a fine classification system: Zhang, X.,
    Liu, L., Chen, X., Gao, Y., Xie, S. and Mi, J. (2021), "GLC_FCS30: global land-cover
    product with fine classification system at 30 m using time-series Landsat imagery",
    *Earth Syst. Sci. Data* 13, 2753–2776, https://doi.org/10.5194/essd-13-2753-2021
    (the paper's classification system and the product's legend). 29 classes built on the
    FAO LCCS: 16 level-1 classes (10, 20, 50, 60, 70, 80, 90, 120, 130, 140, 150, 180, 190,
    200, 210, 220) of which the forests 50–90 only occur as their level-2 open/closed
    classes, plus level-2
    classes 11, 12, 51, 52, 61, 62, 71, 72, 81, 82, 91, 92, 121, 122, 152, 153, 201, 202;
    250 (and 0) = filled value. Judgements: 12 orchard -> cropland (the legend files it
    under rainfed cropland), 140 lichens and mosses -> grassland, 150/152/153 sparse
    vegetation (cover < 15 %) -> grassland (keeps the level-1 class 150 in one group; set
    ``groups: {150: bare, 152: bare, 153: bare}`` to count it as bare, as CLCD's "barren" and
    WorldCover's "bare / sparse vegetation" do), 220 permanent ice and snow -> bare.
``glc_fcs30d``
    GLC_FCS30D, its 1985–2022 dynamic successor: Zhang, X., Zhao, T., Xu, H., Liu, W.,
    Wang, J., Chen, X. and Liu, L. (2024), "GLC_FCS30D: the first global 30 m land-cover
    dynamics monitoring product with a fine classification system for the period from 1984
    to 2022 generated using dense-time-series Landsat imagery and the continuous
    change-detection method", *Earth Syst. Sci. Data* 16, 1353–1381,
    https://doi.org/10.5194/essd-16-1353-2024 (data https://doi.org/10.5281/zenodo.8239305).
    The same classes with 180 wetlands split into 181 swamp, 182 marsh, 183 flooded flat,
    184 saline, 185 mangrove, 186 salt marsh, 187 tidal flat (35 classes; 0 and 250 =
    filled value). Judgement as above, and 185 mangrove -> wetland (the product's own
    level-1 class; a mangrove stand is forest by structure).
``cnlucc``
    CNLUCC, the China multi-period land use/land cover remote-sensing monitoring dataset of
    the Resource and Environment Science and Data Center (RESDC), Institute of Geographic
    Sciences and Natural Resources Research, CAS: Xu, X., Liu, J., Zhang, S., Li, R., Yan, C.
    and Wu, S. (2018), https://doi.org/10.12078/2018070201, classification system of Liu,
    J. et al. (2014), "Spatiotemporal characteristics, patterns, and causes of land-use
    changes in China since the late 1980s", *J. Geogr. Sci.* 24, 195–210,
    https://doi.org/10.1007/s11442-014-1082-6 (classification system). Six level-1
    classes (1 cropland 耕地, 2 woodland 林地, 3 grassland 草地, 4 water bodies 水域,
    5 built-up land 城乡、工矿、居民用地, 6 unused land 未利用土地) and 25 level-2 codes
    11–67; rasters hold the level-2 codes. Some releases code the sea as 99 (海洋); map
    it with ``reclassify: {99: 0}``. Judgements: 22 shrubland -> shrub (listed under
    woodland), 23 sparse woodland (canopy 10–30 %) -> forest (the FAO forest threshold is
    10 %), 24 other woodland (unestablished forest, nurseries, orchards) -> forest,
    44 permanent glacier and snow -> bare, 45 tidal flat and 46 bottomland -> wetland
    (listed under water), 64 marsh -> wetland (listed under unused land), 67 other unused
    land (alpine desert, tundra) -> bare.
``esa_worldcover`` (alias ``worldcover``)
    ESA WorldCover 10 m, v100 (2020) and v200 (2021): Zanaga, D. et al. (2021, 2022), ESA
    WorldCover 10 m v100 / v200, https://doi.org/10.5281/zenodo.5571936 and
    https://doi.org/10.5281/zenodo.7254221; legend: the Product User Manual v2.0,
    land-cover classes (https://esa-worldcover.org). Eleven classes 10–100, 0 = no data.
    Judgements: 70 snow and ice -> bare, 95 mangroves -> wetland (as GLC_FCS30D), 100 moss
    and lichen -> grassland.
``modis_igbp`` (aliases ``igbp``, ``mcd12q1``)
    MODIS MCD12Q1 collection 6/6.1, band LC_Type1 (the IGBP classification): Sulla-Menashe,
    D. and Friedl, M. A. (2018), *User Guide to Collection 6 MODIS Land Cover (MCD12Q1 and
    MCD12C1) Product*, USGS (the LC_Type1 legend table); data: Friedl, M. and
    Sulla-Menashe, D. (2019), https://doi.org/10.5067/MODIS/MCD12Q1.006. Classes 1–17 with
    their IGBP abbreviations (the labels FLUXNET gives its towers), 255 = unclassified.
    Judgements: 8 woody savannas (tree cover 30–60 %) -> forest, 9 savannas (tree cover
    10–30 %, herbaceous-dominated) -> grassland, 14 cropland/natural vegetation mosaics ->
    cropland, 15 permanent snow and ice -> bare.

Colours are the product's published palette where it has one (GLC_FCS30 and GLC_FCS30D
follow the ESA CCI-LC palette; where that gives two classes one colour, the second is
shifted slightly so legends stay readable); CNLUCC's are terracarbon's, in each group's hue.

>>> scheme("glc_fs30").key, len(scheme("glc_fcs30").classes)
('glc_fcs30', 29)
>>> scheme("igbp").class_of(8).group
'forest'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from terracarbon.conventions import LANDUSE
from terracarbon.errors import ParameterError


@dataclass(frozen=True)
class SchemeClass:
    """One class of a published legend, with its group.

    ``name`` is the identifier (flag meaning, table column); ``label`` the legend's words;
    ``parent`` the level-1 code of a level-2 class (None for level-1 classes); ``note`` says
    why the group is what it is where that is a judgement.
    """

    code: int
    name: str
    label: str
    group: str
    color: str
    parent: int | None = None
    note: str = ""
    abbreviation: str = ""
    label_zh: str = ""


@dataclass(frozen=True)
class Scheme:
    """A built-in scheme: its classes, their level-1 parents, fill codes and its source."""

    key: str
    title: str
    reference: str
    classes: tuple[SchemeClass, ...]
    parents: tuple[SchemeClass, ...] = ()
    """Level-1 classes that are not codes of the raster themselves (GLC_FCS30 50–90,
    CNLUCC 1–6): the parents of level-2 classes."""
    fill: tuple[int, ...] = ()
    """Codes meaning "no data" besides 0 (GLC_FCS30 250, MCD12Q1 255)."""
    nodata: int = 0
    aliases: tuple[str, ...] = field(default=())

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(c.code for c in self.classes)

    def class_of(self, code: int) -> SchemeClass:
        for c in (*self.classes, *self.parents):
            if c.code == int(code):
                return c
        raise KeyError(f"{self.key}: no class {code!r}; codes are {list(self.codes)}")


def _c(code: int, name: str, label: str, group: str, color: str, *, parent: int | None = None,
       note: str = "", abbreviation: str = "", label_zh: str = "") -> SchemeClass:
    return SchemeClass(code, name, label, group, color, parent, note, abbreviation, label_zh)


# --------------------------------------------------------------------------- terracarbon
_TERRACARBON = Scheme(
    key="terracarbon",
    title="terracarbon land-cover groups (synthetic study)",
    reference="terracarbon.conventions.LANDUSE (docs/architecture.md, 'Land-use codes')",
    classes=tuple(
        _c(code, name, name.replace("-", " ").capitalize(), name, color)
        for code, name, color in zip(LANDUSE.codes, LANDUSE.names, LANDUSE.colors)
    ),
    aliases=("groups", "default"),
)

# --------------------------------------------------------------------------- CLCD
# Yang & Huang (2021), ESSD 13, 3907-3925: the product's legend and palette.
_CLCD = Scheme(
    key="clcd",
    title="CLCD: annual China Land Cover Dataset, 30 m (1985-)",
    reference="Yang, J. and Huang, X. (2021), Earth Syst. Sci. Data 13, 3907-3925, "
              "doi:10.5194/essd-13-3907-2021",
    classes=(
        _c(1, "cropland", "Cropland", "cropland", "#fae39c", label_zh="耕地"),
        _c(2, "forest", "Forest", "forest", "#446f33", label_zh="林地"),
        _c(3, "shrub", "Shrub", "shrub", "#33a02c", label_zh="灌木"),
        _c(4, "grassland", "Grassland", "grassland", "#abd37b", label_zh="草地"),
        _c(5, "water", "Water", "water", "#1e69b4", label_zh="水体"),
        _c(6, "snow_ice", "Snow/Ice", "bare", "#a6cee3", label_zh="冰雪",
           note="judgement: permanent snow and ice stores little carbon; counted as bare "
                "(IPCC 'other land')"),
        _c(7, "barren", "Barren", "bare", "#cfbda3", label_zh="裸地"),
        _c(8, "impervious", "Impervious", "built-up", "#e24290", label_zh="不透水面"),
        _c(9, "wetland", "Wetland", "wetland", "#289be8", label_zh="湿地"),
    ),
)

# --------------------------------------------------------------------------- GLC_FCS30
# Zhang et al. (2021), ESSD 13, 2753-2776: the product's legend; its (ESA CCI-LC) palette.
_SPARSE_NOTE = ("judgement: sparse vegetation (cover < 15 %) is grouped with grassland so the "
                "LCCS level-1 class 150 stays in one group; set groups {150: bare, 152: bare, "
                "153: bare} to count it as bare")
_ICE_NOTE = ("judgement: permanent ice and snow stores little carbon; counted as bare "
             "(IPCC 'other land')")
_GLC_COMMON_HEAD = (
    _c(10, "rainfed_cropland", "Rainfed cropland", "cropland", "#ffff64"),
    _c(11, "herbaceous_cover", "Herbaceous cover", "cropland", "#e6e65c", parent=10),
    _c(12, "tree_or_shrub_cover_orchard", "Tree or shrub cover (Orchard)", "cropland",
       "#ffff00", parent=10,
       note="judgement: orchards are filed under rainfed cropland by the legend and kept "
            "there; their woody biomass is not counted as forest"),
    _c(20, "irrigated_cropland", "Irrigated cropland", "cropland", "#aaf0f0"),
    _c(51, "open_evergreen_broadleaved_forest", "Open evergreen broadleaved forest",
       "forest", "#4c7300", parent=50),
    _c(52, "closed_evergreen_broadleaved_forest", "Closed evergreen broadleaved forest",
       "forest", "#006400", parent=50),
    _c(61, "open_deciduous_broadleaved_forest",
       "Open deciduous broadleaved forest (0.15<fc<0.4)", "forest", "#aac800", parent=60),
    _c(62, "closed_deciduous_broadleaved_forest",
       "Closed deciduous broadleaved forest (fc>0.4)", "forest", "#00a000", parent=60),
    _c(71, "open_evergreen_needle-leaved_forest",
       "Open evergreen needle-leaved forest (0.15<fc<0.4)", "forest", "#005000", parent=70),
    _c(72, "closed_evergreen_needle-leaved_forest",
       "Closed evergreen needle-leaved forest (fc>0.4)", "forest", "#003c00", parent=70),
    _c(81, "open_deciduous_needle-leaved_forest",
       "Open deciduous needle-leaved forest (0.15<fc<0.4)", "forest", "#286400", parent=80),
    _c(82, "closed_deciduous_needle-leaved_forest",
       "Closed deciduous needle-leaved forest (fc>0.4)", "forest", "#285000", parent=80),
    _c(91, "open_mixed_leaf_forest",
       "Open mixed leaf forest (broadleaved and needle-leaved)", "forest", "#a0b432",
       parent=90),
    _c(92, "closed_mixed_leaf_forest",
       "Closed mixed leaf forest (broadleaved and needle-leaved)", "forest", "#788200",
       parent=90),
    _c(120, "shrubland", "Shrubland", "shrub", "#966400"),
    _c(121, "evergreen_shrubland", "Evergreen shrubland", "shrub", "#964b00", parent=120),
    _c(122, "deciduous_shrubland", "Deciduous shrubland", "shrub", "#b4821e", parent=120),
    _c(130, "grassland", "Grassland", "grassland", "#ffb432"),
    _c(140, "lichens_and_mosses", "Lichens and mosses", "grassland", "#ffdcd2",
       note="judgement: low non-woody vegetation; grouped with grassland"),
    _c(150, "sparse_vegetation", "Sparse vegetation (fc<0.15)", "grassland", "#ffebaf",
       note=_SPARSE_NOTE),
    _c(152, "sparse_shrubland", "Sparse shrubland (fc<0.15)", "grassland", "#ffd278",
       parent=150, note=_SPARSE_NOTE),
    _c(153, "sparse_herbaceous", "Sparse herbaceous (fc<0.15)", "grassland", "#f5dc9b",
       parent=150, note=_SPARSE_NOTE),
)
_GLC_COMMON_TAIL = (
    _c(190, "impervious_surfaces", "Impervious surfaces", "built-up", "#c31400"),
    _c(200, "bare_areas", "Bare areas", "bare", "#fff5d7"),
    _c(201, "consolidated_bare_areas", "Consolidated bare areas", "bare", "#dcdcdc",
       parent=200),
    _c(202, "unconsolidated_bare_areas", "Unconsolidated bare areas", "bare", "#f0e1b9",
       parent=200),
    _c(210, "water_body", "Water body", "water", "#0046c8"),
    _c(220, "permanent_ice_and_snow", "Permanent ice and snow", "bare", "#ffffff",
       note=_ICE_NOTE),
)
_GLC_FOREST_PARENTS = (
    _c(50, "evergreen_broadleaved_forest", "Evergreen broadleaved forest", "forest",
       "#006400"),
    _c(60, "deciduous_broadleaved_forest", "Deciduous broadleaved forest", "forest",
       "#00a000"),
    _c(70, "evergreen_needle-leaved_forest", "Evergreen needle-leaved forest", "forest",
       "#003c00"),
    _c(80, "deciduous_needle-leaved_forest", "Deciduous needle-leaved forest", "forest",
       "#285000"),
    _c(90, "mixed_leaf_forest", "Mixed leaf forest", "forest", "#788200"),
)
_GLC_WETLANDS = _c(180, "wetlands", "Wetlands", "wetland", "#00dc82")
_GLC_FCS30 = Scheme(
    key="glc_fcs30",
    title="GLC_FCS30: global land cover with a fine classification system, 30 m",
    reference="Zhang, X. et al. (2021), Earth Syst. Sci. Data 13, 2753-2776, "
              "doi:10.5194/essd-13-2753-2021",
    classes=(*_GLC_COMMON_HEAD, _GLC_WETLANDS, *_GLC_COMMON_TAIL),
    parents=_GLC_FOREST_PARENTS,
    fill=(250,),
    aliases=("glc_fs30", "glc-fcs30", "glcfcs30"),
)

# GLC_FCS30D: Zhang et al. (2024), ESSD 16, 1353-1381; wetland subclasses of GWL_FCS30.
_GLC_FCS30D = Scheme(
    key="glc_fcs30d",
    title="GLC_FCS30D: global 30 m land-cover dynamics with a fine classification system, "
          "1985-2022",
    reference="Zhang, X. et al. (2024), Earth Syst. Sci. Data 16, 1353-1381, "
              "doi:10.5194/essd-16-1353-2024",
    classes=(
        *_GLC_COMMON_HEAD,
        _c(181, "swamp", "Swamp", "wetland", "#00a884", parent=180),
        _c(182, "marsh", "Marsh", "wetland", "#73ffdf", parent=180),
        _c(183, "flooded_flat", "Flooded flat", "wetland", "#9ebbd7", parent=180),
        _c(184, "saline", "Saline", "wetland", "#828282", parent=180),
        _c(185, "mangrove", "Mangrove", "wetland", "#f57ab6", parent=180,
           note="judgement: the product files mangroves under wetlands; kept there although "
                "a mangrove stand is forest by structure"),
        _c(186, "salt_marsh", "Salt marsh", "wetland", "#66cdab", parent=180),
        _c(187, "tidal_flat", "Tidal flat", "wetland", "#444f89", parent=180),
        *_GLC_COMMON_TAIL,
    ),
    parents=(*_GLC_FOREST_PARENTS, _GLC_WETLANDS),
    fill=(250,),
    aliases=("glc-fcs30d",),
)

# --------------------------------------------------------------------------- CNLUCC
# RESDC classification (Liu et al. 2014, J. Geogr. Sci. 24). Colours: terracarbon's.
_CNLUCC = Scheme(
    key="cnlucc",
    title="CNLUCC: China multi-period land use/land cover remote-sensing monitoring dataset "
          "(RESDC, CAS)",
    reference="Xu, X. et al. (2018), RESDC, doi:10.12078/2018070201; classification of Liu, "
              "J. et al. (2014), J. Geogr. Sci. 24, 195-210, doi:10.1007/s11442-014-1082-6",
    classes=(
        _c(11, "paddy_field", "Paddy field", "cropland", "#f5d76e", parent=1, label_zh="水田"),
        _c(12, "dry_land", "Dry land", "cropland", "#e8b83a", parent=1, label_zh="旱地"),
        _c(21, "forest", "Forest", "forest", "#1a7a33", parent=2, label_zh="有林地"),
        _c(22, "shrubland", "Shrubland", "shrub", "#8cc269", parent=2, label_zh="灌木林",
           note="listed under woodland (2); grouped by its life form, shrub"),
        _c(23, "sparse_woodland", "Sparse woodland", "forest", "#5fa55a", parent=2,
           label_zh="疏林地",
           note="judgement: canopy cover 10-30 % meets the FAO forest threshold (10 %)"),
        _c(24, "other_woodland", "Other woodland", "forest", "#4f8f3a", parent=2,
           label_zh="其他林地",
           note="judgement: unestablished forest, nurseries and orchards; kept with forest as "
                "the legend files them under woodland"),
        _c(31, "high_coverage_grassland", "High-coverage grassland", "grassland", "#c9dc6a",
           parent=3, label_zh="高覆盖度草地"),
        _c(32, "medium_coverage_grassland", "Medium-coverage grassland", "grassland",
           "#d9e68a", parent=3, label_zh="中覆盖度草地"),
        _c(33, "low_coverage_grassland", "Low-coverage grassland", "grassland", "#ebf2b8",
           parent=3, label_zh="低覆盖度草地"),
        _c(41, "rivers_and_canals", "Rivers and canals", "water", "#2c7fb8", parent=4,
           label_zh="河渠"),
        _c(42, "lakes", "Lakes", "water", "#1f5f99", parent=4, label_zh="湖泊"),
        _c(43, "reservoirs_and_ponds", "Reservoirs and ponds", "water", "#5ba3d6", parent=4,
           label_zh="水库坑塘"),
        _c(44, "permanent_glacier_and_snow", "Permanent glacier and snow", "bare", "#e8f4fa",
           parent=4, label_zh="永久性冰川雪地",
           note="judgement: listed under water; little carbon, counted as bare (IPCC "
                "'other land')"),
        _c(45, "tidal_flat", "Tidal flat", "wetland", "#7fc8c0", parent=4, label_zh="滩涂",
           note="judgement: listed under water; an intertidal wetland"),
        _c(46, "bottomland", "Bottomland", "wetland", "#a8dcd0", parent=4, label_zh="滩地",
           note="judgement: listed under water; land between normal and flood water levels, "
                "a riparian wetland"),
        _c(51, "urban_land", "Urban land", "built-up", "#d7301f", parent=5,
           label_zh="城镇用地"),
        _c(52, "rural_residential_land", "Rural residential land", "built-up", "#f07b5f",
           parent=5, label_zh="农村居民点"),
        _c(53, "other_construction_land", "Other construction land", "built-up", "#a8322a",
           parent=5, label_zh="其他建设用地"),
        _c(61, "sandy_land", "Sandy land", "bare", "#e6d8a8", parent=6, label_zh="沙地"),
        _c(62, "gobi", "Gobi", "bare", "#c9b98f", parent=6, label_zh="戈壁"),
        _c(63, "saline_alkali_land", "Saline-alkali land", "bare", "#eeeadf", parent=6,
           label_zh="盐碱地"),
        _c(64, "marsh", "Marsh", "wetland", "#5fb3b3", parent=6, label_zh="沼泽地",
           note="listed under unused land; a wetland by cover"),
        _c(65, "bare_soil", "Bare soil", "bare", "#c2b59b", parent=6, label_zh="裸土地"),
        _c(66, "bare_rock", "Bare rock", "bare", "#9c9388", parent=6, label_zh="裸岩石质地"),
        _c(67, "other_unused_land", "Other unused land", "bare", "#d8d0c4", parent=6,
           label_zh="其他",
           note="judgement: alpine desert and tundra; counted as bare"),
    ),
    parents=(
        _c(1, "cropland", "Cropland", "cropland", "#f3c34a", label_zh="耕地"),
        _c(2, "woodland", "Woodland", "forest", "#1a7a33", label_zh="林地",
           note="holds shrubland (22, group shrub) too; as a level-1 class counted as forest"),
        _c(3, "grassland", "Grassland", "grassland", "#d9e68a", label_zh="草地"),
        _c(4, "water_bodies", "Water bodies", "water", "#2c7fb8", label_zh="水域",
           note="holds glacier (44, bare) and tidal flat/bottomland (45, 46, wetland) too; "
                "as a level-1 class counted as water"),
        _c(5, "built-up_land", "Urban, industrial and residential land", "built-up",
           "#d7301f", label_zh="城乡、工矿、居民用地"),
        _c(6, "unused_land", "Unused land", "bare", "#c2b59b", label_zh="未利用土地",
           note="holds marsh (64, wetland) too; as a level-1 class counted as bare"),
    ),
)

# --------------------------------------------------------------------------- ESA WorldCover
# Zanaga et al. (2021, 2022); Product User Manual v2.0 (codes, labels, colours).
_WORLDCOVER = Scheme(
    key="esa_worldcover",
    title="ESA WorldCover 10 m (v100 2020, v200 2021)",
    reference="Zanaga, D. et al. (2022), ESA WorldCover 10 m 2021 v200, "
              "doi:10.5281/zenodo.7254221 (Product User Manual v2.0)",
    classes=(
        _c(10, "tree_cover", "Tree cover", "forest", "#006400"),
        _c(20, "shrubland", "Shrubland", "shrub", "#ffbb22"),
        _c(30, "grassland", "Grassland", "grassland", "#ffff4c"),
        _c(40, "cropland", "Cropland", "cropland", "#f096ff"),
        _c(50, "built-up", "Built-up", "built-up", "#fa0000"),
        _c(60, "bare_sparse_vegetation", "Bare / sparse vegetation", "bare", "#b4b4b4"),
        _c(70, "snow_and_ice", "Snow and ice", "bare", "#f0f0f0", note=_ICE_NOTE),
        _c(80, "permanent_water_bodies", "Permanent water bodies", "water", "#0064c8"),
        _c(90, "herbaceous_wetland", "Herbaceous wetland", "wetland", "#0096a0"),
        _c(95, "mangroves", "Mangroves", "wetland", "#00cf75",
           note="judgement: a coastal wetland (as GLC_FCS30D); forest by structure"),
        _c(100, "moss_and_lichen", "Moss and lichen", "grassland", "#fae6a0",
           note="judgement: low non-woody vegetation; grouped with grassland"),
    ),
    aliases=("worldcover", "esa-worldcover"),
)

# --------------------------------------------------------------------------- MODIS IGBP
# MCD12Q1 C6 user guide (Sulla-Menashe & Friedl 2018), LC_Type1 legend; MCD12Q1 palette.
_IGBP = Scheme(
    key="modis_igbp",
    title="MODIS MCD12Q1 LC_Type1 (IGBP classification)",
    reference="Sulla-Menashe, D. and Friedl, M. A. (2018), User Guide to Collection 6 MODIS "
              "Land Cover (MCD12Q1 and MCD12C1) Product, USGS; data "
              "doi:10.5067/MODIS/MCD12Q1.006",
    classes=(
        _c(1, "evergreen_needleleaf_forests", "Evergreen Needleleaf Forests", "forest",
           "#05450a", abbreviation="ENF"),
        _c(2, "evergreen_broadleaf_forests", "Evergreen Broadleaf Forests", "forest",
           "#086a10", abbreviation="EBF"),
        _c(3, "deciduous_needleleaf_forests", "Deciduous Needleleaf Forests", "forest",
           "#54a708", abbreviation="DNF"),
        _c(4, "deciduous_broadleaf_forests", "Deciduous Broadleaf Forests", "forest",
           "#78d203", abbreviation="DBF"),
        _c(5, "mixed_forests", "Mixed Forests", "forest", "#009900", abbreviation="MF"),
        _c(6, "closed_shrublands", "Closed Shrublands", "shrub", "#c6b044", abbreviation="CSH"),
        _c(7, "open_shrublands", "Open Shrublands", "shrub", "#dcd159", abbreviation="OSH"),
        _c(8, "woody_savannas", "Woody Savannas", "forest", "#dade48", abbreviation="WSA",
           note="judgement: tree cover 30-60 % (canopy > 2 m) meets the FAO forest "
                "threshold; counted as forest"),
        _c(9, "savannas", "Savannas", "grassland", "#fbff13", abbreviation="SAV",
           note="judgement: tree cover 10-30 % over a herbaceous layer; counted as grassland"),
        _c(10, "grasslands", "Grasslands", "grassland", "#b6ff05", abbreviation="GRA"),
        _c(11, "permanent_wetlands", "Permanent Wetlands", "wetland", "#27ff87",
           abbreviation="WET"),
        _c(12, "croplands", "Croplands", "cropland", "#c24f44", abbreviation="CRO"),
        _c(13, "urban_and_built-up_lands", "Urban and Built-up Lands", "built-up", "#a5a5a5",
           abbreviation="URB"),
        _c(14, "cropland_natural_vegetation_mosaics", "Cropland/Natural Vegetation Mosaics",
           "cropland", "#ff6d4c", abbreviation="CVM",
           note="judgement: 40-60 % cropland in a mosaic with natural vegetation; counted as "
                "cropland"),
        _c(15, "permanent_snow_and_ice", "Permanent Snow and Ice", "bare", "#69fff8",
           abbreviation="SNO", note=_ICE_NOTE),
        _c(16, "barren", "Barren", "bare", "#f9ffa4", abbreviation="BSV"),
        _c(17, "water_bodies", "Water Bodies", "water", "#1c0dff", abbreviation="WAT"),
    ),
    fill=(255,),
    aliases=("igbp", "mcd12q1", "modis"),
)

SCHEMES: dict[str, Scheme] = {
    s.key: s for s in (_TERRACARBON, _CLCD, _GLC_FCS30, _GLC_FCS30D, _CNLUCC, _WORLDCOVER,
                       _IGBP)
}
"""Every built-in scheme by key."""
DEFAULT_SCHEME = "terracarbon"
"""The scheme of a study that declares no ``landcover`` section."""
_ALIASES: dict[str, str] = {a: s.key for s in SCHEMES.values() for a in (s.key, *s.aliases)}


def scheme_names() -> tuple[str, ...]:
    """Keys of the built-in schemes (aliases not included)."""
    return tuple(SCHEMES)


def _normalise(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def resolve_scheme_name(name: object, *, param: str = "landcover.scheme") -> str:
    """The key of the built-in scheme called ``name`` (or one of its aliases).

    >>> resolve_scheme_name("GLC_FS30")
    'glc_fcs30'
    """
    key = _ALIASES.get(_normalise(name)) if isinstance(name, str) else None
    if key is None:
        raise ParameterError(
            f"{param}={name!r} is not a built-in land-cover scheme; expected one of "
            f"{list(SCHEMES)} (aliases: {sorted(set(_ALIASES) - set(SCHEMES))}), or give "
            "your own classes under landcover.classes.")
    return key


def scheme(name: str) -> Scheme:
    """The built-in scheme called ``name`` (key or alias; case-insensitive)."""
    return SCHEMES[resolve_scheme_name(name)]


def crosswalk(name: str) -> Mapping[int, str]:
    """``{code: group}`` of a built-in scheme (its classes, not its level-1 parents).

    >>> crosswalk("esa_worldcover")[95]
    'wetland'
    """
    return {c.code: c.group for c in scheme(name).classes}
