"""A biomass or carbon raster product as the source of a carbon pool, and its check at plots.

Users often bring a published above-ground biomass (AGB) or biomass-carbon (AGC) map — the
China forest biomass dataset (1 km AGBC/BGBC 2002-2021), ESA CCI Biomass, GlobBiomass — as
one GeoTIFF per year, or a few epochs. :func:`read_biomass_product` reads it as a carbon
density in ``t C ha-1`` on the study's years; :func:`check_against_plots` scores it at field
plots (bias, RMSE, R^2, n).

Units, by dimension
-------------------
The product's units come from the ``units`` argument (``product.units`` in params) or, failing
that, from the file's ``units`` tag (as :func:`terracarbon.data.io.write_geotiff` writes it).
They are read with :mod:`terracarbon.units` (pint through cf-xarray's UDUNITS registry):

* **carbon** — mass per area with the ``C`` label (``t C ha-1``, ``Mg C ha-1``, ``MgC ha-1``,
  ``kg C m-2``, ``g C m-2``): converted to ``t C ha-1``;
* **biomass** — mass per area without a label (``Mg ha-1``, ``t ha-1``, ``kg m-2``,
  ``g m-2``): converted to ``t ha-1`` of dry matter and multiplied by ``carbon_fraction``
  (default :data:`terracarbon.conventions.CARBON_FRACTION_OF_BIOMASS`, 0.47, IPCC 2006
  Vol. 4 Table 4.3);
* anything else (a rate ``Mg ha-1 yr-1``, ``%``, ``1``) or no units at all raises
  :class:`~terracarbon.errors.InputDataError` naming the file and the parameter to set.

``quantity="biomass"`` or ``"carbon"`` overrides the label when a carbon product is labelled
``Mg ha-1`` (common: the label names the mass, not the substance); it must not contradict an
explicit ``C`` label.

Epochs and years
----------------
The files (``path`` with ``{year}``, or one file with ``band_years``) give the product's
*epochs*. With ``years`` (the study's years) each year takes values by ``epochs``:

``"exact"`` (default)
    every year must be an epoch (an error lists the missing ones);
``"nearest"``
    the nearest epoch (a tie takes the earlier epoch);
``"hold"``
    the latest epoch at or before the year (last observation carried forward); a year before
    the first epoch raises (use ``"nearest"``);
``"linear"``
    linear interpolation between the epochs before and after; years outside the epochs take
    the first/last epoch.

The coordinate ``epoch_year`` (``nearest``/``hold``) or ``epoch_before``/``epoch_after``
(``linear``) records where each year came from. A single file without ``{year}`` is one epoch
(``epoch_year`` names its year, if known) held for every year.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon import units as _units
from terracarbon.carbon.root_shoot import _check_fraction
from terracarbon.checks import check_choice, require_columns
from terracarbon.conventions import CARBON_FRACTION_OF_BIOMASS, DENSITY_UNITS
from terracarbon.data import io
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

log = logging.getLogger(__name__)

Quantity = Literal["auto", "biomass", "carbon"]
EpochMapping = Literal["exact", "nearest", "hold", "linear"]
EPOCH_MAPPINGS: tuple[str, ...] = ("exact", "nearest", "hold", "linear")
BIOMASS_UNITS = "t ha-1"

PLOT_CHECK_COLUMNS: list[str] = [
    "group", "n", "n_outside", "n_nodata", "n_year_gap", "bias", "relative_bias_pct", "rmse",
    "mae", "r2", "mean_plot", "mean_product", "units",
]


# --------------------------------------------------------------------------- units
def density_factor(units: str, *, quantity: Quantity = "auto",
                   carbon_fraction: float = CARBON_FRACTION_OF_BIOMASS,
                   where: str = "product", parameter: str = "product.units"
                   ) -> tuple[float, str]:
    """The factor that turns values in ``units`` into carbon density (t C ha-1), and the
    quantity (``"biomass"`` or ``"carbon"``) they were read as.

    Parameters
    ----------
    units : str
        UDUNITS spelling (``"Mg ha-1"``, ``"t C ha-1"``, ``"g m-2"``, ...).
    quantity : {"auto", "biomass", "carbon"}
        ``"auto"``: carbon with a ``C`` label, biomass without.
    carbon_fraction : float
        Carbon per dry biomass (biomass only).
    where, parameter : str
        The file (or table) and the parameter named in errors.

    Raises
    ------
    InputDataError
        Units not understood, not a mass per area, or contradicting ``quantity``.

    >>> density_factor("Mg ha-1")
    (0.47, 'biomass')
    >>> density_factor("g C m-2")
    (0.01, 'carbon')
    >>> density_factor("kg m-2", carbon_fraction=0.5)
    (5.0, 'biomass')
    """
    check_choice(quantity, ("auto", "biomass", "carbon"), name="quantity")
    carbon_fraction = _check_fraction(carbon_fraction)
    fix = (f"set {parameter} to a density such as 'Mg ha-1' (biomass) or 'Mg C ha-1' "
           "(carbon)")
    try:
        stripped, substance = _units.split_substance(str(units))
        _units.to_pint(str(units))
    except InputDataError as exc:
        raise InputDataError(f"{where}: units {units!r} are not understood ({exc}); {fix}."
                             ) from None
    if substance not in (None, "C"):
        raise InputDataError(f"{where}: units {units!r} are of {substance}; {fix}.")
    try:
        _units.check_dimension(stripped or "1", "[mass] / [length] ** 2", name=where)
    except InputDataError:
        raise InputDataError(
            f"{where}: units {units!r} are not a mass per area (a stock density); {fix}."
        ) from None
    if substance == "C" and quantity == "biomass":
        raise InputDataError(f"{where}: units {units!r} say carbon but quantity='biomass'; "
                             "drop the C from the units or set quantity: carbon.")
    is_carbon = substance == "C" or quantity == "carbon"
    if is_carbon:
        return _units.conversion_factor(stripped, BIOMASS_UNITS), "carbon"
    factor = _units.conversion_factor(stripped, BIOMASS_UNITS) * carbon_fraction
    return float(f"{factor:.15g}"), "biomass"


# --------------------------------------------------------------------------- reading
def _file_units(path: Path, band: int) -> str | None:
    import rasterio

    with rasterio.open(path) as src:
        tags = src.tags()
        band_tags = src.tags(band) if 1 <= band <= src.count else {}
        band_units = src.units[band - 1] if 1 <= band <= src.count else None
    for value in (band_tags.get("units"), band_units, tags.get("units")):
        if value:
            return str(value)
    return None


def _epochs(path: str, band_years: Mapping[int, int] | None, epoch_year: int | None
            ) -> tuple[list[int | None], bool]:
    """The product's epochs and whether it is one file per epoch."""
    from terracarbon.data.prep import available_years

    if band_years:
        return sorted(int(y) for y in band_years), False
    if "{year}" in path:
        years = available_years({"path": path, "kind": "continuous", "units": "1"})
        if not years:
            folder = Path(path).parent
            raise InputDataError(
                f"product: no file matches {path!r} (looked in {str(folder)!r}, "
                f"{'which does not exist' if not folder.is_dir() else 'for 4-digit years'}); "
                "check product.path."
            )
        return list(years), True
    if not Path(path).exists():
        raise InputDataError(f"product: file {path!r} not found; check product.path.")
    return [epoch_year], False


