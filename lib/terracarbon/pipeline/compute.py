"""Where the dask graphs of a stage run: threads, processes, or a dask.distributed cluster.

Every raster step of the workbench works on dask-chunked xarray objects; this module turns
the study's ``compute:`` parameters into a running scheduler for one stage and back:

* ``scheduler: threads | processes | synchronous`` — dask's local schedulers, set with
  ``dask.config.set`` for the stage (``n_workers`` threads or processes);
* ``scheduler: distributed`` without ``address`` — a ``distributed.LocalCluster`` of
  ``n_workers`` single-threaded worker processes on 127.0.0.1, each limited to
  ``memory_limit`` (workers spill to disk, then pause, before the machine runs out);
* ``address: tcp://host:8786`` (whatever ``scheduler`` says) — a ``distributed.Client`` of
  that existing scheduler, so a study moves to a cluster by setting one parameter.

``chunk_px`` is the spatial chunk edge used by :func:`chunked`.

In a notebook (no ``with`` block spanning cells)::

    session = tc.compute.start(compute)
    session.describe()          # scheduler, workers and the dashboard link
    ...
    session.close()

In code: ``with compute_context(compute) as session: ...``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import dask
import xarray as xr

from terracarbon import progress
from terracarbon.errors import ParameterError

log = logging.getLogger(__name__)

SCHEDULERS = ("threads", "processes", "synchronous", "distributed")
LOCAL_HOST = "127.0.0.1"


@dataclass
class ComputeSession:
    """A configured dask scheduler for one stage; :meth:`close` undoes everything.

    Attributes
    ----------
    scheduler : str
        ``threads``, ``processes``, ``synchronous`` or ``distributed``.
    client : distributed.Client or None
        The client when the scheduler is distributed (local cluster or ``address``).
    dashboard_link : str or None
        URL of the dask dashboard (distributed only; None when bokeh is missing).
    chunks : dict
        ``{"y": chunk_px, "x": chunk_px}`` (pixels), for ``Dataset.chunk``.
    n_workers : int
        Threads, processes or distributed workers that execute tasks.
    """

    scheduler: str
    client: Any = None
    dashboard_link: str | None = None
    chunks: dict[str, int] = field(default_factory=dict)
    n_workers: int = 1
    _cluster: Any = None
    _config: Any = None
    _watching: bool = False
    closed: bool = False

    def describe(self) -> str:
        """One line for the notebook: scheduler, workers, chunks and the dashboard."""
        where = self.client.scheduler.address if self.client is not None else "in process"
        text = (f"dask scheduler: {self.scheduler} ({where}), {self.n_workers} workers, "
                f"chunks {self.chunks['y']} x {self.chunks['x']} px")
        if self.dashboard_link:
            text += f"; dashboard: {self.dashboard_link}"
        return text

    def close(self) -> None:
        """Close the client and any local cluster and restore the dask configuration."""
        if self.closed:
            return
        self.closed = True
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._config is not None:
            self._config.__exit__(None, None, None)
        if self._watching:
            progress.unwatch_dask()
        end_worker_processes()

    def __enter__(self) -> ComputeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def end_worker_processes() -> None:
    """End the worker processes this process keeps for side-by-side fits, and their trackers.

    joblib keeps its loky pool (the networks' fits, flux CV folds) alive for reuse, and loky
    and :mod:`multiprocessing` each keep a resource-tracker process. The trackers ignore
    SIGTERM, while a Jupyter kernel's shutdown sends SIGTERM to its children and waits for
    them (0.01, 0.03, ... 3 s) before SIGKILL: a stage kernel with a tracker took about
    2.5 s to exit, until jupyter_client terminated it and the pool's semaphores leaked. So
    the end of a stage ends them in order: the pool first (its workers exit and its
    semaphores and memmap folders are released), then the trackers (closing the pipe a
    tracker reads makes it exit; a later pool starts a new one). Modules never imported
    are not imported here, so a stage that started no pool pays nothing.
    """
    import multiprocessing
    import sys

    reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
    pool = getattr(reusable, "_executor", None)
    if pool is not None:
        if hasattr(pool, "terminate"):  # joblib's memmapping pool also removes its folders
            pool.terminate(kill_workers=False)
        else:
            pool.shutdown(wait=True)
    if multiprocessing.active_children():
        return  # a process of someone else's still runs: its tracker stays
    for name in ("joblib.externals.loky.backend.resource_tracker",
                 "multiprocessing.resource_tracker"):
        tracker = getattr(sys.modules.get(name), "_resource_tracker", None)
        if tracker is not None and getattr(tracker, "_fd", None) is not None:
            tracker._stop()


def validate_compute(compute: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``compute:`` section; return it with ``memory_limit`` parsed to bytes.

    Parameters
    ----------
    compute : mapping
        ``scheduler``, ``address`` (str or None), ``n_workers`` (>= 1), ``memory_limit``
        (bytes per worker: an int or a string such as ``"4GB"``), ``chunk_px`` (pixels,
        >= 16).

    Returns
    -------
    dict
        The same keys; ``memory_limit`` in bytes.

    Raises
    ------
    ParameterError
        Listing every missing or invalid key.
    """
    if not isinstance(compute, Mapping):
        raise ParameterError(f"compute: expected a mapping (the study's compute: section), "
                             f"got {type(compute).__name__}")
    problems = []
    needed = ("scheduler", "address", "n_workers", "memory_limit", "chunk_px")
    missing = [k for k in needed if k not in compute]
    if missing:
        problems.append(f"missing keys {missing}; see params/default.yaml")
    scheduler = compute.get("scheduler")
    if "scheduler" in compute and scheduler not in SCHEDULERS:
        problems.append(f"compute.scheduler={scheduler!r}: expected one of {list(SCHEDULERS)}")
    address = compute.get("address")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        problems.append(f"compute.address={address!r}: expected a scheduler address such as "
                        "'tcp://host:8786', or null for a local scheduler")
    n_workers = compute.get("n_workers", 1)
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        problems.append(f"compute.n_workers={n_workers!r}: expected an integer >= 1")
    chunk_px = compute.get("chunk_px", 512)
    if isinstance(chunk_px, bool) or not isinstance(chunk_px, int) or chunk_px < 16:
        problems.append(f"compute.chunk_px={chunk_px!r}: expected an integer >= 16 (pixels)")
    memory = compute.get("memory_limit", "4GB")
    try:
        memory_bytes = dask.utils.parse_bytes(memory) if isinstance(memory, str) else memory
        if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, int) \
                or memory_bytes <= 0:
            raise ValueError
    except (ValueError, TypeError):
        memory_bytes = None
        problems.append(f"compute.memory_limit={memory!r}: expected a size per worker such as "
                        "'4GB' or a number of bytes > 0")
    if problems:
        raise ParameterError("invalid compute parameters:\n  - " + "\n  - ".join(problems))
    return {**compute, "memory_limit": memory_bytes}


