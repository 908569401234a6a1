"""The conda environment, the pip lock and pyproject stay in step."""

from __future__ import annotations

import re

import yaml

from terracarbon.pipeline.params import REPO_ROOT


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_lock() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.strip()
    return pins


def test_environment_yml_matches_requirements():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    lock = pip_lock()
    mismatches = []
    for dep in env["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            entry = entry.split("#")[0].strip()
            match = re.match(r"^([A-Za-z0-9_.\-]+)\s*=+\s*([^\s]+)$", entry)
            if not match or match.group(1) == "python":
                continue
            name, version = normalise(match.group(1)), match.group(2)
            locked = lock.get(name)
            # conda-forge may spell a pip post-release differently (1.7.5.1 vs 1.7.5.1.post1)
            if locked is None or not locked.startswith(version):
                mismatches.append(f"{name}: environment.yml {version}, requirements.txt {locked}")
    assert not mismatches, "\n".join(mismatches)


def test_torch_pinned_to_cpu_wheel_everywhere():
    assert pip_lock()["torch"] == "2.13.0"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject


def test_notebooks_stored_without_outputs():
    import nbformat

    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        dirty = [i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.name}: cells {dirty} have outputs; strip them before committing"
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "\ndef " not in "\n" + code and "\nclass " not in "\n" + code, \
            f"{path.name} defines functions/classes; move them into lib/terracarbon"


def test_every_tc_name_a_notebook_uses_is_public():
    """Notebooks reach the library as ``tc.<name>``: each name must be in PUBLIC_MODULES
    (a name missing there fails only when the notebook runs)."""
    import re

    import terracarbon as tc
    from terracarbon.pipeline.params import REPO_ROOT

    used = set()
    for nb in (REPO_ROOT / "notebooks").glob("*.ipynb"):
        used |= set(re.findall(r"\btc\.([a-z_]+)", nb.read_text()))
    assert used and used <= set(tc.PUBLIC_MODULES), sorted(used - set(tc.PUBLIC_MODULES))
    for name in used:
        assert getattr(tc, name).__name__.startswith("terracarbon")
