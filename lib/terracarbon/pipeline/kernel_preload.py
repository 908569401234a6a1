"""IPython extension a stage kernel loads at start-up: the imports its first cells need.

Every stage's first cells open the stage (:func:`terracarbon.pipeline.stages.open_stage`),
start the compute session and read Zarr stores: about 1.2 s of imports (xarray, dask,
pandas, Zarr, rioxarray, matplotlib) in every kernel. The runner starts a stage's kernel
while the previous stage runs (:func:`terracarbon.pipeline.runner.start_stage_kernel`), and
the kernel makes these imports while it boots, beside that stage, on the other core. A
stage may name more modules (``StageSpec.preload``, passed in
``TERRACARBON_KERNEL_PRELOAD``). Nothing is bound in the notebook's namespace, and a module
that fails to import is skipped: the notebook's own import then reports it.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMON_MODULES = (
    "numpy", "pandas", "xarray", "dask.array", "zarr", "rioxarray", "matplotlib.figure",
    "terracarbon.pipeline.stages", "terracarbon.pipeline.compute", "terracarbon.data.io",
    "terracarbon.viz",
)
"""Modules every stage imports in its first cells."""

ENV = "TERRACARBON_KERNEL_PRELOAD"
"""Environment variable: more modules to import, comma-separated."""


def modules_to_preload(environ: dict[str, str] | None = None) -> list[str]:
    """:data:`COMMON_MODULES`, then the stage's own (``TERRACARBON_KERNEL_PRELOAD``).

    >>> modules_to_preload({ENV: "sklearn.ensemble, torch"})[-2:]
    ['sklearn.ensemble', 'torch']
    """
    extra = (environ if environ is not None else os.environ).get(ENV, "")
    return [*COMMON_MODULES, *(m.strip() for m in extra.split(",") if m.strip())]


def load_ipython_extension(ipython) -> None:
    """Import :func:`modules_to_preload` (IPython calls this when the kernel starts)."""
    for name in modules_to_preload():
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  the notebook's own import will report it
            # to the process's own stderr, the stage's kernel.log: the kernel's sys.stderr
            # already goes to notebook clients, and none is connected yet
            print(f"terracarbon: preloading {name} failed: {type(exc).__name__}: {exc}",
                  file=sys.__stderr__, flush=True)