def start(compute: Mapping[str, Any], *, timeout_s: float = 10.0) -> ComputeSession:
    """Configure dask for a stage from the ``compute:`` parameters.

    Parameters
    ----------
    compute : mapping
        The study's ``compute:`` section (see :func:`validate_compute`). A non-null
        ``address`` always means "use that distributed scheduler".
    timeout_s : float, keyword-only
        Seconds to wait for an existing scheduler at ``address`` (s).

    Returns
    -------
    ComputeSession
        Call :meth:`ComputeSession.close` at the end of the stage (or use
        :func:`compute_context`).

    Raises
    ------
    ParameterError
        Invalid parameters, or no dask scheduler answers at ``compute.address``.
    """
    settings = validate_compute(compute)
    chunks = {"y": settings["chunk_px"], "x": settings["chunk_px"]}
    address = settings["address"]
    if address is not None:
        client = _connect(address, timeout_s)
        n = len(client.scheduler_info().get("workers", {}))
        return ComputeSession("distributed", client=client, dashboard_link=_dashboard(client),
                              chunks=chunks, n_workers=n)
    n_workers = settings["n_workers"]
    if settings["scheduler"] == "distributed":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True,
            memory_limit=settings["memory_limit"], host=LOCAL_HOST,
            dashboard_address=f"{LOCAL_HOST}:0" if _has_bokeh() else None,
        )
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
        return ComputeSession("distributed", client=client, dashboard_link=_dashboard(client),
                              chunks=chunks, n_workers=n_workers, _cluster=cluster)
    config = dask.config.set(scheduler=settings["scheduler"], num_workers=n_workers)
    workers = 1 if settings["scheduler"] == "synchronous" else n_workers
    # chunks done of each compute, when someone watches (the runner's console, JupyterLab)
    watching = progress.watch_dask()
    return ComputeSession(settings["scheduler"], chunks=chunks, n_workers=workers,
                          _config=config, _watching=watching)