def _year_plan(epochs: list[int | None], years: Sequence[int] | None, mapping: str
               ) -> tuple[list[int] | None, list[tuple[int, int, float]]]:
    """For each output year: (epoch index before, epoch index after, weight of after)."""
    if years is None:
        if epochs == [None]:
            return None, [(0, 0, 0.0)]
        return [int(e) for e in epochs], [(i, i, 0.0) for i in range(len(epochs))]
    years = sorted({int(y) for y in years})
    if epochs == [None]:  # one undated layer: the same for every year
        return years, [(0, 0, 0.0)] * len(years)
    ep = np.asarray(epochs, dtype=np.int64)
    plan = []
    problems = []
    for y in years:
        if mapping == "exact":
            if y not in epochs:
                problems.append(y)
                continue
            i = epochs.index(y)
            plan.append((i, i, 0.0))
        elif mapping == "nearest":
            i = int(np.argmin(np.abs(ep - y)))  # argmin takes the first: the earlier epoch
            plan.append((i, i, 0.0))
        elif mapping == "hold":
            before = np.flatnonzero(ep <= y)
            if not before.size:
                problems.append(y)
                continue
            plan.append((int(before[-1]), int(before[-1]), 0.0))
        else:  # linear
            if y <= ep[0]:
                plan.append((0, 0, 0.0))
            elif y >= ep[-1]:
                plan.append((len(ep) - 1, len(ep) - 1, 0.0))
            else:
                j = int(np.searchsorted(ep, y, side="right"))
                i = j - 1
                w = 0.0 if ep[i] == y else (y - ep[i]) / (ep[j] - ep[i])
                plan.append((i, j if w else i, float(w)))
    if problems:
        if mapping == "exact":
            raise InputDataError(
                f"product: no epoch for years {problems} (epochs {epochs}); add the files or "
                "set product.epochs to 'nearest', 'hold' or 'linear'."
            )
        raise InputDataError(
            f"product: years {problems} are before the first epoch {epochs[0]}, which "
            "epochs='hold' cannot fill; use 'nearest' or drop those years."
        )
    return years, plan


