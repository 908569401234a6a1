"""Shared fixtures: one full quick-study run per test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

from terracarbon.pipeline.params import REPO_ROOT  # noqa: E402
from helpers import QUICK_STAGES  # noqa: E402


@pytest.fixture(scope="session")
def quick_run_session(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess | None]:
    """``run_all.py --params params/quick.yaml`` once per session: (run folder, its result).

    ``TERRACARBON_QUICK_RUN=<run dir>`` reuses a finished run while developing. Tests that
    change the run (test_pipeline's failing-stage test) restore it before they finish.
    """
    if os.environ.get("TERRACARBON_QUICK_RUN"):
        return Path(os.environ["TERRACARBON_QUICK_RUN"]), None
    runs = tmp_path_factory.mktemp("quick_runs")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_all.py"), "--params", "params/quick.yaml",
         "--runs-dir", str(runs)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        pytest.fail(f"quick run failed\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    run = runs / "quick"
    for stage in QUICK_STAGES:
        manifest = json.loads((run / stage / "manifest.json").read_text())
        assert manifest["status"] == "complete", f"{stage} did not complete in the quick run"
    return run, result

