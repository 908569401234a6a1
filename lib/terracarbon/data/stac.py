"""Input layers from a STAC catalog or item collection (pystac).

A ``data.layers`` entry may name a STAC source instead of a file::

    ndvi:
      stac: stac/catalog.json       # a catalog, collection or ItemCollection JSON (local or URL)
      asset: ndvi                   # the asset key holding the raster in each item
      collection: vhp-ndvi          # optional: only the items of this collection id
      kind: continuous
      units: "1"

Each item's year comes from its ``datetime`` (or ``start_datetime``); the asset of each year
is then read exactly like a ``{year}`` file pattern (:func:`terracarbon.data.prep.read_layer`:
band, scale/offset, nodata, CRS check) and aligned to the study grid by the layer's kind
(:func:`terracarbon.data.grid.align_to_grid`). A source with items of a single year, or a
layer with ``static: true``, is a static layer (one asset; with several, the latest item).
``collection`` keeps only the items whose ``collection`` id matches (a catalog holding
several products); without it every item of the source is used.

:func:`source_files` lists what a layer reads (the STAC JSON documents and the assets of the
study's years), so an edited item or a swapped asset file changes the input fingerprints
(:mod:`terracarbon.pipeline.fingerprints`) and reruns data prep.

Why pystac and rasterio, not odc-stac/stackstac: both load onto a grid with their own
resampling and nodata rules; reading each asset with the same reader as every other layer
keeps one decoding and one alignment path (nearest/mode for classes, bilinear/average for
continuous data), so a layer gives the same cube from a catalog as from loose GeoTIFFs.
Remote hrefs (``https://…``, ``s3://…``) are opened by GDAL where the network allows.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from terracarbon.errors import InputDataError, ParameterError

__all__ = ["asset_hrefs", "is_url", "layer_years", "source_files", "stac_items"]

_REMOTE = ("http://", "https://", "s3://", "gs://", "/vsi")


def is_url(href: str) -> bool:
    """True for a remote href GDAL opens itself (http(s), s3, gs, /vsi… paths)."""
    return str(href).startswith(_REMOTE)


class RemoteHref(str):
    """A remote href that quacks like a path where messages need ``.name``."""

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]


def _item_year(item: Any) -> int | None:
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        return None
    if isinstance(when, str):  # pragma: no cover  (pystac parses datetimes)
        when = dt.datetime.fromisoformat(when)
    return int(when.year)


def stac_items(source: str | os.PathLike) -> list[Any]:
    """Every item of a STAC catalog, collection or ItemCollection (local path or URL).

    Raises
    ------
    InputDataError
        The source is missing, not STAC JSON, or holds no item.
    """
    return _read_source(source)[1]


def _read_source(source: str | os.PathLike) -> tuple[list[str], list[Any]]:
    """The STAC JSON documents read (root, child catalogs, items) and the items."""
    import pystac

    source = str(source)
    if not is_url(source) and not Path(source).is_file():
        raise InputDataError(f"STAC source {source!r} not found; check the layer's 'stac' path")
    try:
        # an ItemCollection (a GeoJSON FeatureCollection of items) is not a STACObject
        kind = pystac.StacIO.default().read_json(source).get("type")
        obj = (pystac.ItemCollection.from_file(source) if kind == "FeatureCollection"
               else pystac.read_file(source))
    except Exception as exc:  # noqa: BLE001  any read or parse failure: name the source
        raise InputDataError(f"STAC source {source!r} is not a STAC catalog, collection, item "
                             f"or item collection GDAL-free pystac can read ({exc})") from None
    documents = [source]
    if isinstance(obj, pystac.ItemCollection):
        items = list(obj.items)
    elif isinstance(obj, pystac.Item):
        items = [obj]
    else:
        items = []
        for catalog, _children, catalog_items in obj.walk():
            documents.append(catalog.get_self_href())
            for item in catalog_items:
                items.append(item)
                documents.append(item.get_self_href())
    if not items:
        raise InputDataError(f"STAC source {source!r} holds no item")
    seen: dict[str, None] = {}
    for href in documents:
        if href:
            seen.setdefault(_local(href) if not is_url(href) else href)
    return list(seen), items


def _local(href: str) -> str:
    """A local href as a plain resolved path."""
    if href.startswith("file://"):
        href = href[len("file://"):]
    return str(Path(href).resolve())


def asset_hrefs(source: str | os.PathLike, asset: str, *, name: str = "layer",
                static: bool = False, collection: str | None = None,
                fresh: bool = False) -> dict[int | None, str]:
    """The absolute href of ``asset`` for each year of the source's items.

    Parameters
    ----------
    source : path or URL
        STAC catalog, collection or ItemCollection JSON.
    asset : str
        Asset key in each item (e.g. ``"ndvi"``).
    name : str
        The layer name, for messages.
    static : bool
        One raster for all years: the latest item's asset, under the key ``None``.
    collection : str, optional
        Keep only the items of this collection id.
    fresh : bool
        Read the source again. By default a source is read once per modification of its
        root document, so an item edited since is not seen.

    Returns
    -------
    dict
        ``{year: href}`` sorted by year; ``{None: href}`` for a static layer (or a source
        whose items share one year or have no date).

    Raises
    ------
    InputDataError
        An item lacks the asset (names the item and the assets it has), two items share
        a year (names both), or no item belongs to ``collection`` (names those present).
    """
    if not asset or not isinstance(asset, str):
        raise ParameterError(f"data.layers.{name}.asset: got {asset!r}; expected the asset key "
                             "of the raster in each STAC item (e.g. ndvi)")
    if collection is not None and (not isinstance(collection, str) or not collection):
        raise ParameterError(f"data.layers.{name}.collection: got {collection!r}; expected the "
                             "id of a STAC collection in the source, or no 'collection'")
    if fresh:
        return dict(_hrefs_of(str(source), _read_source(str(source))[1], asset, name,
                              bool(static), collection))
    return dict(_asset_hrefs(_source_key(source), asset, name, bool(static), collection))


def _source_key(source: str | os.PathLike) -> tuple[str, int]:
    """The source and its modification time (so an edited catalog is read again)."""
    source = str(source)
    if is_url(source):
        return source, 0
    path = Path(source)
    return str(path.resolve()), path.stat().st_mtime_ns if path.exists() else 0


@functools.lru_cache(maxsize=64)
def _asset_hrefs(key: tuple[str, int], asset: str, name: str, static: bool,
                 collection: str | None = None) -> tuple[tuple[int | None, str], ...]:
    return _hrefs_of(key[0], _read_source(key[0])[1], asset, name, static, collection)


def _hrefs_of(source: str, items: list[Any], asset: str, name: str, static: bool,
              collection: str | None) -> tuple[tuple[int | None, str], ...]:
    if collection is not None:
        kept = [item for item in items if item.collection_id == collection]
        if not kept:
            present = sorted({str(item.collection_id) for item in items})
            raise InputDataError(
                f"layer {name!r}: no item of {source!r} belongs to collection {collection!r} "
                f"(collections of its items: {present}); set data.layers.{name}.collection")
        items = kept
    by_year: dict[int | None, Any] = {}
    for item in items:
        if asset not in item.assets:
            raise InputDataError(
                f"layer {name!r}: STAC item {item.id!r} of {source!r} has no asset {asset!r} "
                f"(its assets: {sorted(item.assets)}); set data.layers.{name}.asset")
        year = _item_year(item)
        if year in by_year and not static:
            raise InputDataError(
                f"layer {name!r}: STAC items {by_year[year].id!r} and {item.id!r} of "
                f"{source!r} are both from {year}; one item per year is expected (mosaic "
                "them, or filter the catalog)")
        by_year[year] = item
    years = sorted((y for y in by_year if y is not None))
    if static or len(by_year) == 1 or not years:
        latest = by_year[years[-1]] if years else next(iter(by_year.values()))
        return ((None, _href(latest, asset)),)
    if None in by_year:
        raise InputDataError(f"layer {name!r}: STAC item {by_year[None].id!r} of {source!r} "
                             "has no datetime, so its year is unknown")
    return tuple((year, _href(by_year[year], asset)) for year in years)


def _href(item: Any, asset: str) -> str:
    href = item.assets[asset].get_absolute_href() or item.assets[asset].href
    if href.startswith("file://"):
        href = href[len("file://"):]
    return href


def layer_years(spec: Mapping[str, Any], *, name: str = "layer") -> list[int]:
    """The years a STAC layer has items for (empty for a static one)."""
    hrefs = asset_hrefs(spec["stac"], spec["asset"], name=name,
                        static=bool(spec.get("static", False)),
                        collection=spec.get("collection"))
    return sorted(y for y in hrefs if y is not None)


def source_files(spec: Mapping[str, Any], years: Iterable[int] | None = None, *,
                 name: str = "layer") -> list[str]:
    """What a STAC layer reads: its STAC JSON documents and the assets of ``years``.

    Read afresh (not from the cache of :func:`asset_hrefs`), so an item edited since the
    last read is seen.

    Parameters
    ----------
    spec : mapping
        The layer entry (``stac``, ``asset``, optional ``static``, ``collection``).
    years : iterable of int, optional
        The study years; the assets of other years are not read, so not listed. None: all.
    name : str
        The layer name, for messages.

    Returns
    -------
    list of str
        The root document, every child catalog and item JSON (local paths resolved, URLs as
        given), then the asset hrefs, each once.

    Raises
    ------
    InputDataError
        As :func:`asset_hrefs`.
    """
    source = str(spec["stac"])
    documents, items = _read_source(source)
    hrefs = dict(_hrefs_of(source, items, spec["asset"], name, bool(spec.get("static", False)),
                           spec.get("collection")))
    wanted = None if years is None else set(years)
    assets = [href for year, href in hrefs.items()
              if year is None or wanted is None or year in wanted]
    return list(dict.fromkeys(documents + assets))
