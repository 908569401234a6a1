"""Run a study: the stages in order with papermill, skipping those already up to date.

``run_all.py`` is a thin command-line wrapper around :func:`run_study`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

from terracarbon import progress as _progress
from terracarbon.pipeline import preflight, report
from terracarbon.pipeline import kernel_preload, stages
from terracarbon.errors import ParameterError, RunInterrupted, StageError
from terracarbon.data.io import atomic_path
from terracarbon.pipeline.params import REPO_ROOT
from terracarbon.pipeline.runfolder import RunLock, remove_temporaries, run_folder

log = logging.getLogger(__name__)
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class StageResult:
    stage_id: str
    status: str  # complete | skipped | failed
    duration_s: float
    report: Path | None
    error: str | None = None


def stage_parameters(params: dict, stage_id: str, run_dir: Path) -> dict:
    """The papermill parameters of a stage: ``run_dir`` plus its parameter sections."""
    spec = stages.STAGES[stage_id]
    return {"run_dir": str(run_dir), **{name: params[name] for name in spec.sections}}


def check_notebook_parameters(stage_ids: Iterable[str], notebook_dir: Path = NOTEBOOK_DIR) -> None:
    """Every parameter we pass must be declared in the notebook (papermill only warns)."""
    import papermill

    problems = []
    for stage_id in stage_ids:
        spec = stages.STAGES[stage_id]
        path = notebook_dir / spec.notebook
        if not path.is_file():
            problems.append(f"  - {stage_id}: notebook {path} not found")
            continue
        declared = set(papermill.inspect_notebook(str(path)))
        expected = {"run_dir", *spec.sections}
        for name in sorted(expected - declared):
            problems.append(f"  - {stage_id}: {path.name} has no parameter {name!r} in its "
                            "'parameters' cell; add it (a dict of that section's defaults)")
    if problems:
        raise ParameterError("notebook parameters do not match the study:\n" + "\n".join(problems))


def select_stages(listed: Sequence[str], *, start: str | None, only: str | None) -> list[str]:
    """The stages to consider, honouring ``--from`` and ``--only``."""
    for name, value in (("--from", start), ("--only", only)):
        if value is not None and value not in listed:
            raise ParameterError(f"{name} {value!r}: not a stage of this study {list(listed)}")
    if only is not None:
        return [only]
    if start is not None:
        return list(listed[listed.index(start):])
    return list(listed)


def _kernel_env() -> dict[str, str]:
    # the inline backend renders returned figures into the notebook (and so the HTML report);
    # HoloViews/Panel reserve an empty output per plot for the console output of live
    # callbacks: a batch run has no live front end, and nbconvert cannot render the empty
    # output (its "mimetype(s) dict_keys([])" warning), so batch kernels go without it
    env = {"PYTHONHASHSEED": "0", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "PANEL_CONSOLE_OUTPUT": "disable"}
    return env


KERNEL_LOG = "kernel.log"
"""The stage kernel's own stdout/stderr (start-up notes, shutdown noise), in the stage folder."""


class KernelExits:
    """Stage kernels asked to exit, whose processes finish exiting while the run goes on.

    After its last cell a stage kernel takes 1-2 s to exit: IPython's reset, the libraries'
    exit handlers, freeing memory. Nothing of the stage depends on that, so the run writes
    the stage's report and starts the next stage meanwhile; a thread per kernel waits for the
    process as jupyter_client would (SIGTERM, then SIGKILL, after ``shutdown_wait_time``).
    nbclient releases the kernel's sockets and connection file as soon as the request is
    sent, as it always did. :meth:`wait` joins the threads: the run calls it before it
    returns or raises, so no kernel outlives it. After Ctrl-C or SIGTERM the kernel may
    still be in a cell, so an interrupted run waits for it as before.
    """

    def __init__(self) -> None:
        self._exiting: list[threading.Thread] = []

    def add(self, manager: object) -> None:
        thread = threading.Thread(target=_finish_exit, args=(manager,), daemon=True,
                                  name="terracarbon-kernel-exit")
        thread.start()
        self._exiting.append(thread)

    def wait(self) -> None:
        while self._exiting:
            self._exiting.pop(0).join()


