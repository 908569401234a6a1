"""Study parameters: load, layer, validate.

A study is described by YAML. Parameters are layered ``default <- study file <- overrides``
(``--set trends.alpha=0.01`` on the command line). ``params/default.yaml`` is the schema: a
key that is not in it is unknown, and a key's type is the type of its default value unless
:data:`RULES` says more (ranges, choices, nullable). :func:`validate` collects *every*
problem and raises one :class:`~terracarbon.errors.ParameterError` listing them all.

Sections whose sub-keys are free (``data.layers``: one entry per user layer) are listed in
:data:`OPEN_SECTIONS` and checked by dedicated rules instead.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from terracarbon.conventions import CARBON_POOLS
from terracarbon.errors import ParameterError
from terracarbon.models.estimators import FAMILIES
from terracarbon.models.registry import MODEL_NAMES
from terracarbon.pipeline.runfolder import SLUG
from terracarbon.pipeline.stage_specs import SERIES_SOURCES, STAGE_IDS

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PARAMS = REPO_ROOT / "params" / "default.yaml"


@dataclass(frozen=True)
class Rule:
    """Constraints on one parameter beyond the type of its default."""

    types: tuple[type, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    items: tuple[type, ...] | None = None
    item_choices: tuple[Any, ...] | None = None



NUM = (int, float)

RULES: dict[str, Rule] = {
    "study.name": Rule(types=(str,)),
    "study.seed": Rule(types=(int,), minimum=0),
    "study.stages": Rule(items=(str,), item_choices=STAGE_IDS),
    "study.region_code": Rule(types=(str,)),
    "synthetic.nx_pixels": Rule(types=(int,), minimum=10, maximum=20000),
    "synthetic.ny_pixels": Rule(types=(int,), minimum=10, maximum=20000),
    "synthetic.pixel_size_m": Rule(types=NUM, minimum=1),
    "synthetic.first_year": Rule(types=(int,), minimum=1900, maximum=2100),
    "synthetic.last_year": Rule(types=(int,), minimum=1900, maximum=2100),
    "synthetic.n_veg_plots": Rule(types=(int,), minimum=0),
    "synthetic.n_soil_plots": Rule(types=(int,), minimum=0),
    "synthetic.plot_years": Rule(items=(int,)),
    "synthetic.revisit_share": Rule(types=NUM, minimum=0.0, maximum=1.0),
    "synthetic.origin_m": Rule(items=NUM, nullable=True),
    "synthetic.region_share": Rule(types=NUM, minimum=0.25, maximum=0.95),
    "synthetic.generation": Rule(choices=("auto", "in_memory", "streaming")),
    "grid.crs": Rule(types=(str,), nullable=True),
    "grid.pixel_size_m": Rule(types=NUM, minimum=0, nullable=True),
    "grid.bounds_m": Rule(items=NUM, nullable=True),
    "data.boundary": Rule(types=(str,), nullable=True),
    "data.boundary_filter": Rule(types=(dict,), nullable=True),
    "data.years": Rule(items=(int,), nullable=True),
    "data.plots": Rule(types=(dict,), nullable=True),
    "data.monthly_layers": Rule(types=(dict,)),
    "data.towers": Rule(types=(dict,), nullable=True),
    "synthetic.flux": Rule(types=(bool,)),
    "synthetic.n_towers": Rule(types=(int,), minimum=2, maximum=1000),
    "synthetic.landcover_scheme": Rule(choices=("terracarbon", "glc_fcs30", "glc_fcs30d")),
    "landcover": Rule(types=(dict,), nullable=True),  # its keys: landcover.landcover_problems
    "flux.targets": Rule(items=(str,), item_choices=("nee", "gpp", "reco")),
    "flux.candidates": Rule(items=(str,), item_choices=FAMILIES),
    "flux.features": Rule(items=(str,)),
    "flux.categorical": Rule(items=(str,), item_choices=("landuse", "igbp")),
    "flux.covariates": Rule(choices=("cube", "tower")),
    "flux.cv_folds": Rule(types=(int,), minimum=2, maximum=100),
    "flux.schemes": Rule(items=(str,), item_choices=("random", "site", "year")),
    "flux.choose_by": Rule(choices=("site", "year", "random")),
    "flux.map": Rule(types=(bool,)),
    "flux.ensemble_members": Rule(types=(int,), minimum=0, maximum=200),
    "flux.interval": Rule(types=NUM, minimum=0.5, maximum=0.99),
    "flux.npp_layer": Rule(types=(str,), nullable=True),
    "flux.temperature_layer": Rule(types=(str,), nullable=True),
    "flux.precipitation_layer": Rule(types=(str,), nullable=True),
    "prep.outlier_sigma": Rule(types=NUM, minimum=0.5, maximum=10),
    "prep.outlier_by": Rule(choices=(None, "landuse"), nullable=True),
    "prep.augment_per_site": Rule(types=(int,), minimum=0, maximum=100),
    "prep.corr_threshold": Rule(types=NUM, minimum=0, maximum=1),
    "prep.vif_threshold": Rule(types=NUM, minimum=1),
    "prep.cube_format": Rule(choices=("zarr", "netcdf")),
    "prep.composite_window": Rule(types=(int,), minimum=1, maximum=15),
    "prep.composite_variables": Rule(items=(str,), nullable=True),
    "models.candidates": Rule(items=(str,), item_choices=MODEL_NAMES),
    "models.cv_folds": Rule(types=(int,), minimum=2, maximum=100),
    "models.cv_folds_deep": Rule(types=(int,), minimum=2, maximum=100),
    "models.cv_schemes_deep": Rule(items=(str,), item_choices=("random", "spatial_block")),
    "models.cv_block_size_m": Rule(types=NUM, minimum=1),
    "models.rf.n_estimators": Rule(types=(int,), minimum=1),
    "models.rf.max_depth": Rule(types=(int,), minimum=1, nullable=True),
    "models.rf.min_samples_leaf": Rule(types=(int,), minimum=1),
    "models.cnn.patch_size_px": Rule(types=(int,), minimum=3),
    "models.cnn.learning_rate": Rule(types=NUM, minimum=1e-9, maximum=1),
    "models.cnn.weight_decay": Rule(types=NUM, minimum=0, maximum=1),
    "models.cnn.max_epochs": Rule(types=(int,), minimum=1),
    "models.cnn.patience": Rule(types=(int,), minimum=1),
    "models.cnn.batch_size": Rule(types=(int,), minimum=1),
    "models.cnn_tcn.sequence_years": Rule(types=(int,), minimum=2),
    "models.cnn_tcn.max_epochs": Rule(types=(int,), minimum=1),
    "models.holdout": Rule(choices=("10pct", "7:2:1")),
    "maps.interval": Rule(types=NUM, minimum=0.5, maximum=0.99),
    "models.n_jobs": Rule(types=(int,), minimum=0),
    "models.ensemble_members": Rule(types=(int,), minimum=0, maximum=500),
    "models.ensemble_networks": Rule(types=(bool,)),
    "models.ensemble_member_trees": Rule(types=(int,), minimum=1, nullable=True),
    "maps.model": Rule(choices=("best",) + MODEL_NAMES),
    "maps.interval_method": Rule(choices=("ensemble", "correlated", "independent")),
    "maps.lookup_table": Rule(types=(str,), nullable=True),
    "maps.plot_measurement_error.veg": Rule(types=NUM, minimum=0, maximum=1),
    "maps.plot_measurement_error.soil": Rule(types=NUM, minimum=0, maximum=1),
    "trends.alpha": Rule(types=NUM, minimum=1e-6, maximum=0.5),
    "trends.min_valid_years": Rule(types=(int,), minimum=3),
    "trends.method": Rule(choices=("original", "hamed_rao", "yue_wang", "tfpw")),
    "trends.hurst_correction": Rule(choices=(None, "anis_lloyd"), nullable=True),
    "trends.source_stage": Rule(choices=tuple(SERIES_SOURCES)),
    "zoning.source_stage": Rule(choices=tuple(SERIES_SOURCES)),
    "zoning.contiguity": Rule(choices=("queen", "rook")),
    "zoning.persistence": Rule(choices=("last_year", "persistent")),
    "zoning.permutations": Rule(types=(int,), minimum=0, maximum=99999),
    "zoning.alpha": Rule(types=NUM, minimum=1e-6, maximum=0.5),
    "compute.scheduler": Rule(choices=("threads", "processes", "distributed", "synchronous")),
    "compute.address": Rule(types=(str,), nullable=True),
    "compute.n_workers": Rule(types=(int,), minimum=1),
    "compute.chunk_px": Rule(types=(int,), minimum=16),
    "compute.memory_limit": Rule(types=(str, int)),
}

OPEN_SECTIONS = ("data.layers", "data.boundary_filter", "data.plots", "data.monthly_layers",
                 "data.towers", "pools", "landcover")


@dataclass
class Problems:
    """Collects validation problems so one error can list them all."""

    items: list[str] = field(default_factory=list)

    def add(self, key: str, message: str) -> None:
        self.items.append(f"  - {key}: {message}")

    def raise_if_any(self, source: str) -> None:
        if self.items:
            header = f"{len(self.items)} problem(s) in the parameters ({source}):"
            raise ParameterError("\n".join([header, *self.items]))


def read_yaml(path: str | os.PathLike) -> dict:
    """Read one YAML mapping; a clear :class:`ParameterError` when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: parameter file not found; pass an existing YAML file.")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML ({exc}); fix the syntax.") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ParameterError(f"{path}: expected a mapping of sections, got "
                             f"{type(loaded).__name__}; write it as sections (study:, grid:, "
                             "data:, ...) as in params/quick.yaml.")
    return loaded


