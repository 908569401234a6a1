"""Run safety (issue 13): stale results are never trusted, run folders are safe to use.

* input fingerprints: an input file edited in place reruns the stages that read it, a touch
  (mtime only) does not;
* the lock: a second run into the same run folder stops with a message, also while a real
  run is under way;
* interrupts (Ctrl-C to the process group, SIGTERM to the process): exit 130, one line, the
  stage's manifest "interrupted", no temporaries; a rerun resumes and gives byte-identical
  tables to an uninterrupted run;
* run names: nothing is ever written outside --runs-dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from terracarbon.errors import ParameterError, StageError
from terracarbon.pipeline.params import REPO_ROOT
from terracarbon.pipeline.runfolder import RunLock, check_run_name, run_folder
from tiny_study import folder_digest, load_run_all, make_tiny_study

run_all = load_run_all()

RUN_ALL = [sys.executable, str(REPO_ROOT / "run_all.py")]
TWO_STAGES = "study.stages=[01_data_prep, 02_train_models]"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_safety") / "study"
    make_tiny_study(folder)
    return folder


def manifest(run: Path, stage: str) -> dict:
    return json.loads((run / stage / "manifest.json").read_text())


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp-*")]


def csv_tables(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*.csv"))}


def wait_for(predicate, *, timeout: float, what: str, proc: subprocess.Popen | None = None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"run ended (exit {proc.returncode}) before {what}\n{out[-2000:]}\n"
                        f"{err[-2000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def status_is(run: Path, stage: str, status: str):
    def check() -> bool:
        try:
            return manifest(run, stage).get("status") == status
        except (OSError, json.JSONDecodeError):
            return False
    return check


def own_lines(stderr: str) -> list[str]:
    """stderr lines written by run_all itself (not by the Jupyter kernel or loggers)."""
    noise = re.compile(r"^(\[\w+\]|WARNING:|INFO:|DEBUG:|\s*$)")
    return [line for line in stderr.splitlines() if not noise.match(line)]


# --------------------------------------------------------------------------- fingerprints


@pytest.mark.slow
def test_edited_input_reruns_data_prep_but_a_touch_does_not(study, tmp_path, capsys):
    study = Path(shutil.copytree(study, tmp_path / "study"))  # this test edits its inputs
    runs = tmp_path / "runs"
    argv = ["--params", str(study / "study.yaml"), "--runs-dir", str(runs),
            "--only", "01_data_prep"]
    assert run_all.main(argv) == 0
    out = capsys.readouterr().out
    assert "[01_data_prep] complete" in out
    run = runs / "tiny"
    first = manifest(run, "01_data_prep")
    # every input file is fingerprinted: 4 annual layers x 6 years + dem + boundary + plots
    assert len(first["inputs"]) == 4 * 6 + 3
    plots = str(study / "plots.csv")
    assert first["inputs"][plots] != "missing"

    assert run_all.main(argv) == 0
    assert "[01_data_prep] up to date, skipped" in capsys.readouterr().out

    # a touch changes the mtime only: still up to date
    later = time.time() + 120
    os.utime(study / "plots.csv", (later, later))
    assert run_all.main(argv) == 0
    assert "[01_data_prep] up to date, skipped" in capsys.readouterr().out
    assert manifest(run, "01_data_prep")["stage_hash"] == first["stage_hash"]

    # one value edited in place (same size, same mtime): the stage runs again
    text = (study / "plots.csv").read_text()
    lines = text.splitlines(keepends=True)
    fields = lines[1].split(",")
    fields[4] = fields[4][:-1] + ("1" if fields[4][-1] != "1" else "2")  # veg_c, last digit
    lines[1] = ",".join(fields)
    (study / "plots.csv").write_text("".join(lines))
    assert len("".join(lines)) == len(text)
    os.utime(study / "plots.csv", (later, later))
    # a later stage alone would read the stale data prep: refused before anything runs
    rc = run_all.main(argv[:-2] + ["--from", "02_train_models"])
    out, err = capsys.readouterr()
    assert rc == 1 and "01_data_prep" in err and "out of date" in err
    assert "--from 01_data_prep" in err and "Traceback" not in out + err
    assert not (run / "02_train_models").exists()
    assert run_all.main(argv) == 0
    out = capsys.readouterr().out
    assert "[01_data_prep] running" in out and "[01_data_prep] complete" in out
    second = manifest(run, "01_data_prep")
    assert second["inputs"][plots] != first["inputs"][plots]
    changed = {k for k in first["inputs"] if first["inputs"][k] != second["inputs"][k]}
    assert changed == {plots}
    assert second["stage_hash"] != first["stage_hash"]
    assert run_all.main(argv) == 0
    assert "[01_data_prep] up to date, skipped" in capsys.readouterr().out


def test_fingerprint_of_a_large_file_samples_but_sees_edits(tmp_path, monkeypatch):
    """Beyond FULL_HASH_MAX_BYTES the hash samples header, tail, length and blocks, and adds
    the modification time; with the mtime held fixed, the sampled content alone decides."""
    from terracarbon.pipeline import fingerprints

    monkeypatch.setattr(fingerprints, "FULL_HASH_MAX_BYTES", 2**20)
    path = tmp_path / "big.bin"
    data = bytearray(os.urandom(5 * 2**20))
    path.write_bytes(data)
    os.utime(path, (1, 1))
    base = fingerprints.file_fingerprint(path)
    for offset in (0, len(data) - 1):  # header, tail
        edited = bytearray(data)
        edited[offset] ^= 0xFF
        path.write_bytes(edited)
        os.utime(path, (1, 1))
        assert fingerprints.file_fingerprint(path) != base
    path.write_bytes(data + b"\0")  # length
    os.utime(path, (1, 1))
    assert fingerprints.file_fingerprint(path) != base
    path.write_bytes(data)
    os.utime(path, (1, 1))
    assert fingerprints.file_fingerprint(path) == base
    os.utime(path, (2, 2))  # a touch of a large (sampled) file counts, the safe side
    assert fingerprints.file_fingerprint(path) != base


# --------------------------------------------------------------------------- the lock


def test_second_run_into_a_locked_folder_stops(study, tmp_path, capsys):
    runs = tmp_path / "runs"
    run = runs / "tiny"
    before = folder_digest(study)
    with RunLock(run):
        rc = run_all.main(["--params", str(study / "study.yaml"), "--runs-dir", str(runs)])
        out, err = capsys.readouterr()
        assert rc == 1
        assert "in use by another run" in err and f"pid {os.getpid()}" in err
        assert "--set study.name=" in err  # what to do
        assert "Traceback" not in out + err
        # the refused run wrote nothing: no params.yaml, no stage folder
        assert sorted(p.name for p in run.iterdir()) == [".lock"]
    # released on exit: the folder can be locked again
    with RunLock(run):
        pass
    assert folder_digest(study) == before


@pytest.mark.slow
def test_interrupts_clean_up_and_resume_byte_identically(study, tmp_path):
    """Ctrl-C (SIGINT to the process group) during 02 and SIGTERM (to the process) during 01.

    Ctrl-C: exit 130, one line, 02's manifest 'interrupted', no temporaries; meanwhile the
    running study holds the folder's lock. The rerun skips 01, reruns 02 and
    its tables are byte-identical to an uninterrupted run's.
    """
    before = folder_digest(study)
    argv = ["--params", str(study / "study.yaml"), "--set", TWO_STAGES]

    # the reference: one uninterrupted run, started alongside
    ref_runs = tmp_path / "ref"
    reference = subprocess.Popen([*RUN_ALL, *argv, "--runs-dir", str(ref_runs)], cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    runs = tmp_path / "runs"
    run = runs / "tiny"
    cmd = [*RUN_ALL, *argv, "--runs-dir", str(runs)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    wait_for(status_is(run, "02_train_models", "running"), timeout=240, what="02 running",
             proc=proc)
    # a second run of the same name meanwhile would be refused: the running one holds the
    # folder's lock (what a second run meets is tested above; asked here in microseconds,
    # not by starting a process, so the interrupt below still lands inside stage 02 on a
    # loaded machine)
    with pytest.raises(StageError, match="in use by another run"):
        with RunLock(run):
            pass

    time.sleep(1.0)  # well inside the stage
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out[-2000:]}\n{err[-3000:]}"
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert own_lines(err) == [own_lines(err)[0]] and own_lines(err)[0].startswith(
        "interrupted: interrupted during 02_train_models"), err[-2000:]
    assert "Rerun the same command" in err
    assert manifest(run, "01_data_prep")["status"] == "complete"
    assert manifest(run, "02_train_models")["status"] == "interrupted"
    assert "interrupted" in (run / "index.html").read_text()
    assert not temporaries(run), temporaries(run)
    assert not (run / ".lock").read_text().strip()  # released

    # the rerun resumes at 02
    rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "[01_data_prep] up to date, skipped" in rerun.stdout
    assert "[02_train_models] complete" in rerun.stdout
    assert manifest(run, "02_train_models")["status"] == "complete"

    ref_out, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err[-3000:]
    tables, ref_tables = csv_tables(run), csv_tables(ref_runs / "tiny")
    assert tables.keys() == ref_tables.keys() and len(tables) >= 5, sorted(tables)
    different = [k for k in tables if tables[k] != ref_tables[k]]
    assert not different, f"tables differ after resume: {different}"
    assert folder_digest(study) == before


@pytest.mark.slow
def test_sigterm_during_a_stage_marks_it_interrupted(study, tmp_path):
    runs = tmp_path / "runs"
    run = runs / "tiny"
    proc = subprocess.Popen([*RUN_ALL, "--params", str(study / "study.yaml"), "--set",
                             TWO_STAGES, "--runs-dir", str(runs)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(status_is(run, "01_data_prep", "running"), timeout=120, what="01 running",
             proc=proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)  # a batch scheduler, `kill`
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in out + err
    assert len(own_lines(err)) == 1 and own_lines(err)[0].startswith(
        "interrupted: interrupted during 01_data_prep"), err[-2000:]
    assert manifest(run, "01_data_prep")["status"] == "interrupted"
    assert not (run / "02_train_models").exists()
    assert not temporaries(run), temporaries(run)
    # nothing a rerun would trust: no complete manifest, the cube is not left behind
    assert not list((run / "01_data_prep").glob("cube.*"))


@pytest.mark.slow
def test_kernel_killed_is_a_failed_stage_not_a_traceback(study, tmp_path):
    """The kernel dies mid-stage (the OOM killer): a failed stage naming the kernel log."""
    import psutil

    runs = tmp_path / "runs"
    run = runs / "tiny"
    proc = subprocess.Popen([*RUN_ALL, "--params", str(study / "study.yaml"), "--set",
                             TWO_STAGES, "--runs-dir", str(runs)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(status_is(run, "01_data_prep", "running"), timeout=120, what="01 running",
             proc=proc)

    def kernel_of(stage: str) -> list:
        """The kernels writing to a log in ``stage``'s folder (02's was started ahead)."""
        return [p for p in psutil.Process(proc.pid).children(recursive=True)
                if "ipykernel_launcher" in " ".join(p.cmdline())
                and any(f"/{stage}/" in f.path for f in p.open_files())]

    wait_for(lambda: kernel_of("02_train_models"), timeout=30, what="02's kernel", proc=proc)
    ahead = kernel_of("02_train_models")[0]
    [kernel] = kernel_of("01_data_prep")
    kernel.kill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in out + err
    assert "error: stage 01_data_prep failed: the notebook kernel stopped" in err
    assert str(run / "01_data_prep" / "kernel.log") in err
    assert (run / "01_data_prep" / "kernel.log").exists()
    assert manifest(run, "01_data_prep")["status"] == "failed"
    assert not ahead.is_running()  # the kernel started for 02 was stopped with the run
    assert not (run / "02_train_models").exists()
    assert not temporaries(run)


# --------------------------------------------------------------------------- run names


@pytest.mark.parametrize("name", ["../escaped", "", "a/b", "/tmp/x", ".", "..", ".hidden",
                                  "a" * 81, "x\ny", None, 7])
def test_bad_run_names_refused(name, tmp_path):
    with pytest.raises(ParameterError, match="study.name"):
        check_run_name(name)
    with pytest.raises(ParameterError, match="study.name"):
        run_folder(tmp_path / "runs", name)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escaped").exists()


def test_good_run_names_stay_inside(tmp_path):
    for name in ("tiny", "guangdong_2000-2021", "v1.2"):
        assert run_folder(tmp_path / "runs", name) == (tmp_path / "runs" / name).resolve()


def test_symlinked_run_folder_pointing_outside_refused(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "outside").mkdir()
    (runs / "evil").symlink_to(tmp_path / "outside")
    with pytest.raises(ParameterError, match="outside the runs folder"):
        run_folder(runs, "evil")


@pytest.mark.parametrize("name", ["../escaped", ""])
def test_run_study_refuses_names_even_without_the_schema_check(name, study, tmp_path):
    """The runner's own guard, independent of params.validate: nothing written anywhere."""
    from terracarbon.pipeline.params import load_params
    from terracarbon.pipeline.runner import run_study

    params = load_params(study / "study.yaml")
    params["study"]["name"] = name
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ParameterError, match="study.name"):
        run_study(params, runs_dir=work / "runs")
    assert list(work.iterdir()) == []
    assert not list(tmp_path.rglob("params.yaml"))