@contextlib.contextmanager
def compute_context(compute: Mapping[str, Any], *,
                    timeout_s: float = 10.0) -> Iterator[ComputeSession]:
    """:func:`start` as a context manager: everything is closed on exit.

    Examples
    --------
    >>> with compute_context({"scheduler": "synchronous", "address": None, "n_workers": 1,
    ...                       "memory_limit": "1GB", "chunk_px": 64}) as session:
    ...     session.chunks
    {'y': 64, 'x': 64}
    """
    session = start(compute, timeout_s=timeout_s)
    try:
        yield session
    finally:
        session.close()


def chunked(
    obj: xr.Dataset | xr.DataArray,
    compute: Mapping[str, Any],
    *,
    time: Literal["whole", "single"] = "whole",
    dim: str = "year",
) -> xr.Dataset | xr.DataArray:
    """Re-chunk a cube for a stage: ``chunk_px`` squares in space, time as asked.

    Parameters
    ----------
    obj : xarray.Dataset or DataArray
        NumPy- or dask-backed, with ``y``/``x`` (and optionally ``dim``) dimensions.
    compute : mapping
        The ``compute:`` parameters (``chunk_px`` in pixels).
    time : {"whole", "single"}, keyword-only
        ``whole``: the time dimension in one chunk (per-pixel time series: trends, Hurst);
        ``single``: one time step per chunk (per-year maps, LISA, Moran).
    dim : str, keyword-only
        The time dimension.

    Returns
    -------
    same type as ``obj``
        Dask-backed, lazily re-chunked (a new object; the input is untouched).

    Raises
    ------
    ParameterError
        Bad ``compute`` values or ``time``.
    """
    settings = validate_compute(compute)
    if time not in ("whole", "single"):
        raise ParameterError(f"time={time!r}: expected 'whole' (trends) or 'single' (maps)")
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        raise ParameterError(f"obj: expected an xarray Dataset or DataArray, "
                             f"got {type(obj).__name__}")
    edge = settings["chunk_px"]
    wanted = {"y": edge, "x": edge, dim: -1 if time == "whole" else 1}
    return obj.chunk({d: c for d, c in wanted.items() if d in obj.dims})


def _connect(address: str, timeout_s: float) -> Any:
    from distributed import Client

    try:
        return Client(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ParameterError(
            f"compute.address={address!r}: no dask scheduler answered within {timeout_s:g} s "
            f"({type(exc).__name__}: {exc}); start one (`dask scheduler` and `dask worker "
            f"{address}`) or set compute.address: null to compute on this machine"
        ) from exc


def _dashboard(client: Any) -> str | None:
    try:
        return client.dashboard_link if _has_bokeh() else None
    except (KeyError, AttributeError):
        return None


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None