def _finish_exit(manager: object) -> None:
    """Wait for a kernel asked to exit: SIGTERM, then SIGKILL, after jupyter_client's
    ``shutdown_wait_time`` (its own ``finish_shutdown``, on this thread's event loop)."""
    import asyncio

    asyncio.run(manager._async_finish_shutdown())


def _kernel_manager_class(log_path: Path, env: dict[str, str] | None = None,
                          exits: KernelExits | None = None) -> type:
    """A Jupyter kernel manager that sends the kernel process's console output to ``log_path``.

    The kernel runs in its own session (jupyter_client does that), so Ctrl-C reaches only
    ``run_all``; when the run then shuts the kernel down mid-cell, the kernel's complaints
    (tracebacks of closed sockets) go to the log instead of the user's terminal. ``env`` is
    added to this kernel's environment only (the progress events file of its stage); a
    Jupyter server's ``JPY_SESSION_NAME`` is not passed on, so a stage kernel never takes
    itself for an interactive JupyterLab kernel (no progress widgets in the reports). With
    ``exits``, a graceful shutdown only asks the kernel to exit and leaves the waiting to
    ``exits`` (:class:`KernelExits`).
    """
    from jupyter_client import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    class StageKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: object) -> None:
            # Unix-domain sockets, not TCP: the kernel is reachable only through files in
            # the user's private runtime folder (0700), so nothing is sent over the network
            # and ipykernel has no reason for its "running over TCP without encryption"
            # warning. The socket files are removed at shutdown (cleanup_ipc_files).
            runtime = Path(jupyter_runtime_dir())
            if len(str(runtime)) > 70:  # a socket path must stay under ~100 bytes
                runtime = Path(tempfile.gettempdir())
            runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.transport = "ipc"
            self.ip = str(runtime / f"terracarbon-{uuid.uuid4().hex[:12]}")
            kernel_env = {**os.environ, **kw.get("env", {}), **(env or {})}
            kernel_env.pop("JPY_SESSION_NAME", None)
            kw["env"] = kernel_env
            with open(log_path, "ab") as log:  # the kernel process keeps its own copy
                kw.setdefault("stdout", log)
                kw.setdefault("stderr", log)
                await super().start_kernel(**kw)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            # an interrupted run waits: its kernel may still be in a cell, and must be
            # stopped before the run removes what the cell was writing
            if (exits is None or now or restart or not self.has_kernel
                    or _InterruptFilter.interrupted):
                return await super().shutdown_kernel(now=now, restart=restart)
            self.shutting_down = True
            self.stop_restarter()
            await self._async_request_shutdown()
            exits.add(self)

    return StageKernelManager


class _InterruptFilter(logging.Filter):
    """Drops log records once the run is interrupted.

    Shutting a kernel down mid-cell makes papermill log "Kernel died" and asyncio log a
    never-retrieved ``DeadKernelError`` with its traceback; after Ctrl-C / SIGTERM the user
    gets one line from ``run_all`` instead.
    """

    interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not _InterruptFilter.interrupted


_NOISY_LOGGERS = ("papermill", "asyncio", "nbclient", "traitlets")
_INTERRUPT_FILTER = _InterruptFilter()


def _on_signal(signum: int, frame: object) -> None:
    _InterruptFilter.interrupted = True
    raise KeyboardInterrupt


class _InterruptHandling:
    """For the duration of a run: SIGINT/SIGTERM raise KeyboardInterrupt and silence the
    kernel-shutdown noise (main thread only; elsewhere signals stay as they are)."""

    def __enter__(self) -> _InterruptHandling:
        _InterruptFilter.interrupted = False
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).addFilter(_INTERRUPT_FILTER)
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, _on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        # the filters stay: asyncio reports never-retrieved task errors when the tasks are
        # garbage-collected, after the run has returned; they are dropped only after an
        # interrupt


