"""Compare two run folders artifact by artifact: did a code change (or a rerun) change a number?

Used to check that a refactor changes no result, and that reruns reproduce. Data are compared,
not bytes: datasets (Zarr/NetCDF) variable by variable (values, dims, coordinates and
attributes other than ``history``), tables (CSV) cell by cell, JSON by content,
GeoTIFF pixels and georeferencing. Manifests, executed notebooks, HTML reports and figures
carry timestamps, durations and provenance and are skipped.

Command line::

    python -m terracarbon.pipeline.compare runs/before runs/after
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from terracarbon.models.persistence import CARD_NAME

SKIPPED_SUFFIXES = (".html", ".ipynb", ".png", ".svg", ".pdf", ".log",
                    # a pickle names its class's module, which a refactor may move; fitted
                    # models are compared through what they predict (the carbon maps)
                    ".joblib")
SKIPPED_NAMES = ("manifest.json", "index.html", "params.yaml", ".lock", CARD_NAME)
IGNORED_ATTRS = ("history",)


def _artifacts(run: Path) -> dict[str, Path]:
    """Relative path -> path of every comparable artifact (a Zarr store counts as one)."""
    found: dict[str, Path] = {}
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run).as_posix()
        if any(part.endswith(".zarr") for part in path.relative_to(run).parts[:-1]):
            continue  # inside a Zarr store
        if path.is_dir() and not path.name.endswith(".zarr"):
            continue
        if path.name in SKIPPED_NAMES or path.suffix in SKIPPED_SUFFIXES or ".tmp" in path.name:
            continue
        if "screenshots" in path.parts:
            continue
        found[rel] = path
    return found


def _same_attrs(a: dict, b: dict) -> list[str]:
    keys = (set(a) | set(b)) - set(IGNORED_ATTRS)
    diffs = []
    for key in sorted(keys):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            same = np.array_equal(np.asarray(va), np.asarray(vb))
        else:
            same = va == vb or (isinstance(va, float) and isinstance(vb, float)
                                and math.isnan(va) and math.isnan(vb))
        if not same:
            diffs.append(f"attribute {key!r}: {va!r} != {vb!r}")
    return diffs


def _relocated(attrs: dict, run: Path) -> dict:
    """Attributes with the run folder's path replaced by ``<run>`` (a ``source`` path)."""
    prefix = str(run)
    return {k: (v.replace(prefix, "<run>") if isinstance(v, str) else v) for k, v in attrs.items()}


def compare_datasets(a: Path, b: Path, run_a: Path | None = None,
                     run_b: Path | None = None) -> list[str]:
    """Differences between two datasets (values exact, NaN equal to NaN)."""
    from terracarbon.data.io import open_cube

    da, db = open_cube(a), open_cube(b)
    diffs = []
    if set(da.data_vars) != set(db.data_vars):
        diffs.append(f"variables differ: {sorted(set(da.data_vars) ^ set(db.data_vars))}")
    for name in sorted(set(da.variables) & set(db.variables)):
        va, vb = da[name], db[name]
        if va.dims != vb.dims or va.shape != vb.shape:
            diffs.append(f"{name}: dims {va.dims}{va.shape} != {vb.dims}{vb.shape}")
            continue
        xa, xb = np.asarray(va.values), np.asarray(vb.values)
        if not np.array_equal(xa, xb, equal_nan=xa.dtype.kind in "fc"):
            with np.errstate(invalid="ignore"):
                delta = (np.nanmax(np.abs(xa.astype(float) - xb.astype(float)))
                         if xa.dtype.kind in "fiu" else "n/a")
            diffs.append(f"{name}: values differ (max |diff| {delta})")
        attrs_a, attrs_b = dict(va.attrs), dict(vb.attrs)
        if run_a is not None and run_b is not None:
            attrs_a, attrs_b = _relocated(attrs_a, run_a), _relocated(attrs_b, run_b)
        diffs += [f"{name}: {d}" for d in _same_attrs(attrs_a, attrs_b)]
    diffs += [f"dataset {d}" for d in _same_attrs(dict(da.attrs), dict(db.attrs))]
    return diffs