def read_biomass_product(
    path: str | os.PathLike,
    *,
    units: str | None = None,
    quantity: Quantity = "auto",
    carbon_fraction: float = CARBON_FRACTION_OF_BIOMASS,
    years: Sequence[int] | None = None,
    epochs: EpochMapping = "exact",
    epoch_year: int | None = None,
    band: int | str | None = None,
    band_years: Mapping[int, int] | None = None,
    scale_factor: float | None = None,
    nodata: float | None = None,
    grid: Any = None,
    resampling: str | None = None,
    chunks: int | dict | None = None,
    name: str = "above_carbon_density",
) -> xr.DataArray:
    """Read an AGB/AGC raster product as carbon density (t C ha-1) on the study's years.

    Parameters
    ----------
    path : str or path
        GeoTIFF path; ``{year}`` in it is replaced by 4-digit years (one file per epoch),
        or one multi-band file with ``band_years``.
    units : str, optional
        The product's units (see the module docstring); default: the file's ``units`` tag.
    quantity : {"auto", "biomass", "carbon"}, default "auto"
        What the values are; ``"auto"`` reads it from the units' ``C`` label.
    carbon_fraction : float, default 0.47
        Carbon per dry biomass, for a biomass product.
    years : sequence of int, optional
        The study's years; default: the epochs themselves.
    epochs : {"exact", "nearest", "hold", "linear"}, default "exact"
        How years map to epochs (module docstring).
    epoch_year : int, optional
        The year of a single undated file (no ``{year}``, no ``band_years``).
    band, band_years, scale_factor, nodata
        As in a ``data.layers`` entry (:func:`terracarbon.data.prep.read_layer`): the band
        of a multi-band file, ``{year: band}`` of an annual stack, a scale replacing the
        file's, the nodata value replacing the file's.
    grid : GridSpec, optional
        Target grid: each epoch is aligned with :func:`terracarbon.data.grid.align_to_grid`
        (``resampling``, default by pixel size: ``average`` when coarsening).
    resampling : str, optional
        GDAL resampling for ``grid``.
    chunks : int or dict, optional
        Dask chunks of the read (lazy); None reads eagerly. Set it for national products
        (a 1 km China map is about 80 MB per epoch as float32). Only the epochs some year
        uses are read.
    name : str
        Output name.

    Returns
    -------
    xarray.DataArray
        ``(year, y, x)`` (``(y, x)`` for one undated layer without ``years``), float32,
        ``t C ha-1``, NaN = nodata, CRS attached. Attributes ``units``, ``long_name``,
        ``source_units``, ``quantity``, ``carbon_fraction`` (biomass only),
        ``conversion_factor``, ``source_files``, ``epochs``, ``epoch_mapping``, ``history``.

    Raises
    ------
    InputDataError
        Missing files, missing or unusable units (naming the file and ``product.units``),
        years without an epoch.
    ParameterError
        Unknown ``epochs``/``quantity``, a bad ``carbon_fraction``.
    """
    from terracarbon.data.grid import align_to_grid
    from terracarbon.data.prep import read_layer

    check_choice(epochs, EPOCH_MAPPINGS, name="epochs")
    path = str(path)
    epoch_list, per_file = _epochs(path, band_years, epoch_year)
    out_years, plan = _year_plan(epoch_list, years, epochs)
    all_files = [Path(path.replace("{year}", str(e))) if per_file else Path(path)
                 for e in epoch_list]
    # read only the epochs some year uses; the plan's indices then point into that list
    used = sorted({i for p in plan for i in p[:2]})
    renumber = {old: new for new, old in enumerate(used)}
    plan = [(renumber[i0], renumber[i1], w) for i0, i1, w in plan]
    all_epochs, epoch_list = epoch_list, [epoch_list[i] for i in used]
    files = [all_files[i] for i in used]
    first_band = (band_years[epoch_list[0]] if band_years else
                  band if isinstance(band, int) else 1)
    file_units = _file_units(files[0], int(first_band))
    if units is None and file_units is None:
        raise InputDataError(
            f"product {files[0].name!r}: no units given and the file has no 'units' tag; set "
            "product.units (e.g. 'Mg ha-1' for above-ground biomass, 'Mg C ha-1' for carbon)."
        )
    if units is not None and file_units is not None and str(units) != file_units:
        log.warning("product %s: units %r given, the file says %r; using %r", files[0].name,
                    units, file_units, units)
    source_units = str(units) if units is not None else str(file_units)
    factor, what = density_factor(source_units, quantity=quantity,
                                  carbon_fraction=carbon_fraction,
                                  where=f"product {files[0].name!r}",
                                  parameter="product.units")
    spec: dict[str, Any] = {"path": path, "kind": "continuous", "units": source_units,
                            "band": band, "band_years": dict(band_years) if band_years else None,
                            "scale_factor": scale_factor, "nodata": nodata,
                            "static": not per_file and not band_years}
    layers = []
    for epoch in epoch_list:
        da = read_layer(spec, year=epoch, name=name, chunks=chunks)
        if grid is not None:
            da = align_to_grid(da, grid, kind="continuous", resampling=resampling)
        layers.append((da.astype(np.float32) * np.float32(factor)).astype(np.float32))
    ref = layers[0]
    for e, da in zip(epoch_list[1:], layers[1:]):
        if da.shape != ref.shape or not (np.allclose(da.x, ref.x) and np.allclose(da.y, ref.y)):
            raise GridMismatchError(
                f"product: epoch {e} is on another grid than epoch {epoch_list[0]} "
                f"({da.shape} vs {ref.shape}); give the product a common grid or set grid=."
            )
    crs = ref.rio.crs
    stack = xr.concat([da.reset_coords(drop=True).assign_coords(x=ref.x, y=ref.y)
                       for da in layers], dim="epoch", coords="minimal",
                      combine_attrs="drop")
    if out_years is None:
        out = stack.isel(epoch=0, drop=True)
    else:
        i0 = xr.DataArray([p[0] for p in plan], dims="year")
        i1 = xr.DataArray([p[1] for p in plan], dims="year")
        w = xr.DataArray(np.asarray([p[2] for p in plan], dtype=np.float32), dims="year")
        before = stack.isel(epoch=i0)
        if epochs == "linear" and any(p[2] for p in plan):
            out = before * (1 - w) + stack.isel(epoch=i1) * w
        else:
            out = before
        out = out.drop_vars("epoch", errors="ignore").assign_coords(year=out_years)
        out = out.transpose("year", "y", "x").astype(np.float32)
        if epoch_list != [None]:
            ep = [int(e) for e in epoch_list]  # type: ignore[arg-type]
            if epochs == "linear":
                out = out.assign_coords(epoch_before=("year", [ep[p[0]] for p in plan]),
                                        epoch_after=("year", [ep[p[1]] for p in plan]))
            else:
                out = out.assign_coords(epoch_year=("year", [ep[p[0]] for p in plan]))
    if crs is not None:
        out = out.rio.write_crs(crs)
    out.name = name
    attrs: dict[str, Any] = {
        "units": DENSITY_UNITS,
        "long_name": "above-ground biomass carbon density",
        "source_units": source_units, "quantity": what,
        "conversion_factor": factor,
        "source_files": ", ".join(f.name for f in dict.fromkeys(files)),
        "epochs": ", ".join("undated" if e is None else str(e) for e in all_epochs),
        "epoch_mapping": epochs,
    }
    if what == "biomass":
        attrs["carbon_fraction"] = _check_fraction(carbon_fraction)
    attrs["history"] = io.history_line(
        "carbon.read_biomass_product", path=Path(path).name, units=source_units, quantity=what,
        carbon_fraction=carbon_fraction if what == "biomass" else None, epochs=epochs)
    out.attrs = attrs
    return out