@dataclass
class StageKernel:
    """A stage's kernel, started (:func:`start_stage_kernel`) but not yet given a notebook."""

    manager: object  # the StageKernelManager of :func:`_kernel_manager_class`
    events: Path | None  # the progress events file the kernel writes, if any
    log: Path  # where its console output goes


PRELOAD_EXTENSION = kernel_preload.__name__
"""The IPython extension a stage kernel loads at start-up: it imports the libraries the
stage's first cells need (:mod:`terracarbon.pipeline.kernel_preload`)."""


def start_stage_kernel(*, cwd: str | os.PathLike, kernel_log: str | os.PathLike,
                       progress_folder: str | os.PathLike | None,
                       exits: KernelExits | None = None,
                       preload: Sequence[str] = ()) -> StageKernel:
    """Start the kernel a stage notebook will run on, and return without waiting for it.

    The kernel gets the batch environment (:func:`_kernel_env`), talks over Unix-domain
    sockets (no TCP) and writes its own console output to ``kernel_log``. With
    ``progress_folder`` it reports the library's progress (:mod:`terracarbon.progress`)
    to a fresh events file there; without, it reports none. While it boots it imports the
    libraries every stage uses and the modules ``preload`` names
    (:mod:`terracarbon.pipeline.kernel_preload`), so a kernel started while the previous
    stage runs has them ready when its own notebook starts. The process starts in a few
    milliseconds; the kernel boots on its own.
    """
    from jupyter_core.utils import run_sync

    os.environ.update(_kernel_env())
    Path(kernel_log).unlink(missing_ok=True)
    events = _progress.events_path(progress_folder) if progress_folder is not None else None
    env = ({_progress.ENV_FILE: str(events)} if events is not None
           else {_progress.ENV_MODE: "off", _progress.ENV_FILE: ""})
    env[kernel_preload.ENV] = ",".join(preload)
    manager = _kernel_manager_class(Path(kernel_log), env, exits)(kernel_name="python3")
    # what nbclient passes when it starts a kernel itself (papermill's cwd, an in-memory
    # history), plus the preload extension; on this thread's event loop, which nbclient
    # then uses to run the notebook (jupyter_core's run_sync, as nbclient's)
    run_sync(manager.start_kernel)(
        cwd=str(cwd), extra_arguments=["--HistoryManager.hist_file=:memory:",
                                       f"--IPKernelApp.extensions={PRELOAD_EXTENSION}"])
    return StageKernel(manager, events, Path(kernel_log))


def shutdown_stage_kernel(kernel: StageKernel) -> None:
    """Stop a started kernel that will run no notebook (its process ends before this
    returns) and remove its events file."""
    from jupyter_core.utils import run_sync

    run_sync(kernel.manager.shutdown_kernel)(now=True)
    if kernel.events is not None:
        kernel.events.unlink(missing_ok=True)
    if kernel.log.name != KERNEL_LOG:  # a kernel started ahead logs to a temporary file
        kernel.log.unlink(missing_ok=True)


