"""Run folders, stage contexts and manifests.

A run lives in ``runs/<name>/``; stage ``NN_id`` writes into ``runs/<name>/NN_id/``: its
artifacts, the executed notebook, its HTML and ``manifest.json``. A stage reads earlier stages
only through their manifests' ``outputs`` (by id), never by globbing paths.

Manifest fields: ``stage``, ``status`` (``running``/``complete``/``failed``/``interrupted``),
``started``, ``finished``, ``duration_s``, ``params`` (the sections the stage uses),
``params_hash``, ``upstream`` (``{stage: stage_hash}``), ``inputs`` (``{input file:
fingerprint}``), ``stage_hash`` (params hash + upstream hashes + input fingerprints: what a
rerun compares), ``outputs`` (``{id: {path, units, description}}``, paths relative to the run
folder), ``headlines`` (``{key: {value, units, text}}``), ``provenance`` (git commit, dirty
flag, package versions) and, added by the runner, ``notebook``, ``report``, ``error``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terracarbon.errors import StageError
from terracarbon.data.io import write_json
from terracarbon.pipeline.provenance import provenance
from terracarbon.pipeline.fingerprints import fingerprints_hash, input_fingerprints
from terracarbon.pipeline.params import validate_section
from terracarbon.pipeline.stage_specs import SERIES_SOURCES, STAGES, OutputSpec, StageSpec

log = logging.getLogger(__name__)


MANIFEST = "manifest.json"
def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


UNHASHED = {
    "study": ("stages",),
    # where and how parallel the work runs, never what it computes (fits are deterministic
    # per process; dask results do not depend on the scheduler). chunk_px stays hashed:
    # float32 sums may change in the last digit with the chunking.
    "compute": ("scheduler", "address", "n_workers", "memory_limit"),
    "models": ("n_jobs",),
}
"""Keys that choose which stages run, or where, but do not change any stage's result."""


