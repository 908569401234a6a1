"""terracarbon: a notebook-driven workbench for terrestrial-ecosystem carbon storage.

Modules (one concern each): ``params`` (YAML parameters), ``stages`` (run folders and
manifests), ``io`` (reading/writing rasters and tables with units, atomically),
``synthetic`` (the built-in study area), ``prep`` (alignment, plots), ``models``
(RF, CNN, CNN-TCN, baselines, validation), ``carbon`` (density, storage, change),
``trends`` (Sen/MK, Cv, Hurst, partial correlation), ``spatial`` (Moran, LISA, zoning),
``plot`` and ``report`` (figures and HTML).
"""

from __future__ import annotations

__version__ = "0.1.0"
