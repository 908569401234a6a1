"""Progress of long steps: what is running and how far it is, wherever someone is watching.

The library reports progress through one small API and never prints:

* :func:`task` — a context manager for a step with a known (or unknown) number of parts::

      with progress.task("fits", total=len(jobs), unit="fits") as p:
          for job in jobs:
              p.advance(0, label=job.label)   # what is running now
              ...
              p.advance()                     # one part done

* :func:`iterate` — the same around a loop: ``for year in progress.iterate(years, "mapping",
  unit="years")``; the label is the item being worked on.
* :class:`DaskProgress` — a dask callback counting the chunks (tasks of the graph) a compute
  has done; :func:`watch_dask` registers it for the local schedulers
  (:func:`terracarbon.pipeline.compute.start` does), :func:`label_tasks` names tasks worth
  counting on their own ("year-chunks mapped" for :mod:`terracarbon.carbon.mapping`).

Where the reports go is chosen by the environment, once per task:

================================  ==============================================================
``TERRACARBON_PROGRESS=off``      nowhere (everything below is off)
``TERRACARBON_PROGRESS_FILE``     JSON lines appended to that file (the runner sets it for a
                                  stage kernel, tails the file and shows one line per stage)
a JupyterLab / Notebook kernel    a ``tqdm.auto`` bar (ipywidgets), removed when the task ends;
                                  ``TERRACARBON_PROGRESS=bar`` forces bars in other kernels
anything else                     nowhere: plain library use, scripts, tests
================================  ==============================================================

Tests stay quiet: under pytest (``PYTEST_CURRENT_TEST``, inherited by the kernels and
subprocesses a test starts) only an explicit ``TERRACARBON_PROGRESS_FILE`` or
``TERRACARBON_PROGRESS=bar`` reports anything, and the runner's console shows progress lines
only with ``TERRACARBON_PROGRESS=on`` (:func:`console_enabled`). A JupyterLab kernel is one a
Jupyter server started (it sets ``JPY_SESSION_NAME``); papermill's kernels are not, so executed
notebooks and their HTML reports hold no progress widgets.

Event format (one JSON object per line, :func:`read_events`)::

    {"event": "start", "id": "4711-3", "parent": "4711-1" | null, "name": "fits",
     "total": 9 | null, "unit": "fits", "label": null, "t": 1.7e9}
    {"event": "advance", "id": "4711-3", "done": 2, "label": "spatial_block CV fold 3 of 5",
     "t": ...}
    {"event": "end", "id": "4711-3", "done": 9, "total": 9, "elapsed_s": 41.2,
     "error": false, "t": ...}

:class:`ProgressState` folds events into the tasks still running and :meth:`ProgressState.status`
writes them as one line: ``training: rf [0/3 models] › fits: spatial_block CV fold 3 of 5
[2/9 fits]``.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

ENV_MODE = "TERRACARBON_PROGRESS"
"""``off`` (nothing anywhere), ``on`` (the runner's console shows progress even under pytest),
``bar`` (widget bars in any IPython kernel); unset or ``auto``: chosen as the module says."""
ENV_FILE = "TERRACARBON_PROGRESS_FILE"
"""Path of the JSON-lines events file a stage kernel appends to (set by the runner)."""

MIN_INTERVAL_S = 0.25
"""Least time between two ``advance`` events of one task in the file (start, end and a new
label are always written)."""
DASK_DELAY_S = 1.0
"""A dask compute reports only once it has run this long (most computes are short)."""
SEPARATOR = " › "

Mode = Literal["off", "file", "bar", "silent"]

_ids = itertools.count(1)
_current: contextvars.ContextVar[Task | None] = contextvars.ContextVar("terracarbon_progress",
                                                                      default=None)


# --------------------------------------------------------------------------- where reports go
def _under_pytest() -> bool:
    return "PYTEST_CURRENT_TEST" in os.environ


def _in_jupyter_kernel() -> bool:
    """True in an IPython kernel (not a terminal IPython, not plain Python)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def sink_mode() -> Mode:
    """Where a task started now reports: ``off``, ``file``, ``bar`` or ``silent``."""
    mode = os.environ.get(ENV_MODE, "auto").strip().lower()
    if mode == "off":
        return "off"
    if os.environ.get(ENV_FILE):
        return "file"
    if mode == "bar" and _in_jupyter_kernel():
        return "bar"
    if (mode in ("auto", "on", "") and not _under_pytest() and os.environ.get("JPY_SESSION_NAME")
            and _in_jupyter_kernel()):
        return "bar"
    return "silent"


def console_enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether ``run_all``'s console shows progress lines of the running stage.

    Off with ``TERRACARBON_PROGRESS=off``, and under pytest unless ``TERRACARBON_PROGRESS=on``
    (the test suite's runs keep their console to stage lines); on otherwise.
    """
    env = os.environ if environ is None else environ
    mode = env.get(ENV_MODE, "auto").strip().lower()
    if mode == "off":
        return False
    return mode == "on" or "PYTEST_CURRENT_TEST" not in env


class _FileSink:
    """Appends one JSON line per event; opened per write, so several processes may share it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        try:
            with self._lock, open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:  # progress must never break the work it reports on
            log.debug("progress file %s not writable: %s", self.path, exc)


class _BarSink:
    """One ``tqdm.auto`` bar per task (a widget in JupyterLab), closed and hidden at the end."""

    def __init__(self, bar_class: Callable[..., Any] | None = None) -> None:
        if bar_class is None:
            from tqdm.auto import tqdm as bar_class
        self._bar_class = bar_class
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            kind, tid = event["event"], event["id"]
            if kind == "start":
                self._bars[tid] = self._bar_class(
                    total=event["total"], desc=event["name"], unit=f" {event['unit']}",
                    leave=False, position=len(self._bars))
                if event.get("label"):
                    self._bars[tid].set_postfix_str(event["label"], refresh=True)
                return
            bar = self._bars.get(tid)
            if bar is None:
                return
            bar.n = event.get("done", bar.n)
            if kind == "advance":
                if event.get("label") is not None:
                    bar.set_postfix_str(event["label"], refresh=False)
                bar.refresh()
            else:  # end
                bar.close()
                del self._bars[tid]


_BAR_SINK: _BarSink | None = None


def _sink() -> _FileSink | _BarSink | None:
    global _BAR_SINK
    mode = sink_mode()
    if mode == "file":
        return _FileSink(os.environ[ENV_FILE])
    if mode == "bar":
        if _BAR_SINK is None:
            try:
                _BAR_SINK = _BarSink()
            except ImportError:  # tqdm or ipywidgets missing: no bar, never an error
                return None
        return _BAR_SINK
    return None


# --------------------------------------------------------------------------- the API
class Task:
    """A running step: :meth:`advance` counts parts done and names the one running now.

    Made by :func:`task`; methods are cheap no-ops when nothing is watching. ``done`` and
    ``label`` are kept either way.
    """

    def __init__(self, name: str, *, total: int | None, unit: str, label: str | None,
                 delay_s: float, sink: Any, parent: Task | None) -> None:
        self.name, self.total, self.unit, self.label = name, total, unit, label
        self.done = 0
        self.id = f"{os.getpid()}-{next(_ids)}"
        self._parent = parent
        self._sink = sink
        self._delay_s = delay_s
        self._t0 = time.time()
        self._started = False
        self._last = 0.0
        self._lock = threading.Lock()
        if sink is not None and delay_s <= 0:
            self._start()

    def _start(self) -> None:
        self._started = True
        parent = self._parent
        while parent is not None and not parent._started:
            parent = parent._parent
        self._emit({"event": "start", "parent": parent.id if parent else None,
                    "name": self.name, "total": self.total, "unit": self.unit,
                    "label": self.label})

    def _emit(self, event: dict[str, Any]) -> None:
        self._sink.emit({**event, "id": self.id, "t": round(time.time(), 3)})

    def advance(self, n: int = 1, *, label: str | None = None) -> None:
        """``n`` more parts done (0: only a new ``label``, the part now running)."""
        with self._lock:
            self.done += n
            new_label = label is not None and label != self.label
            if label is not None:
                self.label = label
            if self._sink is None or (n == 0 and not new_label):
                return
            now = time.time()
            if not self._started:
                if now - self._t0 < self._delay_s:
                    return
                self._start()
            last_part = self.total is not None and self.done >= self.total
            if new_label or last_part or now - self._last >= MIN_INTERVAL_S:
                self._last = now
                self._emit({"event": "advance", "done": self.done, "label": self.label})

    def _end(self, error: bool) -> None:
        with self._lock:
            if self._sink is not None and self._started:
                self._emit({"event": "end", "done": self.done, "total": self.total,
                            "elapsed_s": round(time.time() - self._t0, 3), "error": error})


@contextlib.contextmanager
def task(name: str, *, total: int | None = None, unit: str = "steps",
         label: str | None = None, delay_s: float = 0.0) -> Iterator[Task]:
    """Report a step while the ``with`` block runs.

    Parameters
    ----------
    name : str
        What runs, in a few words ("training", "fits", "mapping").
    total : int, optional
        Parts the step has (None when unknown).
    unit : str
        What a part is ("fits", "years", "chunks").
    label : str, optional
        The part running first.
    delay_s : float
        Report only once the step has run this long (s); shorter steps leave no trace.

    Examples
    --------
    >>> with task("fits", total=2, unit="fits") as p:
    ...     p.advance(0, label="fold 1 of 2"); p.advance()
    ...     p.advance(0, label="fold 2 of 2"); p.advance()
    >>> (p.done, p.label)
    (2, 'fold 2 of 2')
    """
    sink = _sink()
    parent = _current.get()
    t = Task(name, total=total, unit=unit, label=label, delay_s=delay_s, sink=sink,
             parent=parent)
    token = _current.set(t)
    error = True
    try:
        yield t
        error = False
    finally:
        try:
            _current.reset(token)
        except ValueError:  # ended from another context (a generator closed late)
            _current.set(parent)
        t._end(error)


def iterate(items: Iterable[Any], name: str, *, total: int | None = None,
            unit: str = "steps", label: Callable[[Any], str] = str) -> Iterator[Any]:
    """Yield ``items`` inside :func:`task`: each item's ``label`` while it is worked on.

    >>> [year for year in iterate([2000, 2001], "mapping", unit="years")]
    [2000, 2001]
    """
    if total is None:
        items = list(items)
        total = len(items)
    with task(name, total=total, unit=unit) as t:
        for item in items:
            t.advance(0, label=label(item))
            yield item
            t.advance()


# --------------------------------------------------------------------------- dask
_TASK_LABELS: dict[str, str] = {}


def label_tasks(prefix: str, label: str) -> None:
    """Count the dask tasks whose key starts with ``prefix`` on their own, as ``label``.

    :mod:`terracarbon.carbon.mapping` names its one-task-per-year-and-chunk predictions this
    way, so a compute writing the maps reports "year-chunks mapped 8/88" beside its chunks.
    """
    _TASK_LABELS[prefix] = label


def _labelled_prefix(key: Any) -> str | None:
    """The :func:`label_tasks` prefix a dask key belongs to, if any; graph optimisation fuses
    names (``lambda-block_map-from-value-<token>``), so any dash-separated part counts."""
    name = key[0] if isinstance(key, tuple) else key
    if not isinstance(name, str):
        return None
    return next((part for part in name.split("-") if part in _TASK_LABELS), None)


try:
    from dask.callbacks import Callback as _DaskCallback
except ImportError:  # pragma: no cover - dask is a dependency
    _DaskCallback = object  # type: ignore[assignment,misc]


class DaskProgress(_DaskCallback):
    """A dask callback reporting chunks done of each compute as a :func:`task`.

    A chunk is a task of the (optimised) graph that makes one array chunk (its key is
    ``(name, i, j, …)``): an elementwise step over an array of *n* chunks is *n* chunks; the
    final assembly of a result is not one. A graph of delayed functions only counts tasks. Computes that finish within ``delay_s`` leave no trace, and only
    computes started from the main thread report (the computes nested inside dask's worker
    threads are parts of the outer one). Works with the local schedulers (threads,
    processes, synchronous); a ``distributed`` cluster reports through its own dashboard.

    Examples
    --------
    >>> import dask.array as da
    >>> cb = DaskProgress(delay_s=0)
    >>> with cb:
    ...     _ = (da.ones(8, chunks=2) + 1).compute(scheduler="synchronous")
    >>> cb.last.done, cb.last.total
    (4, 4)
    """

    def __init__(self, name: str = "computing", *, delay_s: float = DASK_DELAY_S) -> None:
        super().__init__()
        self.name = name
        self.delay_s = delay_s
        self._running: dict[int, tuple[Any, Task, dict[str, list[int]], bool]] = {}
        self.last: Task | None = None

    def _start_state(self, dsk: Any, state: dict) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        keys = [*state["ready"], *state["waiting"], *state["running"]]
        named: dict[str, list[int]] = {}
        for key in keys:
            prefix = _labelled_prefix(key)
            if prefix is not None:
                named.setdefault(prefix, [0, 0])[1] += 1
        chunks = sum(isinstance(key, tuple) for key in keys)
        # array chunks have tuple keys (name, i, j, ...); a graph without any (delayed
        # functions only) counts its tasks
        unit, total = ("chunks", chunks) if chunks else ("tasks", len(keys))
        context = task(self.name, total=total, unit=unit, delay_s=self.delay_s)
        t = context.__enter__()
        self._running[id(state)] = (context, t, named, bool(chunks))

    def _posttask(self, key: Any, result: Any, dsk: Any, state: dict, worker_id: Any) -> None:
        entry = self._running.get(id(state))
        if entry is None:
            return
        _, t, named, by_chunk = entry
        label = None
        if named:
            prefix = _labelled_prefix(key)
            if prefix in named:
                named[prefix][0] += 1
            label = ", ".join(f"{_TASK_LABELS[p]} {d}/{n}" for p, (d, n) in named.items())
        t.advance(1 if isinstance(key, tuple) or not by_chunk else 0, label=label)

    def _finish(self, dsk: Any, state: dict, errored: bool) -> None:
        entry = self._running.pop(id(state), None)
        if entry is None:
            return
        context, t = entry[:2]
        self.last = t
        if errored:
            with contextlib.suppress(Exception):
                context.__exit__(RuntimeError, RuntimeError("dask compute failed"), None)
        else:
            context.__exit__(None, None, None)


_WATCHER: DaskProgress | None = None


def watch_dask() -> bool:
    """Register :class:`DaskProgress` for every compute when someone watches (idempotent).

    Returns whether it is registered: not when :func:`sink_mode` is ``off`` or ``silent``,
    so plain library use and tests pay nothing.
    """
    global _WATCHER
    if _WATCHER is not None:
        return True
    if sink_mode() not in ("file", "bar"):
        return False
    _WATCHER = DaskProgress()
    _WATCHER.register()
    return True


def unwatch_dask() -> None:
    """Undo :func:`watch_dask`."""
    global _WATCHER
    if _WATCHER is not None:
        with contextlib.suppress(KeyError):
            _WATCHER.unregister()
        _WATCHER = None


# --------------------------------------------------------------------------- reading events
def read_events(path: str | os.PathLike, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete events written to ``path`` after byte ``offset``, and the new offset.

    A line still being written (no newline yet) is left for the next call; a line that is not
    JSON is skipped.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events, offset + end


@dataclass
class _Shown:
    name: str
    total: int | None
    unit: str
    parent: str | None
    label: str | None = None
    done: int = 0
    started: float = 0.0


@dataclass
class ProgressState:
    """The tasks still running, from events; :meth:`status` describes them in one line."""

    running: dict[str, _Shown] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Fold one event in; for an ``end``, the finished task (name, done, total, unit,
        elapsed_s, error), else None."""
        kind, tid = event.get("event"), event.get("id")
        if kind == "start":
            self.running[tid] = _Shown(event["name"], event.get("total"), event.get("unit", ""),
                                       event.get("parent"), event.get("label"),
                                       started=event.get("t", 0.0))
        elif kind == "advance" and tid in self.running:
            shown = self.running[tid]
            shown.done = event.get("done", shown.done)
            if event.get("label") is not None:
                shown.label = event["label"]
        elif kind == "end" and tid in self.running:
            shown = self.running.pop(tid)
            return {"name": shown.name, "done": event.get("done", shown.done),
                    "total": event.get("total", shown.total), "unit": shown.unit,
                    "elapsed_s": float(event.get("elapsed_s", 0.0)),
                    "error": bool(event.get("error"))}
        return None

    def status(self) -> str | None:
        """The most recently started task and the tasks around it, outermost first.

        >>> s = ProgressState()
        >>> s.apply({"event": "start", "id": "1", "parent": None, "name": "training",
        ...          "total": 3, "unit": "models", "label": "rf"})
        >>> s.apply({"event": "start", "id": "2", "parent": "1", "name": "fits", "total": 9,
        ...          "unit": "fits"})
        >>> s.apply({"event": "advance", "id": "2", "done": 2,
        ...          "label": "spatial_block CV fold 3 of 5"})
        >>> s.status()
        'training: rf [0/3 models] › fits: spatial_block CV fold 3 of 5 [2/9 fits]'
        """
        if not self.running:
            return None
        tid: str | None = next(reversed(self.running))
        chain = []
        while tid is not None and tid in self.running and len(chain) < 8:
            chain.append(self.running[tid])
            tid = self.running[tid].parent
        return SEPARATOR.join(describe(s.name, s.label, s.done, s.total, s.unit)
                              for s in reversed(chain))


def describe(name: str, label: str | None, done: int, total: int | None, unit: str) -> str:
    """``name: label [done/total unit]`` (the parts that are known).

    >>> describe("computing", "years mapped 8/22", 300, 1200, "chunks")
    'computing: years mapped 8/22 [300/1200 chunks]'
    >>> describe("fits", None, 0, None, "fits")
    'fits'
    """
    text = f"{name}: {label}" if label else name
    if total is not None:
        text += f" [{done}/{total} {unit}]"
    elif done:
        text += f" [{done} {unit}]"
    return text


def finished(info: dict[str, Any]) -> str:
    """One line for a task that ended (:meth:`ProgressState.apply`'s return).

    >>> finished({"name": "fits", "done": 9, "total": 9, "unit": "fits", "elapsed_s": 41.2,
    ...           "error": False})
    'fits finished [9/9 fits] in 41.2 s'
    """
    how = "stopped" if info["error"] else "finished"
    count = describe("", None, info["done"], info["total"], info["unit"]).strip()
    return f"{info['name']} {how}{' ' + count if count else ''} in {info['elapsed_s']:.1f} s"


def events_path(folder: str | os.PathLike) -> Path:
    """A fresh temporary events file name in ``folder`` (``.progress.tmp-<hex>``: the run
    folder's temporary-file clean-up removes it after an interrupt)."""
    import uuid

    return Path(folder) / f".progress.tmp-{uuid.uuid4().hex[:12]}"