def params_hash(sections: Mapping[str, Any]) -> str:
    """SHA-256 (16 hex digits) of the parameter sections, order-independent.

    Keys in :data:`UNHASHED` (``study.stages``, the scheduler, the number of processes) are
    left out, so running a subset of the stages, or running on a cluster, does not
    invalidate the others.
    """
    hashed = {name: ({k: v for k, v in values.items() if k not in UNHASHED.get(name, ())}
                     if isinstance(values, Mapping) else values)
              for name, values in sections.items()}
    blob = json.dumps(hashed, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stage_hash(p_hash: str, upstream: Mapping[str, str],
               inputs: Mapping[str, str] | None = None) -> str:
    """Combine a stage's parameter hash, its upstream stages' hashes and its input files'
    fingerprints (:mod:`terracarbon.pipeline.fingerprints`; none for the synthetic study)."""
    record: dict[str, Any] = {"params": p_hash, "upstream": dict(sorted(upstream.items()))}
    if inputs:
        record["inputs"] = fingerprints_hash(inputs)
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()[:16]


def expected_stage_hash(run_dir: str | os.PathLike, stage_id: str,
                        sections: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The hash a run of ``stage_id`` with ``sections`` would record, and its input fingerprints.

    The runner compares it with the manifest to decide whether the stage is up to date.
    """
    inputs = input_fingerprints(sections)
    return stage_hash(params_hash(sections), upstream_hashes(run_dir, stage_id), inputs), inputs


def read_manifest(stage_dir: str | os.PathLike) -> dict | None:
    """The stage's manifest, or None when there is none (or it is unreadable)."""
    path = Path(stage_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 (16 hex digits) of a file's bytes (e.g. the stage notebook's source)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def is_up_to_date(run_dir: str | os.PathLike, stage_id: str, expected_hash: str, *,
                  source_hash: str | None = None) -> bool:
    """True when the stage completed with ``expected_hash`` and all its outputs exist.

    With ``source_hash`` the stage notebook recorded by the runner must also be unchanged.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir / stage_id)
    if not manifest or manifest.get("status") != "complete":
        return False
    if manifest.get("stage_hash") != expected_hash:
        return False
    if source_hash is not None and manifest.get("source_hash") != source_hash:
        return False
    outputs = manifest.get("outputs", {})
    return all((run_dir / out["path"]).exists() for out in outputs.values())


def upstream_hashes(run_dir: str | os.PathLike, stage_id: str) -> dict[str, str]:
    """``{upstream stage: stage_hash}``; StageError when an upstream is missing or incomplete."""
    run_dir = Path(run_dir)
    hashes = {}
    spec = STAGES[stage_id]
    for up in spec.optional_upstream:
        manifest = read_manifest(run_dir / up)
        if manifest and manifest.get("status") == "complete":
            hashes[up] = manifest["stage_hash"]
    for up in spec.upstream:
        manifest = read_manifest(run_dir / up)
        if not manifest or manifest.get("status") != "complete":
            state = manifest.get("status") if manifest else "missing"
            raise StageError(
                f"{stage_id} needs stage {up} in {run_dir}, but its manifest is {state}; "
                f"run it first (python run_all.py --params ... --from {up})."
            )
        hashes[up] = manifest["stage_hash"]
    return hashes


@dataclass
class StageContext:
    """What a running stage notebook knows: where to read, where to write, its parameters."""

    run_dir: Path
    stage_id: str
    params: dict
    upstream: dict[str, dict]
    params_hash: str
    stage_hash: str
    inputs: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    outputs: dict[str, dict] = field(default_factory=dict)
    headlines: dict[str, dict] = field(default_factory=dict)

    @property
    def stage_dir(self) -> Path:
        return self.run_dir / self.stage_id

    def path(self, name: str) -> Path:
        """A path inside this stage's folder (the folder is created)."""
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        return self.stage_dir / name

    def input(self, stage_id: str, output_id: str, *, required: bool = True) -> Path | None:
        """Resolve an upstream artifact by stage and output id (declared in the stage spec)."""
        if not any(i.stage == stage_id and i.output == output_id for i in self.spec.inputs):
            raise StageError(f"{self.stage_id}: reads {stage_id}/{output_id}, which its spec "
                             "does not declare as an input; add it to "
                             "terracarbon/pipeline/stage_specs.py")
        manifest = self.upstream.get(stage_id)
        if manifest is None:
            spec = STAGES[self.stage_id]
            if stage_id in spec.optional_upstream:
                raise StageError(f"{self.stage_id}: needs stage {stage_id}, which has not run in "
                                 f"{self.run_dir}; add it to study.stages")
            raise StageError(f"{self.stage_id}: {stage_id} is not an upstream stage of this one")
        out = manifest.get("outputs", {}).get(output_id)
        if out is None:
            if not required:
                return None
            raise StageError(
                f"{self.stage_id}: stage {stage_id} has no output {output_id!r} "
                f"(it has {sorted(manifest.get('outputs', {}))}); rerun {stage_id}."
            )
        path = self.run_dir / out["path"]
        if not path.exists():
            raise StageError(f"{self.stage_id}: {path} listed by {stage_id} is missing; rerun "
                             f"with --from {stage_id}.")
        return path

    def series(self, section: str) -> Any:
        """The annual series a trends-like stage analyses, as a ``(year, y, x)`` DataArray.

        ``section`` names the parameter section (``"trends"``, ``"zoning"``) whose
        ``source_stage`` (one of :data:`~terracarbon.pipeline.stage_specs.SERIES_SOURCES`)
        and ``variable`` say which variable of which earlier stage's annual dataset to read.
        Raises ParameterError naming ``<section>.variable`` when that dataset has no such
        variable, StageError when the source stage has not run.
        """
        from terracarbon.data.io import open_cube, select_variable

        settings = self.params[section]
        source = settings.get("source_stage", "03_carbon_maps")
        dataset = open_cube(self.input(source, SERIES_SOURCES[source]))
        return select_variable(dataset, settings["variable"], parameter=f"{section}.variable",
                               source=source)

    def upstream_units(self, stage_id: str, output_id: str) -> str | None:
        return self.upstream[stage_id]["outputs"][output_id].get("units")

    @property
    def spec(self) -> StageSpec:
        return STAGES[self.stage_id]

    def path_of(self, output_id: str, *, suffix: str | None = None) -> Path:
        """Where declared output ``output_id`` lives (its parent folder is created).

        ``suffix`` picks the other container of a dataset (``".nc"`` for ``cube.zarr``).
        """
        out = self._declared(output_id)
        rel = out.path if suffix is None else out.path.rsplit(".", 1)[0] + suffix
        if not out.matches(rel):
            raise StageError(f"{self.stage_id}: output {output_id!r} cannot be written as {rel!r}")
        path = self.stage_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _declared(self, output_id: str) -> OutputSpec:
        try:
            return self.spec.output(output_id)
        except KeyError as err:
            raise StageError(f"{err.args[0]}; declare it in "
                             "terracarbon/pipeline/stage_specs.py") from None

    def record(self, output_id: str, path: str | os.PathLike) -> Path:
        """Register an artifact already written (atomically) at its declared path."""
        out = self._declared(output_id)
        path = Path(path)
        if not path.exists():
            raise StageError(f"{self.stage_id}: output {output_id!r} at {path} was not written")
        inside = os.path.relpath(path, self.stage_dir)
        if not out.matches(inside.replace(os.sep, "/")):
            raise StageError(f"{self.stage_id}: output {output_id!r} written to {inside!r}, but "
                             f"stage_specs declares {out.path!r}")
        rel = os.path.relpath(path, self.run_dir)
        self.outputs[output_id] = {"path": rel, "units": out.units,
                                   "description": out.description}
        return path

    def save(self, output_id: str, obj: Any = None) -> Path:
        """Write ``obj`` as declared output ``output_id`` (atomically) and record it.

        By the output's kind: ``table`` a DataFrame (CSV), ``json`` a mapping, ``vector`` a
        GeoDataFrame (GeoJSON), ``dataset`` an xarray Dataset (Zarr or NetCDF by the declared
        suffix). A path (or None for a ``folder``) records what is already written there.
        """
        from terracarbon.data import io

        out = self._declared(output_id)
        if obj is None or isinstance(obj, (str, os.PathLike)):
            return self.record(output_id, self.path_of(output_id) if obj is None else obj)
        path = self.path_of(output_id)
        if out.kind == "table":
            written = io.write_table(obj, path, index=out.index)
        elif out.kind == "json":
            written = io.write_json(obj, path)
        elif out.kind == "vector":
            written = io.write_vector(obj, path)
        elif out.kind == "dataset":
            written = io.write_cube(obj, path)
        else:
            raise StageError(f"{self.stage_id}: output {output_id!r} is a {out.kind}; write it "
                             "to ctx.path_of(...) and pass the path")
        return self.record(output_id, written)

    def headline(self, key: str, value: Any, *, units: str = "", text: str = "",
                 interval: tuple[float, float] | None = None, caveat: str = "") -> None:
        """A headline number shown on the run's index page, with its interval
        (``[lower, upper]`` in the same units) and a caveat in words where one applies."""
        entry = {"value": value, "units": units, "text": text}
        if interval is not None:
            entry["interval"] = [float(interval[0]), float(interval[1])]
        if caveat:
            entry["caveat"] = caveat
        self.headlines[key] = entry


def open_stage(
    run_dir: str | os.PathLike,
    stage_id: str,
    *,
    params: Mapping[str, Mapping],
) -> StageContext:
    """Start a stage: validate its parameter sections and upstream manifests.

    Parameters
    ----------
    run_dir : path
        The run folder (``runs/<name>``).
    stage_id : str
        One of :data:`STAGES`.
    params : mapping
        ``{section: values}`` for the sections the stage uses (the notebook's parameters).

    Raises
    ------
    StageError
        Unknown stage, missing or incomplete upstream stage.
    ParameterError
        A parameter section is missing or invalid.
    """
    if stage_id not in STAGES:
        raise StageError(f"unknown stage {stage_id!r}; known: {list(STAGES)}")
    spec = STAGES[stage_id]
    run_dir = Path(run_dir).resolve()
    missing = [s for s in spec.sections if s not in params]
    if missing:
        raise StageError(f"{stage_id}: parameter sections {missing} not given to open_stage")
    for name in spec.sections:
        validate_section(name, params[name])
    sections = {name: params[name] for name in spec.sections}
    up_hashes = upstream_hashes(run_dir, stage_id)
    p_hash = params_hash(sections)
    inputs = input_fingerprints(sections)
    ctx = StageContext(
        run_dir=run_dir,
        stage_id=stage_id,
        params=dict(sections),
        upstream={up: read_manifest(run_dir / up) or {} for up in up_hashes},
        params_hash=p_hash,
        stage_hash=stage_hash(p_hash, up_hashes, inputs),
        inputs=inputs,
    )
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    _write_manifest(ctx, status="running")
    return ctx


def _write_manifest(ctx: StageContext, *, status: str, **extra: Any) -> Path:
    previous = read_manifest(ctx.stage_dir) or {}
    manifest = {
        "stage": ctx.stage_id,
        "title": STAGES[ctx.stage_id].title,
        "status": status,
        "started": previous.get("started") if status != "running" else _now(),
        "finished": _now() if status != "running" else None,
        "duration_s": round(time.time() - ctx.started, 2),
        "params": ctx.params,
        "params_hash": ctx.params_hash,
        "upstream": {up: m.get("stage_hash") for up, m in ctx.upstream.items()},
        "stage_hash": ctx.stage_hash,
        "inputs": ctx.inputs,
        "outputs": ctx.outputs,
        "headlines": ctx.headlines,
        "provenance": provenance() if status != "running" else previous.get("provenance"),
        **extra,
    }
    return write_json(manifest, ctx.stage_dir / MANIFEST)


def finish_stage(ctx: StageContext, **artifacts: Any) -> Path:
    """Save ``artifacts`` (``output_id=object``, see :meth:`StageContext.save`; None values
    are outputs this run does not create), check the stage wrote every output its spec
    requires, and mark it complete.
    """
    for output_id, obj in artifacts.items():
        if obj is not None:
            ctx.save(output_id, obj)
    missing = [o.id for o in ctx.spec.outputs if o.required and o.id not in ctx.outputs]
    if missing:
        raise StageError(f"{ctx.stage_id}: required outputs {missing} were not written; "
                         "see terracarbon/pipeline/stage_specs.py")
    return _write_manifest(ctx, status="complete")


def update_manifest(stage_dir: str | os.PathLike, **fields: Any) -> None:
    """Add runner fields (notebook, report, error, status) to an existing manifest."""
    manifest = read_manifest(stage_dir) or {"stage": Path(stage_dir).name}
    manifest.update(fields)
    write_json(manifest, Path(stage_dir) / MANIFEST)
