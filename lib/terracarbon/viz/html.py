"""Standalone HTML pages that work offline: writing, and removing what would go online.

Panel's page template links stylesheets and favicons from a CDN; a page opened offline
(the study's reports are) would show unstyled widgets and failed requests. The stylesheets
are inlined (:func:`terracarbon.pipeline.report.inline_panel_stylesheets`) and the icon links
dropped; any remote stylesheet left is logged.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from terracarbon.data.io import atomic_path
from terracarbon.errors import ParameterError
from terracarbon.viz.interactive import _hvplot

log = logging.getLogger(__name__)

__all__ = ["save_html"]

_REMOTE_STYLESHEET = re.compile(r'"url":\s*"(https?://[^"]+\.css[^"]*)"')
_REMOTE_ICON_LINK = re.compile(r'<link rel="(?:icon|apple-touch-icon)"[^>]*href="https?://[^"]*"'
                               r"[^>]*>")


def save_html(obj, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write a HoloViews/Panel object as a standalone HTML page that works offline.

    BokehJS, Panel's JavaScript and its stylesheets are inlined (no CDN), and every frame of
    a slider is embedded. Written atomically.

    Parameters
    ----------
    obj : holoviews object or panel object
        E.g. the result of :func:`~terracarbon.viz.interactive.interactive_map`.
    path : path
        Output ``.html`` file.
    title : str, optional
        Page title.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ParameterError
        ``path`` does not end in ``.html``.
    """
    path = Path(path)
    if path.suffix.lower() != ".html":
        raise ParameterError(f"path={str(path)!r}: expected a file name ending in .html")
    _hvplot()
    import panel as pn
    from bokeh.resources import INLINE
    from panel.io.resources import set_resource_mode

    # Imported when used: pipeline modules may come to import viz, and figures need no pipeline.
    from terracarbon.pipeline.report import inline_panel_stylesheets

    with atomic_path(path) as tmp:
        # Panel resolves its stylesheet URLs when the model is built, so the inline mode
        # must already be on then, not only when the page is written.
        with set_resource_mode("inline"):
            pn.panel(obj).save(str(tmp), resources=INLINE, embed=True, progress=False,
                               title=title or path.stem)
        page = inline_panel_stylesheets(tmp.read_text(encoding="utf-8"))
        # Panel's page template links its favicons from a CDN; offline they only fail.
        page = _REMOTE_ICON_LINK.sub("", page)
        tmp.write_text(page, encoding="utf-8")
    remote = _REMOTE_STYLESHEET.findall(page)
    if remote:
        log.warning("%s still references %d remote stylesheets (e.g. %s); widgets may look "
                    "unstyled offline", path.name, len(remote), remote[0])
    return path

