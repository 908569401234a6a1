"""Shared fixtures: one full quick-study run per test session, shared by xdist workers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

from terracarbon.pipeline.params import REPO_ROOT  # noqa: E402
from helpers import QUICK_STAGES  # noqa: E402


def _check_quick_run(run: Path, result: subprocess.CompletedProcess) -> None:
    if result.returncode != 0:
        pytest.fail(f"quick run failed\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    for stage in QUICK_STAGES:
        manifest = json.loads((run / stage / "manifest.json").read_text())
        assert manifest["status"] == "complete", f"{stage} did not complete in the quick run"


@pytest.fixture(scope="session")
def quick_run_session(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess | None]:
    """``run_all.py --params params/quick.yaml`` once per test run: (run folder, its result).

    Under pytest-xdist the first worker to ask makes the run and the others wait for it (a
    file lock in the folder all workers share), so the study is computed once however many
    workers there are. The run is read-only for tests: a test that reruns or changes it works
    on :func:`quick_run_copy`.

    ``TERRACARBON_QUICK_RUN=<run dir>`` reuses a finished run while developing.
    """
    if os.environ.get("TERRACARBON_QUICK_RUN"):
        return Path(os.environ["TERRACARBON_QUICK_RUN"]), None
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the base folder of this run, common to every worker
    runs, record = shared / "quick_runs", shared / "quick_run.json"
    with FileLock(str(shared / "quick_run.lock")):
        if record.exists():  # another worker made it (or failed to: then fail here too)
            kept = json.loads(record.read_text())
            result = subprocess.CompletedProcess(kept["args"], kept["returncode"],
                                                 kept["stdout"], kept["stderr"])
        else:
            result = subprocess.run(
                [sys.executable, str(REPO_ROOT / "run_all.py"), "--params", "params/quick.yaml",
                 "--runs-dir", str(runs)],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
            record.write_text(json.dumps({"args": result.args, "returncode": result.returncode,
                                          "stdout": result.stdout, "stderr": result.stderr}))
    _check_quick_run(runs / "quick", result)
    return runs / "quick", result


@pytest.fixture()
def quick_run_copy(quick_run_session, tmp_path) -> Path:
    """A private copy of the quick run (same run name) for tests that rerun or change it."""
    run = quick_run_session[0]
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("screenshots", ".lock*"))
    return copy