def compare_tables(a: Path, b: Path) -> list[str]:
    """Differences between two CSV tables (same columns, same cells; NaN equal to NaN)."""
    import pandas as pd

    ta, tb = pd.read_csv(a), pd.read_csv(b)
    try:
        pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    except AssertionError as err:
        return [str(err).splitlines()[0] + " " + " ".join(str(err).split())[:300]]
    return []


def compare_geotiffs(a: Path, b: Path) -> list[str]:
    import rasterio

    with rasterio.open(a) as ra, rasterio.open(b) as rb:
        diffs = []
        if ra.crs != rb.crs or ra.transform != rb.transform or ra.shape != rb.shape:
            diffs.append("georeferencing or shape differs")
        elif not np.array_equal(ra.read(), rb.read(), equal_nan=True):
            diffs.append("pixel values differ")
        if ra.tags() != rb.tags():
            ta = {k: v for k, v in ra.tags().items() if k.lower() not in IGNORED_ATTRS}
            tb = {k: v for k, v in rb.tags().items() if k.lower() not in IGNORED_ATTRS}
            if ta != tb:
                diffs.append(f"tags differ: {ta} != {tb}")
        return diffs


def compare_torch_states(a: Path, b: Path) -> list[str]:
    """Differences between two saved torch state dicts (tensors exactly equal)."""
    import torch

    sa, sb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    if sa.keys() != sb.keys():
        return [f"parameters differ: {sorted(set(sa) ^ set(sb))}"]
    return [f"{k}: tensor differs" for k in sa if not torch.equal(sa[k], sb[k])]


def compare_vectors(a: Path, b: Path) -> list[str]:
    """Differences between two vector files: geometries, attributes and CRS (not layer names)."""
    import geopandas as gpd

    ga, gb = gpd.read_file(a), gpd.read_file(b)
    if ga.crs != gb.crs or len(ga) != len(gb) or list(ga.columns) != list(gb.columns):
        return ["CRS, feature count or columns differ"]
    if not ga.geometry.geom_equals_exact(gb.geometry, tolerance=0).all():
        return ["geometries differ"]
    attrs = [c for c in ga.columns if c != ga.geometry.name]
    return [] if ga[attrs].equals(gb[attrs]) else ["attributes differ"]


def compare_files(a: Path, b: Path, run_a: Path | None = None,
                  run_b: Path | None = None) -> list[str]:
    """Differences between two artifacts of the same relative path."""
    if a.name.endswith(".zarr") or a.suffix == ".nc":
        return compare_datasets(a, b, run_a, run_b)
    if a.suffix == ".csv":
        return compare_tables(a, b)
    if a.suffix in (".tif", ".tiff"):
        return compare_geotiffs(a, b)
    if a.suffix == ".pt":
        return compare_torch_states(a, b)
    if a.suffix == ".geojson":
        return compare_vectors(a, b)
    if a.suffix == ".json":
        return [] if json.loads(a.read_text()) == json.loads(b.read_text()) else ["JSON differs"]
    return [] if a.read_bytes() == b.read_bytes() else ["bytes differ"]


def compare_runs(run_a: str | Path, run_b: str | Path) -> dict[str, list[str]]:
    """``{relative path: [differences]}`` for every artifact that differs or exists once.

    An empty dict means the two runs hold the same data.
    """
    run_a, run_b = Path(run_a), Path(run_b)
    arts_a, arts_b = _artifacts(run_a), _artifacts(run_b)
    report: dict[str, list[str]] = {}
    for rel in sorted(set(arts_a) | set(arts_b)):
        if rel not in arts_a or rel not in arts_b:
            report[rel] = [f"only in {run_a if rel in arts_a else run_b}"]
            continue
        diffs = compare_files(arts_a[rel], arts_b[rel], run_a.resolve(), run_b.resolve())
        if diffs:
            report[rel] = diffs
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    args = parser.parse_args(argv)
    report = compare_runs(args.run_a, args.run_b)
    for rel, diffs in report.items():
        for diff in diffs:
            sys.stdout.write(f"{rel}: {diff}\n")
    n = len(_artifacts(Path(args.run_a)))
    sys.stdout.write(f"{len(report)} of {n} artifacts differ\n")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