# --------------------------------------------------------------------------- plots
class PlotCheck(NamedTuple):
    """What :func:`check_against_plots` returns.

    ``summary``: one row per group (and ``"all"``), columns :data:`PLOT_CHECK_COLUMNS`
    (bias = mean of product - plot, t C ha-1; R^2 with the plots as observations).
    ``pairs``: one row per plot with ``row``, ``col``, ``product_year``, ``plot_t_C_ha``,
    ``product_t_C_ha``, ``residual_t_C_ha`` and ``status`` (``ok``, ``outside``,
    ``nodata``, ``year_gap``).
    """

    summary: pd.DataFrame
    pairs: pd.DataFrame


def _pixel_index(coord: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pixel index of each value on a regular axis of centres ``coord`` (-1 outside)."""
    if coord.size < 2:
        raise GridMismatchError("product: a grid needs at least 2 pixels along x and y.")
    step = float(coord[1] - coord[0])
    edge = float(coord[0]) - step / 2
    with np.errstate(invalid="ignore"):
        idx = np.floor((values - edge) / step)
    ok = np.isfinite(idx) & (idx >= 0) & (idx < coord.size)
    return np.where(ok, idx, -1).astype(np.int64)


def check_against_plots(
    product: xr.DataArray,
    plots: pd.DataFrame,
    *,
    value_column: str,
    value_units: str,
    quantity: Quantity = "auto",
    carbon_fraction: float = CARBON_FRACTION_OF_BIOMASS,
    x_column: str = "x",
    y_column: str = "y",
    plots_crs: Any = None,
    year_column: str | None = "year",
    max_year_gap: int | None = None,
    by: str | None = None,
) -> PlotCheck:
    """Score a carbon-density map at field plots: bias, RMSE, MAE, R^2, n.

    Parameters
    ----------
    product : xarray.DataArray
        Carbon density (``t C ha-1`` or convertible), ``(y, x)`` or ``(year, y, x)``, e.g.
        from :func:`read_biomass_product`; NumPy or dask (only the plots' pixels are read).
    plots : pandas.DataFrame
        One row per plot with ``value_column``, ``x_column``, ``y_column`` and, for an
        annual product, ``year_column``.
    value_column, value_units : str
        The plots' values and their units (``"Mg ha-1"`` AGB is multiplied by
        ``carbon_fraction``; ``"t C ha-1"`` is used as is; see :func:`density_factor`).
    quantity, carbon_fraction
        As :func:`density_factor`, for the plots.
    x_column, y_column : str
        Plot coordinates.
    plots_crs : optional
        CRS of the plot coordinates (e.g. ``"EPSG:4326"`` for lon/lat); default: the
        product's CRS.
    year_column : str or None
        Plot year; each plot is compared with the product year nearest to it. None: the
        product must have no ``year`` (or a single year).
    max_year_gap : int, optional
        Plots further than this from every product year are left out (``status="year_gap"``).
    by : str, optional
        A plot column to score groups by (province, forest type, year), plus ``"all"``.

    Returns
    -------
    PlotCheck
        ``summary`` and ``pairs`` (see :class:`PlotCheck`).

    Raises
    ------
    InputDataError
        Missing columns, unusable units, plots CRS without a product CRS.
    """
    import pyproj

    if not isinstance(product, xr.DataArray):
        raise ParameterError(f"product: expected an xarray DataArray, got "
                             f"{type(product).__name__}.")
    if product.attrs.get("units") is None:
        raise InputDataError(f"product: {product.name!r} has no 'units' attribute; read it "
                             "with read_biomass_product or set units.")
    product = _units.convert(product, DENSITY_UNITS, name="product")
    if not {"y", "x"} <= set(product.dims) or not set(product.dims) <= {"year", "y", "x"}:
        raise InputDataError(f"product: dims {product.dims}; expected (y, x) or (year, y, x).")
    cols = [value_column, x_column, y_column]
    annual = "year" in product.dims and product.sizes["year"] > 1
    if annual:
        if year_column is None:
            raise ParameterError("year_column=None but the product has several years "
                                 f"{product['year'].values.tolist()}; give the plots' year.")
        cols.append(year_column)
    if by is not None:
        cols.append(by)
    require_columns(plots, cols, name="plots")
    factor, _ = density_factor(value_units, quantity=quantity, carbon_fraction=carbon_fraction,
                               where=f"plots[{value_column!r}]", parameter="value_units")
    values = pd.to_numeric(plots[value_column], errors="coerce").to_numpy(np.float64) * factor
    px = pd.to_numeric(plots[x_column], errors="coerce").to_numpy(np.float64)
    py = pd.to_numeric(plots[y_column], errors="coerce").to_numpy(np.float64)
    if plots_crs is not None:
        crs = product.rio.crs
        if crs is None:
            raise InputDataError("plots_crs is given but the product has no CRS; attach one "
                                 "(da.rio.write_crs) or give the plots in the product's CRS.")
        src, dst = pyproj.CRS.from_user_input(plots_crs), pyproj.CRS.from_user_input(crs)
        if src != dst:
            px, py = pyproj.Transformer.from_crs(src, dst, always_xy=True).transform(px, py)
            px, py = np.asarray(px, np.float64), np.asarray(py, np.float64)
    col = _pixel_index(np.asarray(product["x"].values, np.float64), px)
    row = _pixel_index(np.asarray(product["y"].values, np.float64), py)
    status = np.where((col < 0) | (row < 0), "outside", "ok").astype(object)
    n = len(plots)
    year_idx = np.zeros(n, dtype=np.int64)
    product_year = np.full(n, np.nan)
    if "year" in product.dims:
        pyears = np.asarray(product["year"].values, dtype=np.int64)
        if annual:
            plot_years = pd.to_numeric(plots[year_column], errors="coerce").to_numpy(np.float64)
            gaps = np.abs(plot_years[:, None] - pyears[None, :])
            year_idx = np.argmin(np.where(np.isfinite(gaps), gaps, np.inf), axis=1)
            gap = gaps[np.arange(n), year_idx]
            bad_year = ~np.isfinite(gap)
            if max_year_gap is not None:
                bad_year |= gap > max_year_gap
            status = np.where((status == "ok") & bad_year, "year_gap", status)
        product_year = pyears[year_idx].astype(np.float64)
    ok = status == "ok"
    sampled = np.full(n, np.nan)
    if ok.any():
        sel = {"y": xr.DataArray(row[ok], dims="plot"), "x": xr.DataArray(col[ok], dims="plot")}
        if "year" in product.dims:
            sel["year"] = xr.DataArray(year_idx[ok], dims="plot")
        sampled[ok] = np.asarray(product.isel(sel).values, dtype=np.float64)
    status = np.where(ok & ~np.isfinite(sampled), "nodata", status)
    status = np.where((status == "ok") & ~np.isfinite(values), "nodata", status)
    pairs = pd.DataFrame({
        "row": row, "col": col, "product_year": product_year,
        "plot_t_C_ha": values, "product_t_C_ha": sampled,
        "residual_t_C_ha": sampled - values, "status": status,
    }, index=plots.index)
    if by is not None:
        pairs.insert(0, by, plots[by].to_numpy())
    groups = [("all", np.ones(n, dtype=bool))]
    if by is not None:
        groups += [(g, (plots[by] == g).to_numpy()) for g in pd.unique(plots[by])]
    from terracarbon.models import metrics

    rows = []
    for label, mask in groups:
        use = mask & (status == "ok")
        obs, pred = values[use], sampled[use]
        mean_plot = float(obs.mean()) if use.any() else float("nan")
        bias = float(np.mean(pred - obs)) if use.any() else float("nan")
        rows.append({
            "group": label, "n": int(use.sum()),
            "n_outside": int((mask & (status == "outside")).sum()),
            "n_nodata": int((mask & (status == "nodata")).sum()),
            "n_year_gap": int((mask & (status == "year_gap")).sum()),
            "bias": bias,
            "relative_bias_pct": 100.0 * bias / mean_plot if mean_plot else float("nan"),
            "rmse": metrics.rmse(obs, pred), "mae": metrics.mae(obs, pred),
            "r2": metrics.r2(obs, pred), "mean_plot": mean_plot,
            "mean_product": float(pred.mean()) if use.any() else float("nan"),
            "units": DENSITY_UNITS,
        })
    return PlotCheck(pd.DataFrame(rows, columns=PLOT_CHECK_COLUMNS), pairs)