def deep_merge(base: Mapping, update: Mapping, *, _prefix: str = "") -> dict:
    """Return ``base`` updated recursively by ``update`` (neither is modified).

    Mappings merge key by key (an empty mapping, ``study: {}``, changes nothing); any other
    value (lists included) replaces the old one. Free-form sections (:data:`OPEN_SECTIONS`,
    e.g. ``data.layers``) are replaced whole when ``update`` gives them, so a real-data study
    does not inherit layers it did not list.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        dotted = f"{_prefix}{key}"
        if (isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
                and dotted not in OPEN_SECTIONS):
            merged[key] = deep_merge(merged[key], value, _prefix=dotted + ".")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value`` (value in YAML syntax) into a key path and a value."""
    if "=" not in text:
        raise ParameterError(
            f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. trends.alpha=0.01"
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ParameterError(f"--set {text!r}: the key {key!r} is not a dotted key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ParameterError(f"--set {text!r}: value is not valid YAML ({exc})") from exc
    return key.split("."), value


def apply_overrides(params: Mapping, overrides: Iterable[str]) -> dict:
    """Apply ``KEY=VALUE`` overrides (dotted keys) to a copy of ``params``."""
    result = copy.deepcopy(dict(params))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return result


def load_params(
    study: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    *,
    defaults: str | os.PathLike = DEFAULT_PARAMS,
    validate_files: bool = True,
) -> dict:
    """Load the layered parameters of a study and validate them.

    Parameters
    ----------
    study : path, optional
        A study YAML (e.g. ``params/quick.yaml``); relative input paths in its ``data``
        section are resolved against the folder that holds it.
    overrides : iterable of str
        ``section.key=value`` strings (YAML values), applied last.
    defaults : path
        The defaults file that is also the schema (``params/default.yaml``).
    validate_files : bool
        Also check that input files named in ``data`` exist and the plots CSV has its columns.

    Returns
    -------
    dict
        The resolved parameters (plain YAML types), with ``_meta.sources`` recording the
        files used.

    Raises
    ------
    ParameterError
        Listing every problem found (unknown key, wrong type, out of range, missing file).
    """
    schema = read_yaml(defaults)
    params = copy.deepcopy(schema)
    sources = [str(Path(defaults))]
    if study is not None:
        study_path = Path(study)
        study_params = read_yaml(study_path)
        if not study_params:
            raise ParameterError(
                f"{study_path}: the study file is empty. To run the built-in synthetic study, "
                "run without --params; for your own data, describe it as in "
                "params/examples/china_agb_rf.yaml."
            )
        study_params = resolve_data_paths(study_params, study_path.parent)
        params = deep_merge(params, study_params)
        sources.append(str(study_path))
    params = apply_overrides(params, overrides)
    # paths given with --set are relative to where the command runs
    params = resolve_data_paths(params, Path.cwd())
    params = with_synthetic_scheme(params)  # landcover.scheme follows the synthetic raster's codes
    validate(params, schema, source=" <- ".join(sources), check_files=validate_files)
    params["_meta"] = {"sources": sources, "overrides": list(overrides)}
    return params


def resolve_data_paths(study: dict, base: Path) -> dict:
    """Make relative input paths (``data`` section, ``maps.lookup_table``) absolute, relative
    to ``base``."""
    study = copy.deepcopy(study)

    def absolute(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str((base / value).resolve())
        return value

    if isinstance(study.get("maps"), dict) and study["maps"].get("lookup_table"):
        study["maps"]["lookup_table"] = absolute(study["maps"]["lookup_table"])
    pools = study.get("pools")
    for spec in (pools.values() if isinstance(pools, dict) else ()):
        for key in ("table", "records"):  # a lookup table, paired root/shoot records
            if isinstance(spec, dict) and isinstance(spec.get(key), str):
                spec[key] = absolute(spec[key])
    data = study.get("data")
    if not isinstance(data, dict):
        return study
    if "boundary" in data:
        data["boundary"] = absolute(data["boundary"])
    layers = data.get("layers")
    for spec in (layers.values() if isinstance(layers, dict) else ()):
        if isinstance(spec, dict) and "path" in spec:
            spec["path"] = absolute(spec["path"])
        if isinstance(spec, dict) and isinstance(spec.get("stac"), str):
            from terracarbon.data.stac import is_url

            spec["stac"] = spec["stac"] if is_url(spec["stac"]) else absolute(spec["stac"])
    if isinstance(data.get("plots"), dict) and "path" in data["plots"]:
        data["plots"]["path"] = absolute(data["plots"]["path"])
    monthly = data.get("monthly_layers")
    for spec in (monthly.values() if isinstance(monthly, dict) else ()):
        for key in ("path", "pattern"):
            if isinstance(spec, dict) and key in spec:
                spec[key] = absolute(spec[key])
    towers = data.get("towers")
    for key in ("path", "sites_table"):
        if isinstance(towers, dict) and key in towers:
            towers[key] = absolute(towers[key])
    return study


def _type_name(types: tuple[type, ...]) -> str:
    if set(types) == {int, float}:
        return "number"
    return " or ".join(t.__name__ for t in types)


def _check_value(key: str, value: Any, default: Any, problems: Problems) -> None:
    rule = RULES.get(key, Rule())
    if value is None:
        if not (rule.nullable or default is None):
            problems.add(key, "is null but a value is required")
        return
    types = rule.types
    if types is None and rule.items is None and rule.choices is None and default is not None:
        types = NUM if isinstance(default, float) else (type(default),)
    if types is not None:
        # bool is an int subclass; never accept it where a number is expected
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            problems.add(
                key, f"expected {_type_name(types)}, got {type(value).__name__} {value!r}"
            )
            return
    if rule.choices is not None and value not in rule.choices:
        problems.add(key, f"got {value!r}; expected one of {list(rule.choices)}")
    if rule.minimum is not None and isinstance(value, NUM) and value < rule.minimum:
        problems.add(key, f"got {value!r}; must be >= {rule.minimum}")
    if rule.maximum is not None and isinstance(value, NUM) and value > rule.maximum:
        problems.add(key, f"got {value!r}; must be <= {rule.maximum}")
    if rule.items is not None:
        if not isinstance(value, list):
            problems.add(key, f"expected a list, got {type(value).__name__} {value!r}")
            return
        for item in value:
            bad_type = isinstance(item, bool) or not isinstance(item, rule.items)
            if bad_type:
                problems.add(key, f"list item {item!r} is not {_type_name(rule.items)}")
            elif rule.item_choices is not None and item not in rule.item_choices:
                problems.add(key, f"list item {item!r} is not one of {list(rule.item_choices)}")


def _walk(prefix: str, values: Mapping, schema: Mapping, problems: Problems) -> None:
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if dotted == "_meta":
            continue
        if key not in schema:
            close = [k for k in schema if k.startswith(str(key)[:3])]
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.add(dotted, f"unknown parameter (known: {sorted(schema)}){hint}")
            continue
        default = schema[key]
        if dotted in OPEN_SECTIONS:
            _check_value(dotted, value, default, problems)
            continue
        if isinstance(default, dict) and dotted not in RULES:
            if not isinstance(value, dict):
                problems.add(dotted, f"expected a section (mapping), got {value!r}")
            else:
                _walk(dotted + ".", value, default, problems)
        else:
            _check_value(dotted, value, default, problems)


from terracarbon.data.prep import LAYER_KEYS, REQUIRED_LAYER_KEYS  # noqa: E402  one definition
from terracarbon.carbon._common import check_pool_set  # noqa: E402
from terracarbon.data.survey import PLOT_KEYS, PLOT_KEYS_REQUIRED  # noqa: E402  one definition
from terracarbon.landcover.params import (  # noqa: E402
    landcover_problems,
    synthetic_scheme_problems,
    with_synthetic_scheme,
)

PATH_HINT = (" (a relative path in a study file is relative to that file's folder; given with "
             "--set, relative to the folder the command runs in)")
_PLOT_KEY_HELP = {
    "x_column": "name the CSV column of x / longitude",
    "y_column": "name the CSV column of y / latitude",
    "crs": "give the CRS of the plot coordinates, e.g. EPSG:4326 for lon/lat",
    "year_column": "name the CSV column holding the survey year",
}


def _csv_header(path: str, problems: Problems) -> list[str] | None:
    """The column names of a CSV, or None (with a problem named) when it cannot be read."""
    import pandas as pd

    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except pd.errors.EmptyDataError:
        problems.add("data.plots.path", f"{path} is empty (no header, no rows); give the "
                     "field-plot CSV, or set data.plots: null for a study without plots")
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        problems.add("data.plots.path", f"{path} is not a readable CSV ({type(exc).__name__}: "
                     f"{str(exc)[:120]}); save the plots as comma-separated UTF-8 text")
    return None


def _separator_hint(header: list[str]) -> str:
    if len(header) == 1:
        for sep in (";", "\t", "|"):
            if sep in header[0]:
                return (f"; the file looks separated by {sep!r}: save it comma-separated "
                        "(the decimal mark must be '.')")
    return ""


def _check_stages(stages: Any, problems: Problems) -> None:
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        return  # the schema check reports the type
    if not stages:
        problems.add("study.stages", f"is empty: nothing would run; list the stages to run, "
                     f"e.g. {list(STAGE_IDS)}")
        return
    twice = sorted({s for s in stages if stages.count(s) > 1})
    if twice:
        problems.add("study.stages", f"{twice} listed twice; list each stage once")
    known = [s for s in stages if s in STAGE_IDS]
    in_order = sorted(dict.fromkeys(known), key=STAGE_IDS.index)
    if not twice and known != in_order:
        problems.add("study.stages", f"{known} is not in pipeline order; list them as "
                     f"[{', '.join(in_order)}]")


def _check_misc(study: Mapping, models: Mapping, zoning: Mapping, compute: Mapping,
                problems: Problems) -> None:
    """Values whose type the schema checks but whose content it cannot."""
    import re

    region = study.get("region_code")
    if isinstance(region, str) and not re.fullmatch(r"[A-Za-z0-9_-]{1,16}", region):
        problems.add("study.region_code", f"got {region!r}; use 1-16 letters, digits, '_' or "
                     "'-' (it is part of exported file names, e.g. tcd_gd_21.tif)")
    patch = (models.get("cnn") or {}).get("patch_size_px") if isinstance(
        models.get("cnn"), Mapping) else None
    if isinstance(patch, int) and not isinstance(patch, bool) and patch % 2 == 0:
        problems.add("models.cnn.patch_size_px", f"= {patch}: use an odd number of pixels (the "
                     "patch is centred on the plot's pixel)")
    limit = compute.get("memory_limit")
    if isinstance(limit, (str, int)) and not isinstance(limit, bool):
        from dask.utils import parse_bytes

        try:
            ok = parse_bytes(limit) >= 2**20
        except (ValueError, TypeError):
            ok = False
        if not ok:
            problems.add("compute.memory_limit", f"got {limit!r}; give a size such as 4GB or "
                         "500MB (per worker)")
    _check_zoning_rules(zoning.get("rules"), problems)


def _check_flux_schemes(flux: Mapping, problems: Problems) -> None:
    """The choosing scheme must be one that runs (its R2 picks each target's family)."""
    schemes, choose_by = flux.get("schemes"), flux.get("choose_by")
    if isinstance(schemes, list) and not schemes:
        problems.add("flux.schemes", "is empty: list at least the choosing scheme "
                     f"(flux.choose_by: {choose_by})")
    elif isinstance(schemes, list) and isinstance(choose_by, str) and choose_by not in schemes:
        problems.add("flux.choose_by", f"= {choose_by!r} is not among flux.schemes {schemes}: "
                     "add it there or choose by one of them")


def _check_zoning_rules(rules: Any, problems: Problems) -> None:
    """The rules in the zoning stage's own grammar (:func:`terracarbon.spatial.rules.parse_rules`)."""
    if not isinstance(rules, list):
        return  # the schema check reports the type
    from terracarbon.spatial.rules import parse_rules

    example = "{cluster: HH, future: '*', zone: protect}"
    if not rules:
        problems.add("zoning.rules", f"is empty: no zone could be assigned; give rules such as "
                     f"[{example}] (see params/default.yaml)")
        return
    for p in parse_rules(rules)[2]:
        if p.field is None:
            problems.add(f"zoning.rules[{p.index}]", f"got {p.value!r}; expected exactly the "
                         f"keys cluster, future, zone, e.g. {example}")
        else:
            problems.add(f"zoning.rules[{p.index}].{p.field}", f"got {p.value!r}; {p.expected}")


def _check_grid(grid: Mapping, problems: Problems, *, key: str = "grid.crs") -> None:
    import math

    import pyproj

    crs = grid.get("crs")
    if isinstance(crs, str) and crs:
        try:
            parsed = pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError as exc:
            problems.add(key, f"cannot interpret {crs[:80]!r} ({str(exc)[:160]}); give "
                         "an EPSG/ESRI code such as EPSG:32649, a PROJ string or WKT")
        else:
            units = {ax.unit_name for ax in parsed.axis_info}
            if not parsed.is_projected:
                problems.add(key, f"{crs!r} is not projected (degrees); the grid needs "
                             "metres: use a projected CRS such as a UTM zone (EPSG:326xx) or "
                             "an Albers equal-area CRS")
            elif not units <= {"metre", "meter", "m"}:
                problems.add(key, f"{crs!r} has axis units {sorted(units)}; use a "
                             "projection in metres")
    bounds = grid.get("bounds_m")
    if isinstance(bounds, list):
        numbers = [b for b in bounds if isinstance(b, NUM) and not isinstance(b, bool)]
        if len(bounds) != 4 or len(numbers) != 4 or not all(math.isfinite(b) for b in numbers):
            problems.add("grid.bounds_m", f"got {bounds!r}; expected four numbers [xmin, ymin, "
                         "xmax, ymax] in metres of grid.crs")
        elif not (numbers[0] < numbers[2] and numbers[1] < numbers[3]):
            problems.add("grid.bounds_m", f"got {bounds!r}; expected [xmin, ymin, xmax, ymax] "
                         "with xmin < xmax and ymin < ymax")


def _check_stac_layer(name: str, spec: Mapping, years: list, problems: Problems,
                      check_files: bool) -> None:
    """A ``stac`` layer: options and, with ``check_files``, that the source exists, reads as
    STAC, has the asset in every item and an item for each study year (before any stage)."""
    from terracarbon.data import stac
    from terracarbon.errors import InputDataError

    key = f"data.layers.{name}"
    source, asset = spec.get("stac"), spec.get("asset")
    if not isinstance(source, str):
        problems.add(f"{key}.stac", f"expected a path or URL of a STAC catalog, collection or "
                     f"item collection JSON, got {source!r}")
        return
    if asset in (None, "") or not isinstance(asset, str):
        problems.add(f"{key}.asset", f"{'missing' if asset in (None, '') else repr(asset)}; "
                     "a STAC layer needs the asset key of the raster in each item (e.g. ndvi)")
        return
    collection = spec.get("collection")
    if collection is not None and (not isinstance(collection, str) or not collection):
        problems.add(f"{key}.collection", f"got {collection!r}; expected a collection id")
        return
    if spec.get("band_years") is not None:
        problems.add(f"{key}.band_years", "a STAC layer takes its years from the items' "
                     "datetime; drop band_years")
    if not check_files:
        return
    if not stac.is_url(source) and not Path(source).is_file():
        problems.add(f"{key}.stac", f"file not found: {source}{PATH_HINT}")
        return
    try:
        hrefs = stac.asset_hrefs(source, asset, name=name, static=bool(spec.get("static")),
                                 collection=collection)
    except (InputDataError, ParameterError) as exc:
        problems.add(f"{key}.stac", str(exc))
        return
    have = sorted(y for y in hrefs if y is not None)
    if have:  # an annual layer: one item per study year
        absent = [y for y in years if y not in hrefs]
        if absent:
            problems.add(f"{key}.stac", f"{source} has no item for year(s) {absent} (its items "
                         f"cover {have[0]}–{have[-1]}, {len(have)} years); add the items or "
                         "drop those years from data.years")
    missing = [h for y, h in hrefs.items() if not stac.is_url(h) and not Path(h).is_file()
               and (y is None or y in years)]
    if missing:
        shown = ", ".join(missing[:3]) + (" …" if len(missing) > 3 else "")
        problems.add(f"{key}.stac", f"{len(missing)} asset file(s) of {source} not found: "
                     f"{shown}; fix the items' {asset!r} hrefs")


def _check_data(data: Mapping, problems: Problems, check_files: bool) -> None:
    layers = data.get("layers") or {}
    if not isinstance(layers, dict):
        problems.add("data.layers", "expected a mapping of layer name -> layer spec")
        return
    years = data.get("years") if isinstance(data.get("years"), list) else []
    for name, spec in layers.items():
        key = f"data.layers.{name}"
        if not isinstance(spec, dict):
            problems.add(key, "expected a mapping with at least 'path' and 'kind'")
            continue
        for unknown in sorted(set(spec) - LAYER_KEYS):
            problems.add(f"{key}.{unknown}", f"unknown layer option (known: {sorted(LAYER_KEYS)})")
        for required in REQUIRED_LAYER_KEYS:
            if required != "path" and not spec.get(required):
                problems.add(f"{key}.{required}", "missing (every layer needs kind and units)")
        for text in ("units", "long_name"):
            value = spec.get(text)
            if value not in (None, "") and not isinstance(value, str):
                problems.add(f"{key}.{text}", f"expected text, got {value!r} (units as UDUNITS "
                             "text, e.g. \"1\", m, degC, \"mm yr-1\")")
        if spec.get("kind") and spec.get("kind") not in ("continuous", "categorical"):
            problems.add(f"{key}.kind", f"got {spec.get('kind')!r}; expected 'continuous' or "
                         "'categorical'")
        has_path = spec.get("path") not in (None, "")
        has_stac = spec.get("stac") not in (None, "")
        if has_path and has_stac:
            problems.add(f"{key}.stac", f"given together with {key}.path; a layer comes either "
                         "from files (path) or from a STAC source (stac + asset): drop one")
        elif has_stac:
            _check_stac_layer(name, spec, years, problems, check_files)
        elif not has_path:
            problems.add(f"{key}.path", "missing; give a file path or a pattern with {year}, or "
                         "a STAC source instead (stac: catalog.json or a URL, asset: <key>)")
        for option in ("asset", "collection"):
            if not has_stac and spec.get(option) not in (None, ""):
                problems.add(f"{key}.{option}", "is a STAC option; give stac (a catalog, "
                             "collection or item collection) or drop it")
        if has_path and check_files and not has_stac:
            pattern = str(spec["path"])
            paths = [pattern.format(year=y) for y in years] if "{year}" in pattern else [pattern]
            missing = [p for p in paths if not Path(p).is_file()]
            if missing:
                shown = ", ".join(missing[:3]) + (" …" if len(missing) > 3 else "")
                problems.add(f"{key}.path", f"{len(missing)} file(s) not found: {shown}"
                             f"{PATH_HINT}")
    boundary = data.get("boundary")
    if check_files and isinstance(boundary, str) and boundary and not Path(boundary).is_file():
        problems.add("data.boundary", f"file not found: {boundary}{PATH_HINT}")
    unit_filter = data.get("boundary_filter")
    if isinstance(unit_filter, dict) and set(unit_filter) != {"column", "value"}:
        problems.add("data.boundary_filter", f"got {unit_filter!r}; expected {{column: "
                     "<attribute>, value: <value or list of values>}, e.g. {column: ADM1_EN, "
                     "value: Guangdong Province}")
    if isinstance(years, list):
        repeated = sorted({y for y in years if isinstance(y, int) and years.count(y) > 1})
        if repeated:
            problems.add("data.years", f"{repeated} listed more than once; list each study "
                         "year once")
    plots = data.get("plots")
    if isinstance(plots, dict):
        for unknown in sorted(set(plots) - PLOT_KEYS):
            problems.add(f"data.plots.{unknown}", f"unknown option (known: {sorted(PLOT_KEYS)})")
        path = plots.get("path")
        if not path:
            problems.add("data.plots.path", "missing; give the field-plot CSV")
        elif not isinstance(path, str):
            problems.add("data.plots.path", f"expected a file path, got {path!r}")
        elif check_files and not Path(path).is_file():
            problems.add("data.plots.path", f"file not found: {path}{PATH_HINT}")
        elif check_files:
            header = _csv_header(path, problems)
            for col_key in ("x_column", "y_column", "year_column", "id_column",
                            *(f"{pool}_column" for pool in CARBON_POOLS)):
                column = plots.get(col_key)
                if header is not None and column and column not in header:
                    problems.add(f"data.plots.{col_key}", f"column {column!r} not in {path} "
                                 f"(columns: {header}){_separator_hint(header)}")
        for required in PLOT_KEYS_REQUIRED:
            if required != "path" and not plots.get(required):
                problems.add(f"data.plots.{required}", f"missing; {_PLOT_KEY_HELP[required]}")
        for factor in (f"{pool}_factor" for pool in CARBON_POOLS):
            value = plots.get(factor)
            if value is not None and (isinstance(value, bool) or not isinstance(value, NUM)):
                problems.add(f"data.plots.{factor}", f"expected a number, got {value!r} (e.g. "
                             "0.47 turns dry biomass into carbon)")
        measured = [pool for pool in CARBON_POOLS if plots.get(f"{pool}_column")]
        if not measured:
            problems.add("data.plots", "name at least one measured pool's column: "
                         + ", ".join(f"{pool}_column" for pool in CARBON_POOLS))
        else:
            try:
                check_pool_set(measured, where="data.plots")
            except ParameterError as err:
                problems.add("data.plots", str(err).removeprefix("data.plots: "))


def validate(
    params: Mapping, schema: Mapping, *, source: str = "parameters", check_files: bool = True
) -> None:
    """Check ``params`` against ``schema`` (the defaults); raise one error listing all problems."""
    problems = Problems()
    _walk("", params, schema, problems)

    def section(key: str) -> Mapping:
        # a section that is not a mapping is reported by the schema walk above
        value = params.get(key)
        return value if isinstance(value, Mapping) else {}

    name = section("study").get("name")
    if isinstance(name, str) and not SLUG.match(name) or isinstance(name, str) and ".." in name:
        problems.add("study.name", f"{name!r} is not a plain folder name: use letters, digits, "
                     "'.', '_' or '-' (it names the run folder inside --runs-dir)")
    window = section("prep").get("composite_window", 1)
    if isinstance(window, int) and window % 2 == 0:
        problems.add("prep.composite_window", f"= {window}: use an odd number of years "
                     "(centred window; 1 = no composites)")
    _check_stages(section("study").get("stages"), problems)
    _check_misc(section("study"), section("models"), section("zoning"), section("compute"),
                problems)
    _check_pools(params, problems)
    _check_landcover(params, problems)
    _check_flux_schemes(section("flux"), problems)
    synthetic = section("synthetic")
    first, last = synthetic.get("first_year"), synthetic.get("last_year")
    if isinstance(first, int) and isinstance(last, int) and first > last:
        problems.add("synthetic.first_year", "must not be after synthetic.last_year")
    if synthetic.get("enabled", False):
        crs = synthetic.get("crs")
        if isinstance(crs, str):
            _check_grid({"crs": crs}, problems, key="synthetic.crs")
    else:
        data, grid = section("data"), section("grid")
        stages = section("study").get("stages") or []
        towers_only = (not data.get("layers") and data.get("towers")
                       and set(stages) <= {"01_data_prep", "03_fluxes"})
        if towers_only:
            # site-level flux models with no maps: no rasters, no grid, no years needed
            if not isinstance(data.get("towers"), dict) or not data["towers"].get("path"):
                problems.add("data.towers.path", "the towers' folder or CSV is required")
            _check_towers(data["towers"], problems, check_files)
            problems.raise_if_any(source)
            return
        if not data.get("layers"):
            problems.add("data.layers", "no input layers: set synthetic.enabled: true or "
                         "describe your rasters under data.layers (see params/examples/); a "
                         "study with only flux towers lists study.stages: [01_data_prep, "
                         "03_fluxes]")
        if not data.get("years"):
            problems.add("data.years", "list the study years, e.g. [2000, 2005, 2010]")
        if not grid.get("crs"):
            problems.add("grid.crs", "set the target grid CRS (e.g. EPSG:32649) for real data")
        if not grid.get("pixel_size_m"):
            problems.add("grid.pixel_size_m", "set the target pixel size in metres")
        _check_grid(grid, problems)
        _check_data(data, problems, check_files)
        _check_towers(data.get("towers"), problems, check_files)
    problems.raise_if_any(source)


def measured_pools(params: Mapping) -> list[str]:
    """The pools the study's plots measure: the synthetic survey's (veg with
    ``n_veg_plots``, soil with ``n_soil_plots``) or those with a ``data.plots.<pool>_column``."""
    synthetic = params.get("synthetic") or {}
    if synthetic.get("enabled", True):
        return [p for p, n in (("veg", "n_veg_plots"), ("soil", "n_soil_plots"))
                if (synthetic.get(n) or 0) > 0]
    plots = (params.get("data") or {}).get("plots")
    return [p for p in CARBON_POOLS if isinstance(plots, dict) and plots.get(f"{p}_column")]


def _check_pools(params: Mapping, problems: Problems) -> None:
    stages = (params.get("study") or {}).get("stages") or []
    if "03_carbon_maps" not in stages and not params.get("pools"):
        return
    from terracarbon.carbon.pools import pool_plan

    try:
        pool_plan(params.get("pools"), measured=measured_pools(params))
    except ParameterError as err:
        problems.add("pools", str(err).removeprefix("pools: "))


def _check_landcover(params: Mapping, problems: Problems) -> None:
    """The ``landcover`` section (terracarbon.landcover.params): every problem, keyed."""
    _, found = landcover_problems(params.get("landcover"))
    for problem in found + synthetic_scheme_problems(params):
        key, _, message = problem.partition(": ")
        problems.add(key, message)


def _check_towers(towers: Any, problems: Problems, check_files: bool) -> None:
    """``data.towers``: format and, with ``check_files``, that its files exist."""
    if not isinstance(towers, dict):
        return
    from terracarbon.flux.inputs import check_tower_spec

    for problem in check_tower_spec(towers) if check_files else []:
        problems.add(f"data.towers.{problem.split(':', 1)[0]}",
                     problem.split(":", 1)[1].strip() + PATH_HINT)
    if towers.get("format", "fluxnet2015") not in ("fluxnet2015", "csv") and not check_files:
        problems.add("data.towers.format", f"got {towers.get('format')!r}; expected "
                     "fluxnet2015 or csv")


@functools.lru_cache(maxsize=4)
def _cached_schema(defaults: str) -> dict:
    """The defaults file, read once per process (every stage validates several sections)."""
    return read_yaml(defaults)


def validate_section(name: str, values: Mapping, *, defaults: str | os.PathLike = DEFAULT_PARAMS
                     ) -> None:
    """Validate one section (as a notebook receives it) against the defaults' schema."""
    schema = _cached_schema(str(defaults))
    if name not in schema:
        raise ParameterError(f"unknown parameter section {name!r}; known: {sorted(schema)}")
    if name in OPEN_SECTIONS:  # free-form; its own rules run where it is read (pools.pool_plan)
        return
    problems = Problems()
    _walk(f"{name}.", values, schema[name], problems)
    problems.raise_if_any(f"section {name!r}")
