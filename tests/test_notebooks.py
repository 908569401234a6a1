"""Every notebook runs: the explore notebook against the session's quick run.

(The five stage notebooks run in tests/test_pipeline.py through run_all.py.)
"""

from __future__ import annotations

import papermill
import pytest

from terracarbon.pipeline import report
from terracarbon.pipeline.params import REPO_ROOT

pytestmark = pytest.mark.slow


def test_explore_notebook_executes_offline(quick_run_session, tmp_path):
    run_dir, _ = quick_run_session
    out = tmp_path / "explore.ipynb"
    papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "explore.ipynb"), str(out),
                               parameters={"run_dir": str(run_dir)},
                               cwd=str(REPO_ROOT / "notebooks"), progress_bar=False,
                               kernel_name="python3")
    import nbformat

    errors = [o for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    page = report.notebook_to_html(out, tmp_path / "explore.html").read_text()
    assert report.external_references(page) == []
