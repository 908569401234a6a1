"""The offline JupyterLab set-up (``make lab``, ``terracarbon.viz.lab``) without a browser:
every stylesheet Panel's components name, in a kernel started with the lab's environment,
is a file the Jupyter server serves from its static folder."""

from __future__ import annotations

import json
import subprocess
import sys

from terracarbon.viz.lab import lab_command, lab_environment, offline_static_folder

_URLS = """
import json, panel as pn
from panel.layout.base import ListPanel, WidgetBox
from panel.pane import Markdown
from panel.io.resources import CDN_DIST
print(json.dumps([CDN_DIST, *ListPanel._stylesheets, *WidgetBox._stylesheets,
                  *Markdown._stylesheets]))
"""


def test_panel_stylesheets_resolve_to_files_the_lab_server_serves(tmp_path):
    static = offline_static_folder(tmp_path / "static")
    env = lab_environment({"PATH": "/usr/bin:/bin"}, port=8765)
    out = subprocess.run([sys.executable, "-c", _URLS], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    dist, *urls = json.loads(out.strip().splitlines()[-1])
    root = env["PANEL_CDN_ROOT"]
    # on the lab server (a full URL: Panel inlines what it recognises as its CDN's), not a CDN
    assert root == "http://127.0.0.1:8765/static/panel-cdn/" and dist.startswith(root)
    sheets = [u for u in urls if u.endswith(".css")]
    assert len(sheets) >= 3 and all(u.startswith(dist) for u in sheets), urls
    for url in sheets:  # /static/<path> is served from the extra static folder
        assert (static / url.removeprefix("http://127.0.0.1:8765/static/")).is_file(), url
    command = lab_command(static, root_dir=tmp_path)
    assert f"--ServerApp.extra_static_paths=['{static}']" in command
    assert "--ip=127.0.0.1" in command and "--LabApp.news_url=" in command
    again = offline_static_folder(tmp_path / "static")  # reused, not copied again
    assert again == static
