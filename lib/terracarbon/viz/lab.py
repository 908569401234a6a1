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

__all__ = ["free_port", "lab_command", "lab_environment", "offline_static_folder"]

STATIC_PREFIX = "panel-cdn"
"""Folder, inside the server's extra static path, that stands in for Panel's CDN root."""


DIST_PARTS = ("css", "assets", "images", "bundled/theme", "bundled/css", "bundled/reactiveesm")
"""Parts of Panel's ``dist`` its components and notebook output link by URL (0.8 MB: the
stylesheets, design themes, the ES-module shim; the rest of ``bundled/``, 94 MB of
JavaScript libraries, is loaded inline by ``pn.extension(inline=True)`` or not at all)."""


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
            partial = dist / f"{part}.partial"
            shutil.copytree(Path(DIST_DIR) / part, partial, dirs_exist_ok=True)
            partial.rename(dist / part)  # whole or absent
    return root


def lab_environment(base: Mapping[str, str] | None = None, *, port: int, base_url: str = "/"
                    ) -> dict[str, str]:
    """``base`` (default: this process's environment) with Panel's CDN root on the server at
    ``http://127.0.0.1:<port><base_url>static/panel-cdn/``.

    Kernels inherit the server's environment, so every notebook's Panel reads it at import.
    The root is a full URL: Panel inlines the resources it recognises as CDN URLs (the
    ES-module shim among them), and a root without scheme and host is not one.
    """
    env = dict(os.environ if base is None else base)
    env["PANEL_CDN_ROOT"] = f"http://127.0.0.1:{port}{base_url.rstrip('/')}/static/{STATIC_PREFIX}/"
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


def free_port(preferred: int = 8888) -> int:
    """``preferred`` if it is free on 127.0.0.1, else a port the system picks."""
    import socket

    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def main(argv: Sequence[str] | None = None) -> int:
    """Start JupyterLab on ``notebooks/`` of the repository (``make lab``), on port 8888 or,
    if that is taken, another free one (Panel's stylesheet URLs name the port)."""
    repo = Path(__file__).resolve().parents[3]
    static = offline_static_folder(Path(sys.prefix) / "share" / "terracarbon-lab")
    port = free_port()
    extra = [f"--port={port}", "--ServerApp.port_retries=0",
             *(sys.argv[1:] if argv is None else argv)]
    command = lab_command(static, root_dir=repo / "notebooks", extra=extra)
    os.execve(command[0], command, lab_environment(port=port))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
