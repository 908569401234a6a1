"""Generate the InVEST Carbon reference outputs that ``tests/test_invest_parity.py`` checks.

Run with the python of a venv that has InVEST (natcap.invest 3.20.2) installed, from the
repository root::

    bash ../shared/oracles/invest/install.sh /work/invest-venv     # once, ~4 min, as root
    /work/invest-venv/bin/python tests/data/invest/generate_reference.py

For every case below it writes ``tests/data/invest/<case>/``:

* ``inputs/lulc_bas.tif``, ``inputs/lulc_alt.tif`` (Byte, EPSG:32649, 500 m pixels = 25 ha,
  nodata 255) and ``inputs/carbon_pools.csv`` (``lucode, LULC_name, c_above, c_below, c_soil,
  c_dead`` in Mg C ha-1);
* ``invest/``: InVEST's own outputs from a fresh workspace (re-encoded from its 256 x 256
  tiled BigTIFFs as plain deflate GeoTIFFs; values, nodata, CRS and transform unchanged,
  checked) —
  ``c_storage_bas.tif``, ``c_storage_alt.tif``, ``c_change_bas_alt.tif``, ``npv_alt.tif``
  (valuation cases), ``c_<pool>_<bas|alt>.tif`` (its intermediate pool maps) and
  ``raster_values_summary.csv``;
* ``reference.json``: the InVEST version and the arguments it ran with (paths left out), its
  summary totals, and the hand-worked truth of the case where InVEST gets it wrong.

and ``tests/data/invest/versions.json`` (InVEST, pygeoprocessing, GDAL, numpy, Python).

The ``missing_code`` case keeps no rasters: it records that InVEST's ``validate`` accepts a
land-use code the table lacks and ``execute`` then fails.

Imports of InVEST and GDAL happen inside :func:`main`, so that pytest (``--doctest-modules``)
can import this file without them.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EPSG = 32649
PIXEL_M = 500.0  # 500 m x 500 m = 25 ha per pixel
ORIGIN = (500_000.0, 2_500_000.0)  # upper-left corner (x, y), m in EPSG:32649
NODATA = 255
ROWS, COLS = 12, 10
EXPECTED_INVEST = "3.20.2"

# A four-pool table in the range of published InVEST studies in south China (Mg C ha-1).
POOLS_SOUTH_CHINA = {
    # lucode: (name, c_above, c_below, c_soil, c_dead)
    1: ("forest", 52.7, 12.9, 105.4, 3.1),
    2: ("shrub", 18.4, 7.6, 76.2, 1.4),
    3: ("grassland", 3.6, 9.1, 68.3, 0.6),
    4: ("cropland", 5.2, 1.3, 54.8, 0.2),
    5: ("wetland", 6.1, 2.2, 132.5, 1.0),
    6: ("water", 0.0, 0.0, 0.0, 0.0),
    7: ("built_up", 1.1, 0.3, 28.0, 0.0),
    8: ("bare", 0.4, 0.1, 12.7, 0.0),
}

# Totals exactly representable in float32, so that a change is exactly -1.0 Mg C ha-1:
# 6 + 2 + 1.5 + 0.5 = 10 and 5.5 + 2 + 1 + 0.5 = 9.
POOLS_PLANTATION = {
    1: ("plantation", 6.0, 2.0, 1.5, 0.5),
    2: ("thinned_plantation", 5.5, 2.0, 1.0, 0.5),
    3: ("cropland", 3.25, 0.75, 40.0, 0.0),
    4: ("built_up", 1.0, 0.25, 28.0, 0.0),
}


def landscape() -> tuple[np.ndarray, np.ndarray]:
    """A 12 x 10 baseline and alternate land-use pair (codes of POOLS_SOUTH_CHINA).

    Baseline: forest on the western hills, shrub below the tree line, grassland on a
    plateau, cropland in the eastern valley, a river (water) with wetland on its banks, a
    town in the south-east. Alternate: the town grows onto cropland, a clear-cut turns
    forest to cropland, grassland is afforested, part of the wetland is drained.
    """
    bas = np.full((ROWS, COLS), 4, dtype=np.uint8)      # cropland
    bas[:, :4] = 1                                       # forest, western hills
    bas[8:, :4] = 2                                      # shrub, lower slopes
    bas[:3, 4:7] = 3                                     # grassland plateau
    bas[:, 7] = 6                                        # river
    bas[2:9, 6] = 5                                      # wetland, west bank
    bas[9:, 8:] = 7                                      # town
    alt = bas.copy()
    alt[7:, 8:] = 7                                      # the town grows north onto cropland
    alt[9:, 4:7] = 7                                     # ... and west
    alt[3:6, 1:4] = 4                                    # clear-cut forest -> cropland
    alt[:2, 4:7] = 1                                     # grassland afforested
    alt[5:9, 6] = 4                                      # wetland drained -> cropland
    return bas, alt


def cases() -> dict[str, dict]:
    """Every case: land-use pair, pool table, valuation arguments and a description."""
    bas, alt = landscape()

    # nodata: a 2 x 3 block outside the study area in both maps, and cloud gaps in
    # each map at different places (a pixel is nodata in the change where either is).
    bas_nd, alt_nd = bas.copy(), alt.copy()
    bas_nd[:2, 7:] = NODATA
    alt_nd[:2, 7:] = NODATA
    bas_nd[5, 2] = bas_nd[10, 5] = NODATA
    alt_nd[6, 8] = alt_nd[3, 0] = alt_nd[11, 9] = NODATA

    # absent class: all wetland (5) drained in the alternate map, and a quarry of bare land
    # (8) opened where there was none: 5 is absent from alt, 8 from bas.
    bas_ab, alt_ab = bas.copy(), alt.copy()
    alt_ab[alt_ab == 5] = 4
    alt_ab[3:5, 8:10] = 8

    # exactly -1.0: 40 plantation pixels thinned (10 -> 9 Mg C ha-1), 20 plantation pixels
    # cleared for cropland (10 -> 44), 10 cropland pixels built on (44 -> 29.25).
    bas_m1 = np.full((ROWS, COLS), 3, dtype=np.uint8)
    bas_m1[:8, :] = 1                                    # 80 plantation pixels
    alt_m1 = bas_m1.copy()
    alt_m1[:4, :] = 2                                    # 40 thinned: exactly -1.0 each
    alt_m1[4:6, :] = 3                                   # 20 cleared to cropland: +34.0
    alt_m1[8, :] = 4                                     # 10 cropland built on: -14.75
    ha = PIXEL_M * PIXEL_M / 1e4
    true_change = (40 * -1.0 + 20 * 34.0 + 10 * -14.75) * ha
    invest_change_lost = (20 * 34.0 + 10 * -14.75) * ha  # the -1.0 pixels read as nodata

    valuation = {"do_valuation": True, "lulc_bas_year": 2015, "lulc_alt_year": 2030,
                 "price_per_metric_ton_of_c": 43.0, "discount_rate": 7.0, "rate_change": 2.5}
    no_valuation = {"do_valuation": False, "lulc_bas_year": 2015, "lulc_alt_year": 2030}

    return {
        "two_dates": dict(
            bas=bas, alt=alt, pools=POOLS_SOUTH_CHINA, valuation=no_valuation,
            description="Two dates, four pools, no nodata, no valuation; class 8 (bare) is "
                        "in the table but in neither map."),
        "nodata": dict(
            bas=bas_nd, alt=alt_nd, pools=POOLS_SOUTH_CHINA, valuation=no_valuation,
            description="Nodata (255) pixels: a block in both maps and different single "
                        "pixels in each; the change is nodata where either map is."),
        "absent_class": dict(
            bas=bas_ab, alt=alt_ab, pools=POOLS_SOUTH_CHINA, valuation=no_valuation,
            description="Class 5 (wetland) is in the table and the baseline but absent "
                        "from the alternate map; class 8 (bare) is absent from the "
                        "baseline."),
        "valuation": dict(
            bas=bas, alt=alt, pools=POOLS_SOUTH_CHINA, valuation=valuation,
            description="The two-date case with valuation: price 43 per Mg C, discount "
                        "7 %, price change 2.5 % a year, 2015 -> 2030."),
        "minus_one": dict(
            bas=bas_m1, alt=alt_m1, pools=POOLS_PLANTATION, valuation=valuation,
            description="40 pixels change by exactly -1.0 Mg C ha-1 (10 -> 9), InVEST's "
                        "nodata value: InVEST drops them from the change and NPV rasters "
                        "and totals.",
            truth={"change_Mg_C": true_change,
                   "invest_change_without_minus_one_pixels_Mg_C": invest_change_lost,
                   "pixels_with_change_minus_one": 40}),
        "missing_code": dict(
            bas=bas, alt=alt,
            pools={k: v for k, v in POOLS_SOUTH_CHINA.items() if k != 7},
            valuation=no_valuation, keep_rasters=False,
            description="Code 7 (built_up: 6 baseline and 19 alternate pixels) is missing "
                        "from the table: InVEST's validate passes, execute fails."),
    }


def main(out_dir: Path = HERE) -> None:
    from osgeo import gdal, osr
    import natcap.invest
    import natcap.invest.carbon as carbon
    import pygeoprocessing

    gdal.UseExceptions()
    version = natcap.invest.__version__
    if version != EXPECTED_INVEST:
        print(f"warning: InVEST {version}, the references were made with {EXPECTED_INVEST}",
              file=sys.stderr)

    def write_lulc(path: Path, arr: np.ndarray) -> None:
        driver = gdal.GetDriverByName("GTiff")
        ds = driver.Create(str(path), arr.shape[1], arr.shape[0], 1, gdal.GDT_Byte,
                           ["COMPRESS=DEFLATE"])
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(EPSG)
        ds.SetProjection(srs.ExportToWkt())
        ds.SetGeoTransform((ORIGIN[0], PIXEL_M, 0.0, ORIGIN[1], 0.0, -PIXEL_M))
        band = ds.GetRasterBand(1)
        band.SetNoDataValue(NODATA)
        band.WriteArray(arr)
        ds = None

    def compact_copy(src: Path, dst: Path) -> None:
        # InVEST writes 256 x 256 tiled BigTIFFs; the same values, nodata, CRS and transform
        # in a plain deflate-compressed GeoTIFF are a few hundred bytes instead of ~3 KB.
        gdal.Translate(str(dst), str(src), creationOptions=["COMPRESS=DEFLATE"])
        a = gdal.Open(str(src)).ReadAsArray()
        b = gdal.Open(str(dst)).ReadAsArray()
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), dst

    versions = {"natcap.invest": version, "pygeoprocessing": pygeoprocessing.__version__,
                "gdal": gdal.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    (out_dir / "versions.json").write_text(json.dumps(versions, indent=1) + "\n")

    for name, case in cases().items():
        folder = out_dir / name
        shutil.rmtree(folder, ignore_errors=True)
        inputs = folder / "inputs"
        inputs.mkdir(parents=True)
        write_lulc(inputs / "lulc_bas.tif", case["bas"])
        write_lulc(inputs / "lulc_alt.tif", case["alt"])
        with open(inputs / "carbon_pools.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["lucode", "LULC_name", "c_above", "c_below", "c_soil", "c_dead"])
            for code, (label, *pools) in case["pools"].items():
                w.writerow([code, label, *pools])
        valuation = case["valuation"]
        public_args = {"results_suffix": "", "calc_sequestration": True, **valuation}
        reference: dict = {"case": name, "description": case["description"],
                           "invest_version": version, "args": public_args,
                           "pixel_size_m": PIXEL_M, "epsg": EPSG, "lulc_nodata": NODATA}
        reference["lulc_codes"] = {
            scenario: dict(zip(*(v.tolist() for v in np.unique(case[scenario],
                                                                 return_counts=True))))
            for scenario in ("bas", "alt")}
        if "truth" in case:
            reference["truth"] = case["truth"]
        with tempfile.TemporaryDirectory() as tmp:
            # a fresh workspace per run: execute caches its results in the workspace
            args = {"workspace_dir": str(Path(tmp) / "ws"), "n_workers": -1,
                    "lulc_bas_path": str(inputs / "lulc_bas.tif"),
                    "lulc_alt_path": str(inputs / "lulc_alt.tif"),
                    "carbon_pools_path": str(inputs / "carbon_pools.csv"), **public_args}
            reference["validate"] = [[list(k), m] for k, m in carbon.validate(args)]
            expect_failure = not case.get("keep_rasters", True)
            # taskgraph logs the traceback of the failure we expect; keep the log readable
            logging.getLogger("taskgraph").setLevel(logging.CRITICAL if expect_failure
                                                    else logging.WARNING)
            try:
                registry = carbon.execute(args)
            except Exception as exc:  # the missing_code case
                if not expect_failure:
                    raise
                reference["execute_error"] = f"{type(exc).__name__}: {exc}"
                shutil.rmtree(inputs)
                (folder / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
                print(f"{name}: execute failed as expected: {reference['execute_error']}")
                continue
            outputs = folder / "invest"
            outputs.mkdir()
            keys = ["c_storage_bas", "c_storage_alt", "c_change_bas_alt"]
            keys += [f"c_{p}_{s}" for s in ("bas", "alt")
                     for p in ("above", "below", "soil", "dead")]
            if valuation["do_valuation"]:
                keys.append("npv_alt")
            rasters = {}
            for key in keys:
                src = Path(registry[key])
                compact_copy(src, outputs / src.name)
                info = pygeoprocessing.get_raster_info(str(src))
                rasters[src.name] = {"nodata": info["nodata"][0],
                                     "dtype": gdal.GetDataTypeName(info["datatype"])}
            shutil.copy(registry["summary_csv"], outputs / "raster_values_summary.csv")
            with open(registry["summary_csv"], newline="") as f:
                summary = {row["Filename"]: {"label": row["Raster"],
                                             "total": float(row["Total"]),
                                             "units": row["Units"]}
                           for row in csv.DictReader(f)}
        reference["rasters"] = rasters
        reference["summary"] = summary
        (folder / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
        print(f"{name}: " + ", ".join(f"{k} {v['total']:.4f} {v['units']}"
                                      for k, v in summary.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