def execute_notebook(source: str | os.PathLike, output: str | os.PathLike, *,
                     parameters: dict, cwd: str | os.PathLike,
                     kernel_log: str | os.PathLike,
                     display: StageProgress | None = None,
                     exits: KernelExits | None = None,
                     kernel: StageKernel | None = None) -> Path:
    """Execute ``source`` with papermill into ``output`` the way the runner runs a stage.

    On ``kernel`` when given (started by :func:`start_stage_kernel` for this notebook, with
    ``progress_folder`` set exactly when ``display`` is given), else on a kernel started here
    the same way. Written atomically; on failure the executed notebook (with its traceback)
    is kept at ``output``. With ``exits`` the kernel finishes exiting in the background
    (:class:`KernelExits`); without, this returns once its process has ended.

    With ``display``, the kernel's library progress (:mod:`terracarbon.progress`) is written
    to a temporary events file beside ``output`` that ``display`` tails while the notebook
    runs; the file is removed afterwards. Without it the kernel reports no progress at all.
    """
    import papermill

    output = Path(output)
    if kernel is None:
        kernel = start_stage_kernel(cwd=cwd, kernel_log=kernel_log, exits=exits,
                                    progress_folder=output.parent if display else None)
    elif (display is None) != (kernel.events is None):
        raise ValueError("execute_notebook: the kernel was started "
                         f"{'without' if kernel.events is None else 'with'} a progress "
                         f"events file, but display is {'given' if display else 'None'}; "
                         "start it with progress_folder exactly when a display is given")
    _register_engine()
    with atomic_path(output) as tmp, _tailing(display, kernel.events):
        try:
            papermill.execute_notebook(
                str(source), str(tmp), parameters=parameters, cwd=str(cwd),
                progress_bar=False, kernel_name="python3", report_mode=False,
                engine_name=_ENGINE, km=kernel.manager,
            )
        except BaseException:
            # keep the failed notebook (with its traceback) for the HTML report
            if tmp.exists():
                os.replace(tmp, output)
            raise
    return output


_ENGINE = "terracarbon"


