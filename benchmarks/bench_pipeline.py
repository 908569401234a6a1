"""End-to-end benchmark: wall time and peak memory of a whole study, per stage.

Runs ``run_all.py --params <study> --force`` into a temporary runs folder while sampling the
resident memory (RSS) of the whole process tree — the runner, every papermill kernel and any
dask worker it starts — every 0.2 s. Prints per stage: wall time (from the manifests) and
peak RSS of the runner and that stage's own kernel tree while it ran (the next stage's
kernel, started beside it, is counted in the end-to-end peak only), then the end-to-end
figures and the cost per pixel.

Targets on the 2-core, 24 GB reference machine: the default study end to end <= 10 min;
``params/guangdong_scale.yaml`` completes with peak memory <= 8 GB.

Run: ``.venv/bin/python benchmarks/bench_pipeline.py --params params/quick.yaml
[--runs-dir DIR] [--keep] [--from STAGE | --only STAGE]`` (``--from``: rerun the later stages
of a kept run folder; the stages before it are reported from their manifests; ``--only``: one
stage, e.g. data prep alone). ``--cells N`` also prints the N cells of each stage with the
highest peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from terracarbon.pipeline.params import DEFAULT_PARAMS, load_params  # noqa: E402
from terracarbon.pipeline.runner import KERNEL_LOG  # noqa: E402
from terracarbon.pipeline.stages import read_manifest  # noqa: E402


def rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def kernel_stage(kernel: psutil.Process, run_dir: Path) -> str | None:
    """The stage a kernel runs or was started for: the stage folder of the log it writes
    (``kernel.log``, or a kernel started ahead: ``.kernel.log.tmp-*``)."""
    try:
        for f in kernel.open_files():
            path = Path(f.path)
            if path.name.startswith((f".{KERNEL_LOG}", KERNEL_LOG)) and \
                    path.parent.parent == run_dir:
                return path.parent.name
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return None


def tree_rss(root: psutil.Process, run_dir: Path) -> tuple[int, list[tuple[str | None, int]]]:
    """Bytes resident in ``root`` itself, and in each child's subtree as (the stage it runs,
    bytes): the runner's children are the stage kernels (processes vanish while we look)."""
    subtrees = []
    try:
        children = root.children()
    except psutil.NoSuchProcess:
        return 0, []
    for child in children:
        try:
            members = [child, *child.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        subtrees.append((kernel_stage(child, run_dir), sum(rss(p) for p in members)))
    return rss(root), subtrees


class Sampler(threading.Thread):
    """Samples the tree's RSS every ``interval`` s; remembers (time, runner bytes, [(kernel
    stage, kernel subtree bytes)]) triples."""

    def __init__(self, root: psutil.Process, run_dir: Path, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.run_dir, self.interval = root, run_dir, interval
        self.samples: list[tuple[float, int, list[tuple[str | None, int]]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), *tree_rss(self.root, self.run_dir)))
            self.stop.wait(self.interval)

    def peak(self, start: float = 0.0, end: float = float("inf"), *,
             stage: str | None = None) -> int:
        """Highest tree RSS between ``start`` and ``end``. With ``stage``, only the runner and
        that stage's kernel count: the previous stage's kernel exits while the stage starts
        (runner.KernelExits), and the next stage's kernel boots beside it
        (runner.KernelsAhead); neither is the stage's own memory."""
        inside = [runner + sum(b for owner, b in kernels if stage is None or owner == stage)
                  for t, runner, kernels in self.samples if start <= t <= end]
        return max(inside, default=0)


def cell_peaks(notebook: Path, sampler: "Sampler", *, stage: str | None = None) -> list[dict]:
    """Wall time and peak tree RSS of each executed cell, highest peak first (the stage's
    own kernel: see :meth:`Sampler.peak`)."""
    if not notebook.exists():
        return []
    cells = []
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        meta = cell.get("metadata", {}).get("papermill", {})
        if cell["cell_type"] != "code" or not meta.get("start_time") or not meta.get("end_time"):
            continue
        start, end = iso_to_epoch(meta["start_time"]), iso_to_epoch(meta["end_time"])
        first_line = "".join(cell["source"]).strip().splitlines()[0][:70]
        cells.append({"index": index, "wall_s": round(end - start, 1),
                      "peak_rss_gib": round(sampler.peak(
                          start, end, stage=stage) / 1024**3, 2),
                      "source": first_line})
    return sorted(cells, key=lambda c: -c["peak_rss_gib"])


def iso_to_epoch(stamp: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(stamp).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="study YAML (default: params/default.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--runs-dir", default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary runs folder")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--from", dest="from_stage", default=None,
                       help="rerun from this stage on a kept run folder (--runs-dir)")
    which.add_argument("--only", dest="only_stage", default=None,
                       help="run only this stage (the earlier ones must be in --runs-dir, "
                            "except for the first stage)")
    parser.add_argument("--cells", type=int, default=0, metavar="N",
                        help="also print, per stage, the N notebook cells with the highest "
                             "peak RSS (from papermill's cell start/end times)")
    args = parser.parse_args(argv)

    params = load_params(args.params, args.overrides, defaults=DEFAULT_PARAMS)
    syn = params["synthetic"]
    n_pixels = syn["nx_pixels"] * syn["ny_pixels"] if syn["enabled"] else None
    n_years = syn["last_year"] - syn["first_year"] + 1 if syn["enabled"] else None
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="tc_bench_"))
    cmd = [sys.executable, str(REPO / "run_all.py"), "--force", "--runs-dir", str(runs_dir)]
    if args.params:
        cmd += ["--params", args.params]
    if args.from_stage:
        if not args.runs_dir:
            parser.error("--from needs the --runs-dir of a kept run")
        cmd += ["--from", args.from_stage]
    if args.only_stage:
        cmd += ["--only", args.only_stage]
    for item in args.overrides:
        cmd += ["--set", item]

    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    run_dir = runs_dir / params["study"]["name"]
    sampler = Sampler(psutil.Process(proc.pid), run_dir.resolve())
    sampler.start()
    for line in proc.stdout:  # echo the runner's progress lines
        if not line.startswith("[IPKernelApp]") and "Alternative text" not in line:
            print(line.rstrip(), flush=True)
    code = proc.wait()
    wall = time.time() - t0
    sampler.stop.set()
    sampler.join()

    gib = 1024**3
    figures = {"study": params["study"]["name"], "n_pixels": n_pixels, "n_years": n_years,
               "exit_code": code, "wall_s": round(wall, 1),
               "peak_rss_gib": round(sampler.peak() / gib, 2), "stages": {}}
    print(f"\nstudy {params['study']['name']}: {n_pixels} px x {n_years} years; "
          f"exit code {code}")
    print(f"{'stage':<18}{'wall s':>9}{'peak RSS GiB':>14}{'us/px':>9}")
    for stage_id in params["study"]["stages"]:
        manifest = read_manifest(run_dir / stage_id) or {}
        if not manifest.get("started"):
            continue
        start = iso_to_epoch(manifest["started"])
        duration = float(manifest.get("duration_s") or 0.0)
        # the manifest's start is stamped inside the kernel: include its launch (~2 s)
        peak = sampler.peak(start - 3.0, start + duration + 1.0, stage=stage_id)
        per_px = 1e6 * duration / n_pixels if n_pixels else float("nan")
        figures["stages"][stage_id] = {"wall_s": duration, "peak_rss_gib": round(peak / gib, 2),
                                       "status": manifest.get("status")}
        print(f"{stage_id:<18}{duration:>9.1f}{peak / gib:>14.2f}{per_px:>9.1f}")
        if args.cells:
            cells = cell_peaks(run_dir / stage_id / f"{stage_id}.ipynb", sampler,
                               stage=stage_id)
            figures["stages"][stage_id]["cells"] = cells[: args.cells]
            for cell in cells[: args.cells]:
                print(f"    cell {cell['index']:>3}: {cell['wall_s']:>8.1f} s "
                      f"{cell['peak_rss_gib']:>6.2f} GiB  {cell['source']}")
    per_px = 1e6 * wall / n_pixels if n_pixels else float("nan")
    print(f"{'end to end':<18}{wall:>9.1f}{sampler.peak() / gib:>14.2f}{per_px:>9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if not args.keep and args.runs_dir is None:
        import shutil

        shutil.rmtree(runs_dir, ignore_errors=True)
    else:
        print(f"run folder: {run_dir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
