"""Provenance: which code and which package versions produced an artifact.

One package list (:data:`PACKAGES`) serves stage manifests and model cards.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata

from terracarbon import __version__

PACKAGES: tuple[str, ...] = (
    "numpy", "pandas", "xarray", "rioxarray", "rasterio", "dask", "scipy", "scikit-learn",
    "joblib", "torch", "numba", "esda", "libpysal", "papermill", "matplotlib", "hvplot", "panel",
)
"""Packages whose versions are recorded in every manifest and model card."""


def package_versions() -> dict[str, str | None]:
    """``{"terracarbon": version, package: version or None (not installed)}``.

    Looked up once per process (about 10 ms: every package's metadata is searched on
    ``sys.path``), as the versions loaded do not change; each call returns a new dict.
    """
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"terracarbon": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str | None:
    from terracarbon.pipeline.params import REPO_ROOT

    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict:
    """Git commit and dirty flag of the workbench, Python, platform and package versions."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    versions = package_versions()
    return {
        "terracarbon": versions.pop("terracarbon"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }
