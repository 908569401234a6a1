"""Test helpers shared by the test modules (import as ``from helpers import …``).

* :func:`assert_complete_stage` — a finished stage folder against its declared spec
  (InVEST's ``assert_complete_execute`` pattern): every required output written, every
  written output declared, at its declared path, with the declared units, and every data
  variable of a dataset output carrying ``units``.
* :func:`write_placeholder_outputs` — placeholder files for a stage's required outputs, for
  tests of the manifest machinery that need a "complete" stage without running it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from terracarbon.pipeline import stages
from terracarbon.pipeline.stage_specs import STAGES


def assert_complete_stage(run_dir: str | os.PathLike, stage_id: str, *,
                          check_datasets: bool = True) -> dict:
    """Assert that ``run_dir/stage_id`` holds a complete stage matching its spec; its manifest."""
    run_dir = Path(run_dir)
    spec = STAGES[stage_id]
    manifest = json.loads((run_dir / stage_id / "manifest.json").read_text())
    assert manifest["status"] == "complete", f"{stage_id}: status {manifest['status']}"
    written = manifest["outputs"]
    missing = [o.id for o in spec.outputs if o.required and o.id not in written]
    assert not missing, f"{stage_id}: required outputs not written: {missing}"
    for output_id, entry in written.items():
        out = spec.output(output_id)  # KeyError: an undeclared output
        path = run_dir / entry["path"]
        assert path.exists(), f"{stage_id}:{output_id} listed but missing at {path}"
        inside = Path(entry["path"]).relative_to(stage_id).as_posix()
        assert out.matches(inside), f"{stage_id}:{output_id} at {inside}, declared {out.path}"
        assert entry["units"] == out.units, (stage_id, output_id, entry["units"])
        if check_datasets and out.kind == "dataset":
            from terracarbon.data.io import open_cube

            ds = open_cube(path)
            no_units = [v for v in ds.data_vars if "units" not in ds[v].attrs]
            assert not no_units, f"{stage_id}:{output_id}: variables without units {no_units}"
        if out.kind == "folder":
            assert path.is_dir(), f"{stage_id}:{output_id} is not a folder"
    return manifest


def write_placeholder_outputs(ctx: stages.StageContext, payload: str = "x") -> None:
    """Write a small file (a folder with one file for folders) at every required output."""
    for out in ctx.spec.outputs:
        if not out.required:
            continue
        path = ctx.path_of(out.id)
        if out.kind in ("folder", "dataset"):
            path.mkdir(parents=True, exist_ok=True)
            (path / "placeholder.txt").write_text(payload)
        else:
            path.write_text(payload)
        ctx.record(out.id, path)
