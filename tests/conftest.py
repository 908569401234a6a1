"""Shared fixtures: one full quick-study run per test session, shared by xdist workers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
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


def _quick_run_command(runs: Path) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "run_all.py"), "--params", "params/quick.yaml",
            "--runs-dir", str(runs)]


def _record(record: Path, result: subprocess.CompletedProcess) -> None:
    record.write_text(json.dumps({"args": result.args, "returncode": result.returncode,
                                  "stdout": result.stdout, "stderr": result.stderr}))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist, the controller starts the quick study before the workers start,
    holding the lock until it is done: the workers run the unit tests meanwhile instead of
    one of them making the run while the other waits for it."""
    config = session.config
    if (hasattr(config, "workerinput") or os.environ.get("TERRACARBON_QUICK_RUN")
            or not getattr(config.option, "numprocesses", None)):
        return  # a worker, a reused run, or a serial session: the fixture makes it
    shared = config._tmp_path_factory.getbasetemp()  # the workers' basetemps are below it
    lock = FileLock(str(shared / "quick_run.lock"), thread_local=False)
    lock.acquire()
    runs, record = shared / "quick_runs", shared / "quick_run.json"
    process = subprocess.Popen(_quick_run_command(runs), cwd=REPO_ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finish() -> None:
        try:
            out, err = process.communicate(timeout=1800)
            _record(record, subprocess.CompletedProcess(process.args, process.returncode,
                                                        out, err))
        finally:
            lock.release()

    config._quick_run_thread = threading.Thread(target=finish, daemon=True)
    config._quick_run_thread.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    thread = getattr(session.config, "_quick_run_thread", None)
    if thread is not None:
        thread.join(timeout=1800)


@pytest.fixture(scope="session")
def quick_run_session(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess | None]:
    """``run_all.py --params params/quick.yaml`` once per test run: (run folder, its result).

    Under pytest-xdist the controller starts the run before the workers start
    (:func:`pytest_sessionstart`) and the workers wait for it through a file lock in the
    folder they share, so the study is computed once however many workers there are. The
    run is read-only for tests: a test that reruns or changes it works on
    :func:`quick_run_copy`.

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
            result = subprocess.run(_quick_run_command(runs), cwd=REPO_ROOT,
                                    capture_output=True, text=True, timeout=1800)
            _record(record, result)
    _check_quick_run(runs / "quick", result)
    return runs / "quick", result


@pytest.fixture()
def quick_run_copy(quick_run_session, tmp_path) -> Path:
    """A private copy of the quick run (same run name) for tests that rerun or change it."""
    run = quick_run_session[0]
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("screenshots", ".lock*"))
    return copy