@functools.cache
def _register_engine() -> None:
    """Register papermill's nbclient engine, run on a kernel started beforehand
    (:func:`start_stage_kernel`, passed as ``km``) and shut down afterwards as nbclient
    shuts down a kernel it started itself; papermill's own engine would leave a given
    kernel running."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class StartedKernelEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False,
                                     stdout_file=None, stderr_file=None, start_timeout=60,
                                     execution_timeout=None, **kwargs):
            # papermill's NBClientEngine.execute_managed_notebook, with cleanup_kc=True
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs,
                timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            return PapermillNotebookClient(nb_man, **final_kwargs).execute(cleanup_kc=True)

    papermill_engines.register(_ENGINE, StartedKernelEngine)


class StageProgress:
    """What the console shows of a running stage, from its kernel's progress events.

    Events (:func:`terracarbon.progress.read_events`) are folded into the tasks still running
    (:class:`terracarbon.progress.ProgressState`) and shown as ``[stage] running <status>``:

    * with ``status`` (a terminal): every change rewrites one line in place (``run_all``
      prints it after a carriage return and clears it before the next ordinary line);
    * without (a log, CI): a line through ``progress`` at most every ``interval_s`` seconds
      while something changed, and one when a task that ran at least ``interval_s`` ends —
      a quick stage adds no line, a long one a few per minute.

    ``clock`` is for tests.
    """

    def __init__(self, stage_id: str, progress: Callable[[str], None], *,
                 status: Callable[[str], None] | None = None, interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stage_id = stage_id
        self.progress = progress
        self.status = status
        self.interval_s = interval_s
        self.clock = clock
        self.state = _progress.ProgressState()
        self._shown: str | None = None
        self._last_line = clock()

    def line(self, text: str) -> str:
        """The console message of ``text``: ``[stage] running <text>``."""
        return f"[{self.stage_id}] running {text}"

    def feed(self, events: Iterable[dict]) -> None:
        """Fold ``events`` in and show what changed, by the rules above."""
        ended = []
        for event in events:
            info = self.state.apply(event)
            if info is not None:
                ended.append(info)
        text = self.state.status()
        if self.status is not None:
            if text != self._shown:
                self._shown = text
                self.status(self.line(text) if text else "")
            return
        now = self.clock()
        for info in ended:
            if info["elapsed_s"] >= self.interval_s:
                self.progress(self.line(_progress.finished(info)))
                self._last_line = now
        if text and text != self._shown and now - self._last_line >= self.interval_s:
            self.progress(self.line(text))
            self._shown, self._last_line = text, now

    def close(self) -> None:
        """The stage ended: clear a live line."""
        if self.status is not None and self._shown:
            self.status("")
        self._shown = None
        self.state = _progress.ProgressState()


class Console:
    """``run_all``'s console: ``"   12.3 s  message"`` lines, and on a terminal one live line.

    Calling it prints a line (after clearing a live line); :meth:`status` rewrites the live
    line in place (``\\r`` and erase-line, cut to the terminal width; ``""`` clears it). ``live``
    defaults to whether ``stream`` is a terminal; without it :meth:`status` prints nothing.
    """

    def __init__(self, stream: TextIO | None = None, *, t0: float | None = None,
                 live: bool | None = None) -> None:
        import sys

        self.stream = stream if stream is not None else sys.stdout
        self.t0 = time.time() if t0 is None else t0
        self.live = self.stream.isatty() if live is None else live
        self._showing = False
        self._lock = threading.Lock()

    def _stamp(self, message: str) -> str:
        return f"{time.time() - self.t0:7.1f} s  {message}"

    def __call__(self, message: str) -> None:
        with self._lock:
            if self._showing:
                self.stream.write("\r\x1b[K")
                self._showing = False
            self.stream.write(self._stamp(message) + "\n")
            self.stream.flush()

    def status(self, message: str) -> None:
        if not self.live:
            return
        import shutil

        width = shutil.get_terminal_size((100, 20)).columns
        with self._lock:
            text = self._stamp(message)[:max(20, width - 1)] if message else ""
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
            self._showing = bool(text)


@contextlib.contextmanager
def _tailing(display: StageProgress | None, events: Path | None,
             poll_s: float = 0.5) -> Iterator[None]:
    """While the block runs, feed ``events`` to ``display`` from a thread; then the rest, and
    remove the file."""
    if display is None or events is None:
        yield
        return
    stop = threading.Event()
    offset = 0

    def poll() -> None:
        nonlocal offset
        found, offset = _progress.read_events(events, offset)
        if found:
            display.feed(found)

    def loop() -> None:
        while not stop.wait(poll_s):
            try:
                poll()
            except Exception:  # noqa: BLE001  the display must never stop a stage
                log.debug("progress display failed", exc_info=True)

    thread = threading.Thread(target=loop, name="terracarbon-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            poll()
        except Exception:  # noqa: BLE001
            log.debug("progress display failed", exc_info=True)
        display.close()
        events.unlink(missing_ok=True)


def _execute(stage_id: str, params: dict, run_dir: Path, notebook_dir: Path,
             display: StageProgress | None = None, exits: KernelExits | None = None,
             kernel: StageKernel | None = None) -> Path:
    """Execute a stage notebook with papermill into its stage folder (atomically), on
    ``kernel`` when it was started ahead (:class:`KernelsAhead`)."""
    spec = stages.STAGES[stage_id]
    stage_dir = run_dir / stage_id
    stage_dir.mkdir(parents=True, exist_ok=True)
    if kernel is not None and kernel.log != stage_dir / KERNEL_LOG:
        os.replace(kernel.log, stage_dir / KERNEL_LOG)  # the kernel keeps writing to it
        kernel.log = stage_dir / KERNEL_LOG
    return execute_notebook(notebook_dir / spec.notebook, stage_dir / spec.notebook,
                            parameters=stage_parameters(params, stage_id, run_dir),
                            cwd=notebook_dir, kernel_log=stage_dir / KERNEL_LOG,
                            display=display, exits=exits, kernel=kernel)


class KernelsAhead:
    """Kernels started for the stages about to run, while the stage before them runs.

    A stage kernel takes about 2 s before its notebook's work begins: 0.5 s to boot, then
    1-2 s importing xarray, dask, Zarr, matplotlib and the stage's own libraries. Started
    when the previous stage starts (:meth:`start`), it boots and makes those imports
    (:mod:`terracarbon.pipeline.kernel_preload`) on the other core while that stage runs.
    Until its stage starts it writes its console output to a temporary file in its stage
    folder (``.kernel.log.tmp-<hex>``, removed by the run folder's clean-up after a crash).
    :meth:`take` hands it to its stage; :meth:`close` stops those never taken (a stage
    found up to date, a failed or interrupted run), and the run calls it before it
    returns or raises.
    """

    def __init__(self, run_dir: Path, notebook_dir: Path, *, with_progress: bool,
                 exits: KernelExits | None) -> None:
        self.run_dir, self.notebook_dir = run_dir, notebook_dir
        self.with_progress, self.exits = with_progress, exits
        self._started: dict[str, tuple[StageKernel, bool]] = {}

    def start(self, stage_id: str) -> None:
        """Start the kernel of ``stage_id`` (once)."""
        if stage_id in self._started:
            return
        stage_dir = self.run_dir / stage_id
        created = not stage_dir.exists()
        stage_dir.mkdir(parents=True, exist_ok=True)
        kernel = start_stage_kernel(
            cwd=self.notebook_dir, exits=self.exits,
            kernel_log=stage_dir / f".{KERNEL_LOG}.tmp-{uuid.uuid4().hex[:12]}",
            progress_folder=stage_dir if self.with_progress else None,
            preload=stages.STAGES[stage_id].preload)
        self._started[stage_id] = (kernel, created)

    def take(self, stage_id: str) -> StageKernel | None:
        """The kernel started for ``stage_id``, now its stage's to run and stop; None when
        none was started or it has died meanwhile (then the stage starts its own)."""
        from jupyter_core.utils import run_sync

        kernel, _ = self._started.get(stage_id, (None, False))
        if kernel is not None and not run_sync(kernel.manager.is_alive)():
            self.discard(stage_id)
            return None
        self._started.pop(stage_id, None)
        return kernel

    def discard(self, stage_id: str) -> None:
        """Stop the kernel started for ``stage_id`` (its stage will not run): the stage folder
        is left as it was."""
        kernel, created = self._started.pop(stage_id, (None, False))
        if kernel is None:
            return
        shutdown_stage_kernel(kernel)
        if created:
            with contextlib.suppress(OSError):
                (self.run_dir / stage_id).rmdir()  # only if the kernel left it empty

    def close(self) -> None:
        """Stop every kernel not taken."""
        for stage_id in list(self._started):
            self.discard(stage_id)


def progress_interval_s() -> float:
    """Seconds between progress lines on a console that is not a terminal
    (``TERRACARBON_PROGRESS_INTERVAL``, default 30)."""
    try:
        return max(1.0, float(os.environ.get("TERRACARBON_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


def run_study(
    params: dict,
    *,
    runs_dir: str | os.PathLike = REPO_ROOT / "runs",
    force: bool = False,
    start: str | None = None,
    only: str | None = None,
    notebook_dir: Path = NOTEBOOK_DIR,
    progress: Callable[[str], None] = lambda msg: None,
    status: Callable[[str], None] | None = None,
) -> tuple[Path, list[StageResult]]:
    """Run the study's stages in order; return the run folder and per-stage results.

    ``progress`` receives one message per event (stage running, complete, skipped, failed,
    the index, preflight warnings) and, while a stage runs, what its library calls report
    (:class:`StageProgress`, :mod:`terracarbon.progress`): through ``status`` (a line a
    terminal rewrites in place; ``""`` clears it) when given, else as occasional lines.
    ``TERRACARBON_PROGRESS=off`` turns the stage progress off, and it is off under pytest
    unless ``TERRACARBON_PROGRESS=on``.

    A stage is skipped when its manifest is complete, its ``stage_hash`` (parameter sections
    + upstream hashes) matches and its outputs exist, unless ``force``. A failing stage stops
    the run: its notebook and HTML are still written, its manifest says ``failed`` with the
    failing cell, and earlier stages are untouched. ``index.html`` is rewritten after every
    stage.

    The run folder is locked for the duration (:class:`~terracarbon.pipeline.runfolder.RunLock`):
    a second run into the same folder stops with a message. Input files are fingerprinted
    (:mod:`~terracarbon.pipeline.fingerprints`): an edited input reruns the stages reading it.

    Raises
    ------
    StageError
        When a stage fails (after writing its report and the index), or the folder is in use.
    RunInterrupted
        On Ctrl-C / SIGTERM: the running stage's manifest says ``interrupted``, its temporary
        files are removed, the index is rewritten; a rerun resumes at that stage.
    """
    run_dir = run_folder(runs_dir, params["study"]["name"])
    listed = list(params["study"]["stages"])
    todo = select_stages(listed, start=start, only=only)
    check_notebook_parameters(todo, notebook_dir)
    warnings = preflight.check_study(params, todo, run_dir=run_dir)
    for warning in warnings:
        progress(f"warning: {warning}")
    params = {**params, "_meta": {**params.get("_meta", {}), "warnings": warnings}}
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StageError(f"cannot create the run folder {run_dir} ({exc.strerror}); check "
                         "--runs-dir and its permissions.") from None
    exits = KernelExits()
    with RunLock(run_dir), _InterruptHandling():
        try:
            return _run_locked(params, run_dir, todo, force=force, notebook_dir=notebook_dir,
                               progress=progress, status=status, exits=exits)
        finally:
            exits.wait()


def _run_locked(params: dict, run_dir: Path, todo: list[str], *, force: bool,
                notebook_dir: Path, progress: Callable[[str], None],
                status: Callable[[str], None] | None = None,
                exits: KernelExits | None = None,
                ) -> tuple[Path, list[StageResult]]:
    params_file = run_dir / "params.yaml"
    clean = {k: v for k, v in params.items() if k != "_meta"}
    with atomic_path(params_file) as tmp:
        tmp.write_text(yaml.safe_dump({**clean, "_meta": params.get("_meta", {})},
                                      sort_keys=False))
    ahead = KernelsAhead(run_dir, notebook_dir, with_progress=_progress.console_enabled(),
                         exits=exits)
    try:
        return _run_stages(params, run_dir, todo, force=force, notebook_dir=notebook_dir,
                           progress=progress, status=status, exits=exits, ahead=ahead)
    finally:
        ahead.close()


def _run_stages(params: dict, run_dir: Path, todo: list[str], *, force: bool,
                notebook_dir: Path, progress: Callable[[str], None],
                status: Callable[[str], None] | None, exits: KernelExits | None,
                ahead: KernelsAhead) -> tuple[Path, list[StageResult]]:
    import papermill

    results: list[StageResult] = []
    failure: StageError | None = None
    for position, stage_id in enumerate(todo):
        spec = stages.STAGES[stage_id]
        sections = {name: params[name] for name in spec.sections}
        expected, _ = stages.expected_stage_hash(run_dir, stage_id, sections)
        source_hash = stages.file_hash(notebook_dir / spec.notebook)
        if not force and stages.is_up_to_date(run_dir, stage_id, expected,
                                              source_hash=source_hash):
            progress(f"[{stage_id}] up to date, skipped")
            ahead.discard(stage_id)
            manifest = stages.read_manifest(run_dir / stage_id) or {}
            report_path = manifest.get("report")
            results.append(StageResult(stage_id, "skipped", 0.0,
                                       run_dir / report_path if report_path else None))
            continue
        progress(f"[{stage_id}] running {spec.notebook} …")
        t0 = time.time()
        error = None
        display = (StageProgress(stage_id, progress, status=status,
                                 interval_s=progress_interval_s())
                   if _progress.console_enabled() else None)
        try:
            kernel = ahead.take(stage_id)
            for later in todo[position + 1:position + 2]:  # boots and imports beside this one
                ahead.start(later)
            out_nb = _execute(stage_id, params, run_dir, notebook_dir, display, exits, kernel)
        except KeyboardInterrupt:
            stages.update_manifest(run_dir / stage_id, stage=stage_id, title=spec.title,
                                   status="interrupted", duration_s=round(time.time() - t0, 2),
                                   error="interrupted by the user; rerun to resume here")
            remove_temporaries(run_dir)
            write_index(run_dir, params)
            raise RunInterrupted(
                f"interrupted during {stage_id}; earlier stages are complete and kept, "
                f"nothing half-written is left. Rerun the same command to resume at {stage_id}."
            ) from None
        except papermill.PapermillExecutionError as exc:
            out_nb = run_dir / stage_id / spec.notebook
            error = (f"stage {stage_id} failed in cell {exc.exec_count} "
                     f"(index {exc.cell_index}): {exc.ename}: {exc.evalue}")
        except Exception as exc:  # noqa: BLE001  the kernel died (out of memory, killed) or
            # could not start: a failed stage with the kernel's own log, not a traceback
            out_nb = run_dir / stage_id / spec.notebook
            error = (f"stage {stage_id} failed: the notebook kernel stopped "
                     f"({type(exc).__name__}: {str(exc)[:200]}); see "
                     f"{run_dir / stage_id / KERNEL_LOG} (out of memory is the usual cause)")
        duration = round(time.time() - t0, 2)
        html_path = run_dir / stage_id / (Path(spec.notebook).stem + ".html")
        if out_nb.exists():
            report.notebook_to_html(out_nb, html_path)
        rel = lambda p: os.path.relpath(p, run_dir)  # noqa: E731
        if error:
            stages.update_manifest(run_dir / stage_id, stage=stage_id, title=spec.title,
                                   status="failed", error=error, duration_s=duration,
                                   notebook=rel(out_nb), report=rel(html_path))
            progress(f"[{stage_id}] FAILED after {duration:.1f} s: {error}")
            results.append(StageResult(stage_id, "failed", duration, html_path, error))
            failure = StageError(error + f"\n  report: {html_path}")
            break
        manifest = stages.read_manifest(run_dir / stage_id) or {}
        if manifest.get("status") != "complete" or manifest.get("stage_hash") != expected:
            error = (f"stage {stage_id}: the notebook ran but did not call "
                     "stages.finish_stage with the runner's parameters")
            stages.update_manifest(run_dir / stage_id, status="failed", error=error,
                                   report=rel(html_path))
            results.append(StageResult(stage_id, "failed", duration, html_path, error))
            failure = StageError(error)
            break
        stages.update_manifest(run_dir / stage_id, duration_s=duration, notebook=rel(out_nb),
                               report=rel(html_path), source_hash=source_hash)
        progress(f"[{stage_id}] complete in {duration:.1f} s")
        results.append(StageResult(stage_id, "complete", duration, html_path))
        write_index(run_dir, params)
    index = write_index(run_dir, params)
    progress(f"index: {index}")
    if failure is not None:
        raise failure
    return run_dir, results


def write_index(run_dir: Path, params: dict) -> Path:
    """(Re)write the run's index.html from the manifests on disk."""
    manifests = []
    for stage_id in params["study"]["stages"]:
        manifest = stages.read_manifest(run_dir / stage_id)
        manifests.append(manifest or {"stage": stage_id, "status": "not run",
                                      "title": stages.STAGES[stage_id].title})
    return report.render_index(run_dir, manifests, params_file="params.yaml",
                               title=f"terracarbon run '{params['study']['name']}'",
                               provenance=stages.provenance(),
                               warnings=params.get("_meta", {}).get("warnings", ()))
