"""Saving a map figure in three formats: laid out once (``viz.save_figure``) vs per format.

Every stage saves its figures as PNG, SVG and PDF. Matplotlib's own tight saving
(``savefig(bbox_inches="tight")`` per format, what ``save_figure`` did before session 9)
runs the layout engine and measures the tight box again for each format, and each of those
draws every artist, a cartopy gridliner placing its labels anew each time.
``save_figure`` lays the figure out once at the saving resolution and keeps the positions.

Prints, for a two-panel map (600 x 800 px per panel, graticule, scale bar, colour bar) and a
line chart, the median of ``--repeats`` saves of each way and their ratio (same process,
back to back, so the ratio holds on a loaded machine).

Run: ``.venv/bin/python benchmarks/bench_figures.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

import matplotlib  # noqa: E402

matplotlib.use("agg")

import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402

from terracarbon import viz  # noqa: E402

FORMATS = ("png", "svg", "pdf")


def density_maps(ny: int = 600, nx: int = 800) -> xr.DataArray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:ny, 0:nx]
    base = 60 + 30 * np.sin(xx / 60) * np.cos(yy / 45)
    values = np.stack([base, base * 1.1]) + rng.normal(0, 3, (2, ny, nx))
    values[:, :40, :60] = np.nan
    da = xr.DataArray(values.astype("float32"), dims=("year", "y", "x"),
                      coords={"year": [2000, 2021], "y": 2.8e6 - 500.0 * np.arange(ny),
                              "x": 3.0e5 + 500.0 * np.arange(nx)},
                      name="total_carbon_density",
                      attrs={"units": "t C ha-1", "long_name": "Total carbon density"})
    return da.rio.write_crs("EPSG:32649")


def chart():
    years = np.arange(2000, 2022)
    table = pd.DataFrame({"year": years, "pool": "total", "storage_Tg": 100 + years - 2000,
                          "lower_Tg": 95 + years - 2000, "upper_Tg": 105 + years - 2000})
    return viz.series_with_interval(table, x="year", y="storage_Tg", lower="lower_Tg",
                                    upper="upper_Tg", hue="pool", ylabel="Storage (Tg C)")


def per_format(fig, base: Path) -> None:
    for fmt in FORMATS:
        fig.savefig(f"{base}.{fmt}", format=fmt, dpi=300, bbox_inches="tight")


def timed(make, save, folder: Path, repeats: int) -> float:
    times = []
    for i in range(repeats):
        fig = make()
        start = time.perf_counter()
        save(fig, folder / f"f{i}")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import rioxarray  # noqa: F401  (rio accessor)

    maps = density_maps()
    figures = {"two-panel map": lambda: viz.map_panel(maps, title="Total carbon density"),
               "line chart": chart}
    print(f"{'figure':<16}{'per format s':>14}{'laid out once s':>17}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        timed(figures["two-panel map"], per_format, folder, 1)  # warm: imports, fonts
        for name, make in figures.items():
            old = timed(make, per_format, folder, args.repeats)
            new = timed(make, lambda f, b: viz.save_figure(f, b, formats=FORMATS), folder,
                        args.repeats)
            print(f"{name:<16}{old:>14.2f}{new:>17.2f}{old / new:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
