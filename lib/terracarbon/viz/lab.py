"""JupyterLab on this machine only: the command and environment of ``make lab`` and the test.

Panel's components name their stylesheets by URL on Panel's CDN
(``https://cdn.holoviz.org/panel/<version>/dist/css/…``). A document rendered first in a
notebook gets them inline, but components a live kernel creates later (a dashboard widget's
new layout) keep the CDN URLs, so offline they fail and the browser asks the network.
Panel lets the CDN root be set (``PANEL_CDN_ROOT``, meant for air-gapped sites): here it
points at the Jupyter server's own static files, where a folder holds Panel's ``dist`` under
the path the URLs expect. Every stylesheet then comes from 127.0.0.1.

Run: ``python -m terracarbon.viz.lab [jupyter lab options]`` (``make lab``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["lab_command", "lab_environment", "offline_static_folder"]

STATIC_PREFIX = "panel-cdn"
"""Folder, inside the server's extra static path, that stands in for Panel's CDN root."""


DIST_PARTS = ("css", "assets", "images")
"""Parts of Panel's ``dist`` its components link by URL (0.6 MB; ``bundled/``, 94 MB of
JavaScript libraries, is loaded inline by ``pn.extension(inline=True)``)."""


def offline_static_folder(folder: str | os.PathLike) -> Path:
    """A folder for ``--ServerApp.extra_static_paths`` serving Panel's stylesheets, assets
    and images at ``/static/panel-cdn/<panel version>/dist/``.

    They are copied (the server refuses symbolic links out of its static folders); a copy
    for the installed Panel version is reused.
    """
    import shutil

    from panel.io.resources import DIST_DIR, JS_VERSION

    root = Path(folder)
    dist = root / STATIC_PREFIX / JS_VERSION / "dist"
    for part in DIST_PARTS:
        if not (dist / part).is_dir() and (Path(DIST_DIR) / part).is_dir():
            shutil.copytree(Path(DIST_DIR) / part, dist / f".{part}.partial", dirs_exist_ok=True)
            (dist / f".{part}.partial").rename(dist / part)  # whole or absent
    return root


def lab_environment(base: Mapping[str, str] | None = None, *, base_url: str = "/"
                    ) -> dict[str, str]:
    """``base`` (default: this process's environment) with Panel's CDN root on the server.

    Kernels inherit the server's environment, so every notebook's Panel reads it at import.
    """
    env = dict(os.environ if base is None else base)
    env["PANEL_CDN_ROOT"] = f"{base_url.rstrip('/')}/static/{STATIC_PREFIX}/"
    return env


def lab_command(static_folder: str | os.PathLike, *, root_dir: str | os.PathLike,
                extra: Sequence[str] = ()) -> list[str]:
    """``python -m jupyter lab`` on 127.0.0.1 with nothing that reaches the network: no news,
    no update check, a read-only extension manager, Panel's files from ``static_folder``
    (:func:`offline_static_folder`)."""
    command = [sys.executable, "-m", "jupyter", "lab", "--ip=127.0.0.1",
               f"--ServerApp.root_dir={root_dir}",
               f"--ServerApp.extra_static_paths=['{Path(static_folder)}']",
               "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return [*command, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    """Start JupyterLab on ``notebooks/`` of the repository (``make lab``)."""
    repo = Path(__file__).resolve().parents[3]
    static = offline_static_folder(Path(sys.prefix) / "share" / "terracarbon-lab")
    command = lab_command(static, root_dir=repo / "notebooks",
                          extra=list(sys.argv[1:] if argv is None else argv))
    os.execve(command[0], command, lab_environment())
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