def test_run_escape_via_command_line_writes_nothing(study, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("../escaped", "''"):
        rc = run_all.main(["--params", str(study / "study.yaml"), "--runs-dir",
                           str(work / "runs"), "--set", f"study.name={name}"])
        out, err = capsys.readouterr()
        assert rc == 1 and "study.name" in err and "Traceback" not in out + err
    assert list(work.iterdir()) == []
    assert not (tmp_path / "escaped").exists()
    assert not list(tmp_path.rglob("params.yaml"))


def test_lock_error_is_a_stage_error(tmp_path):
    with RunLock(tmp_path / "r"):
        with pytest.raises(StageError, match="in use by another run"):
            with RunLock(tmp_path / "r"):
                pass


def test_large_file_fingerprint_sees_an_edit_between_sampled_blocks(tmp_path, monkeypatch):
    """Above the full-hash limit the content is sampled; the modification time catches an
    in-place edit that no sampled block covers."""
    import os

    from terracarbon.pipeline import fingerprints

    monkeypatch.setattr(fingerprints, "FULL_HASH_MAX_BYTES", 4 * 2**20)
    path = tmp_path / "big.tif"
    path.write_bytes(bytes(8 * 2**20))
    before = fingerprints.file_fingerprint(path)
    stat = path.stat()
    with path.open("r+b") as fh:  # a byte no sampled block reads (offsets checked below)
        fh.seek(2**20 + 1000)
        fh.write(b"x")
    assert fingerprints.file_fingerprint(path) != before
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: content alone
    assert fingerprints.file_fingerprint(path) == before  # proves the edit was unsampled


@pytest.mark.slow
def test_stage_kernels_exit_in_the_background_but_none_outlives_the_run(study, tmp_path,
                                                                         monkeypatch):
    """After its last cell a kernel finishes exiting while the run goes on (#19), yet when
    run_study returns its process has ended and its connection file and sockets are gone."""
    import psutil

    from terracarbon.pipeline import runner
    from terracarbon.pipeline.params import load_params

    exiting = []
    add, finish = runner.KernelExits.add, runner._finish_exit

    def record(self, manager):
        exiting.append((manager.provisioner.process.pid, Path(manager.connection_file),
                        Path(manager.ip)))
        add(self, manager)

    def slow_finish(manager):  # a kernel still exiting when the last stage is done
        time.sleep(2.0)
        finish(manager)

    monkeypatch.setattr(runner.KernelExits, "add", record)
    monkeypatch.setattr(runner, "_finish_exit", slow_finish)
    params = load_params(study / "study.yaml")
    run_dir, results = runner.run_study(params, runs_dir=tmp_path / "runs", only="01_data_prep")
    assert [r.status for r in results] == ["complete"]
    assert len(exiting) == 1  # the stage's kernel took the background path
    pid, connection_file, socket_base = exiting[0]
    assert not [t for t in threading.enumerate() if t.name == "terracarbon-kernel-exit"]
    assert not psutil.pid_exists(pid)
    assert not connection_file.exists()
    assert not list(socket_base.parent.glob(socket_base.name + "*"))
    assert manifest(run_dir, "01_data_prep")["status"] == "complete"


def test_a_stage_runs_on_a_kernel_started_beside_the_stage_before(study, tmp_path, monkeypatch):
    """#19: 02's kernel is started when 01 starts, with 02's preload, and 02's notebook runs
    on it (its log becomes 02's kernel.log). A rerun where 01 reruns and 02 is up to date
    stops the kernel started for 02 and leaves 02's folder as it was."""
    import psutil

    from terracarbon.pipeline import runner
    from terracarbon.pipeline.params import load_params
    from terracarbon.pipeline.stages import STAGES

    started, executed = [], []
    start, execute = runner.start_stage_kernel, runner.execute_notebook

    def recording_start(**kwargs):
        kernel = start(**kwargs)
        kernel.pid = kernel.manager.provisioner.process.pid
        started.append((Path(kwargs["kernel_log"]).parent.name, kernel, kwargs.get("preload"),
                        time.time()))
        return kernel

    def recording_execute(source, output, **kwargs):
        t0 = time.time()
        result = execute(source, output, **kwargs)
        executed.append((Path(output).parent.name, kwargs.get("kernel"), t0, time.time()))
        return result

    monkeypatch.setattr(runner, "start_stage_kernel", recording_start)
    monkeypatch.setattr(runner, "execute_notebook", recording_execute)
    params = load_params(study / "study.yaml")
    params["study"]["stages"] = ["01_data_prep", "02_train_models"]
    run_dir, results = runner.run_study(params, runs_dir=tmp_path / "runs")
    assert [r.status for r in results] == ["complete", "complete"]
    by_stage = {stage: (kernel, preload, t) for stage, kernel, preload, t in started}
    assert sorted(by_stage) == ["01_data_prep", "02_train_models"] and len(started) == 2
    (_, given_01, _, end_01), (_, given_02, _, _) = executed
    assert given_01 is None  # the first stage starts its own
    assert given_02 is by_stage["02_train_models"][0]  # 02 ran on the kernel started ahead
    assert by_stage["02_train_models"][1] == STAGES["02_train_models"].preload
    # started with 01's own kernel, so it boots and imports while 01 runs
    assert by_stage["02_train_models"][2] <= by_stage["01_data_prep"][2] < end_01
    assert (run_dir / "02_train_models" / "kernel.log").exists()
    assert not temporaries(run_dir)

    log_02 = (run_dir / "02_train_models" / "kernel.log").read_bytes()
    manifest_02 = (run_dir / "02_train_models" / "manifest.json").read_bytes()
    (run_dir / "01_data_prep" / "manifest.json").unlink()  # 01 reruns, 02 stays up to date
    started.clear()
    _, results = runner.run_study(params, runs_dir=tmp_path / "runs")
    assert [r.status for r in results] == ["complete", "skipped"]
    ahead = [kernel for stage, kernel, _, _ in started if stage == "02_train_models"]
    assert len(ahead) == 1
    assert ahead[0].pid not in {p.pid for p in psutil.process_iter()}  # stopped
    assert (run_dir / "02_train_models" / "kernel.log").read_bytes() == log_02
    assert (run_dir / "02_train_models" / "manifest.json").read_bytes() == manifest_02
    assert not temporaries(run_dir)


def test_a_kernel_started_ahead_that_died_is_not_handed_to_its_stage(tmp_path):
    """A kernel started ahead that dies while waiting (killed, out of memory) is cleared
    away, and its stage starts its own: take() gives None, its temporary log is gone, and
    the stage folder it created is removed again."""
    import psutil

    from terracarbon.pipeline import runner

    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    ahead = runner.KernelsAhead(run_dir, REPO_ROOT / "notebooks", with_progress=False,
                                exits=None)
    ahead.start("04_trends")
    assert temporaries(run_dir)  # its log, until its stage takes it
    kernel, _ = ahead._started["04_trends"]
    process = psutil.Process(kernel.manager.provisioner.process.pid)
    process.kill()
    process.wait(timeout=30)
    assert ahead.take("04_trends") is None
    assert not (run_dir / "04_trends").exists() and not temporaries(run_dir)
    ahead.close()
