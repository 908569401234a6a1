"""What each stage is: its notebook, parameter sections, inputs and outputs — declared once.

Modelled on InVEST's ``MODEL_SPEC``: every output a stage can write is declared here with its
id, path (relative to the stage folder), kind, units, description and when it is created.
The stage context checks what a notebook records against this table
(:meth:`terracarbon.pipeline.stages.StageContext.save`), the runner orders and hashes
stages by it, the run index and the dashboard read it, and the test helper
``assert_complete_stage`` (tests/helpers.py) checks a finished stage folder against it.
Nothing else lists stage ids, output paths or output units.

Kinds: ``dataset`` (Zarr or NetCDF; the suffix follows ``prep.cube_format`` for the cube),
``table`` (CSV), ``json``, ``vector`` (GeoJSON), ``folder`` (a directory of files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

OutputKind = Literal["dataset", "table", "json", "vector", "folder"]

ALWAYS = "always"


@dataclass(frozen=True)
class LayerSpec:
    """A map layer of a dataset output, as the dashboard offers it.

    ``key`` is the dashboard's name for the layer; ``variable`` the data variable.
    """

    key: str
    label: str
    variable: str
    categorical: bool = False


@dataclass(frozen=True)
class OutputSpec:
    """One artifact of a stage.

    ``created`` says when the stage writes it: :data:`ALWAYS`, or a sentence naming the
    condition ("when the study has a boundary"); only ``always`` outputs are required for the
    stage to be complete.
    """

    id: str
    path: str
    kind: OutputKind
    units: str | None
    description: str
    created: str = ALWAYS
    layers: tuple[LayerSpec, ...] = ()
    index: bool = False
    """Tables only: write the DataFrame's index (a matrix with row labels)."""

    @property
    def required(self) -> bool:
        return self.created == ALWAYS

    def matches(self, relative_path: str) -> bool:
        """True if ``relative_path`` (inside the stage folder) is where this output lives.

        A dataset may be Zarr or NetCDF: ``cube.zarr`` and ``cube.nc`` both match ``cube.zarr``.
        """
        if relative_path == self.path:
            return True
        if self.kind == "dataset":
            stem = self.path.rsplit(".", 1)[0]
            return relative_path in (f"{stem}.zarr", f"{stem}.nc")
        return False


@dataclass(frozen=True)
class InputSpec:
    """An upstream output a stage reads, by stage and output id."""

    stage: str
    output: str
    required: bool = True


@dataclass(frozen=True)
class StageSpec:
    """A stage: notebook, parameter sections, inputs (upstream outputs) and outputs."""

    stage_id: str
    notebook: str
    title: str
    sections: tuple[str, ...]
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    optional_upstream: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()
    """Modules its kernel imports while it boots, beside the previous stage (beyond those
    every stage needs, :mod:`terracarbon.pipeline.kernel_preload`): the heavy imports of its
    first cells. A hint for speed only: an unused or failing one costs nothing else."""
    _by_id: dict = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        ids = [o.id for o in self.outputs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.stage_id}: duplicate output ids {ids}")
        object.__setattr__(self, "_by_id", {o.id: o for o in self.outputs})

    @property
    def upstream(self) -> tuple[str, ...]:
        """Stages this one cannot run without (those of its inputs, minus optional ones)."""
        seen: list[str] = []
        for inp in self.inputs:
            if inp.stage not in seen and inp.stage not in self.optional_upstream:
                seen.append(inp.stage)
        return tuple(seen)

    def output(self, output_id: str) -> OutputSpec:
        """The declared output ``output_id`` (KeyError listing the declared ids otherwise)."""
        try:
            return self._by_id[output_id]
        except KeyError:
            raise KeyError(f"{self.stage_id} declares no output {output_id!r}; it declares "
                           f"{sorted(self._by_id)}") from None


_FIGURES = OutputSpec("figures", "figures", "folder", None,
                      "publication figures (PNG 300 dpi, SVG, PDF)")
_CLASS_SHARE_UNITS = "area_ha: ha; share_pct: %"

SERIES_SOURCES: dict[str, str] = {
    "01_data_prep": "cube",
    "03_carbon_maps": "carbon",
    "03_fluxes": "annual",
}
"""Stages whose annual ``(year, y, x)`` dataset trends and zoning can analyse
(``trends.source_stage`` / ``zoning.source_stage``), and the id of that output."""

SERIES_SECTIONS: dict[str, str] = {"04_trends": "trends", "05_zoning": "zoning"}
"""Stages that analyse an annual series, and the parameter section naming it."""

_SERIES_INPUTS = tuple(InputSpec(stage, output, required=False)
                       for stage, output in SERIES_SOURCES.items() if stage != "01_data_prep")
_OPTIONAL_SERIES_STAGES = tuple(stage for stage in SERIES_SOURCES if stage != "01_data_prep")

STAGES: dict[str, StageSpec] = {
    spec.stage_id: spec
    for spec in (
        StageSpec(
            "01_data_prep", "01_data_prep.ipynb", "Data preparation",
            ("study", "synthetic", "grid", "data", "prep", "compute", "landcover"),
            inputs=(),
            outputs=(
                OutputSpec("cube", "cube.zarr", "dataset", "see variable attributes",
                           "aligned covariate cube (year, y, x)",
                           created="when the study has raster layers (all but towers-only "
                                   "studies)"),
                OutputSpec("samples", "samples.csv", "table", "t C ha-1",
                           "field plots with same-year covariates"),
                OutputSpec("vif", "vif.csv", "table", "1",
                           "variance inflation factor per covariate"),
                OutputSpec("correlation", "correlation.csv", "table", "1",
                           "Pearson correlation of the continuous covariates", index=True),
                OutputSpec("boundary", "boundary.geojson", "vector", None,
                           "study boundary in the grid CRS",
                           created="when the study has a boundary"),
                OutputSpec("truth", "synthetic_inputs/truth/truth.nc", "dataset", "t C ha-1",
                           "synthetic ground truth", created="for the synthetic study"),
                OutputSpec("monthly", "monthly.zarr", "dataset", "see variable attributes",
                           "aligned monthly covariate cube (time, y, x), month starts",
                           created="when the study has data.monthly_layers"),
                OutputSpec("towers", "towers.csv", "table",
                           "nee, gpp, reco: g C m-2 month-1; covariates: see their layers",
                           "flux-tower months on the grid with the covariates at each tower",
                           created="when the study has data.towers"),
                OutputSpec("flux_truth", "synthetic_inputs/flux/truth/flux_truth.nc", "dataset",
                           "g C m-2 month-1; g C m-2 yr-1",
                           "synthetic flux ground truth", created="for the synthetic flux study"),
            ),
        ),
        StageSpec(
            "02_train_models", "02_train_models.ipynb", "Model training",
            ("study", "models", "compute"),
            preload=("sklearn.ensemble", "quantile_forest", "torch",
                     "terracarbon.models.training"),
            inputs=(InputSpec("01_data_prep", "cube"), InputSpec("01_data_prep", "samples"),
                    InputSpec("01_data_prep", "truth", required=False)),
            outputs=(
                OutputSpec("models", "models", "folder", "t C ha-1",
                           "fitted models with model cards"),
                OutputSpec("metrics", "metrics.csv", "table",
                           "r2: 1; rmse, mae: t C ha-1; ssim: 1",
                           "model x target x cv_scheme x split metrics"),
                OutputSpec("comparison", "comparison.csv", "table", "t C ha-1",
                           "model comparison (spatial and random CV)"),
                OutputSpec("importance", "importance.csv", "table", "r2 drop",
                           "RF impurity and permutation importance",
                           created="when the random forest is a candidate"),
                OutputSpec("best_model", "best_model.json", "json", None,
                           "mapping model, the criterion that chose it, whether change was "
                           "validated"),
                OutputSpec("change_validation", "change_validation.csv", "table",
                           "bias, rmse, mae: t C ha-1; rate_*: t C ha-1 yr-1; r2: 1",
                           "observed vs predicted change at remeasured plots, per model"),
                OutputSpec("oof", "oof.csv", "table", "t C ha-1",
                           "out-of-fold (spatial CV) predictions of the mapping model"),
                OutputSpec("ensemble", "ensemble", "folder", "t C ha-1",
                           "block-bootstrap members of the mapping model",
                           created="when models.ensemble_members > 0 (networks: with "
                                   "models.ensemble_networks)"),
                OutputSpec("aoa", "aoa.nc", "dataset", "1", "dissimilarity index and AOA mask"),
            ),
        ),
        StageSpec(
            "03_carbon_maps", "03_carbon_maps.ipynb", "Carbon maps",
            ("study", "pools", "maps", "compute", "landcover"),
            preload=("sklearn.ensemble", "quantile_forest", "terracarbon.models.persistence",
                     "terracarbon.carbon.mapping", "terracarbon.carbon.uncertainty",
                     "nbformat", "holoviews", "panel"),
            inputs=(InputSpec("01_data_prep", "cube"), InputSpec("01_data_prep", "samples"),
                    InputSpec("01_data_prep", "boundary", required=False),
                    InputSpec("01_data_prep", "truth", required=False),
                    # optional: a study whose pools are all lookup tables or products needs no model
                    InputSpec("02_train_models", "models", required=False),
                    InputSpec("02_train_models", "best_model", required=False),
                    InputSpec("02_train_models", "aoa", required=False),
                    InputSpec("02_train_models", "oof", required=False),
                    InputSpec("02_train_models", "ensemble", required=False)),
            outputs=(
                OutputSpec("carbon", "carbon.zarr", "dataset", "density t C ha-1; storage t C",
                           "density, bounds and storage per year and pool",
                           layers=(
                               LayerSpec("total_density", "Total carbon density",
                                         "total_carbon_density"),
                               LayerSpec("veg_density", "Vegetation carbon density",
                                         "veg_carbon_density"),
                               LayerSpec("soil_density", "Soil carbon density",
                                         "soil_carbon_density"),
                               LayerSpec("storage", "Total carbon storage per pixel",
                                         "total_carbon_storage"),
                               LayerSpec("lower", "Total carbon density, lower bound",
                                         "total_carbon_density_lower"),
                               LayerSpec("upper", "Total carbon density, upper bound",
                                         "total_carbon_density_upper"),
                           )),
                OutputSpec("totals", "totals.csv", "table", "Tg C", "storage per year and pool"),
                OutputSpec("change", "change.csv", "table", "Tg C",
                           "change between years per pool, with its interval "
                           "(lower_Tg, upper_Tg)"),
                OutputSpec("change_map", "change_map.nc", "dataset", "t C ha-1",
                           "per-pixel density change, first to last year, with ensemble bounds"),
                OutputSpec("ensemble_sample", "ensemble_sample.nc", "dataset", "t C ha-1",
                           "density of the central model and the ensemble members at a "
                           "systematic pixel sample, every year",
                           created="when the ensemble is used (maps.interval_method: "
                                   "ensemble with members)"),
                OutputSpec("calibration", "calibration.csv", "table",
                           "coverage: 1; mean_width: see units column",
                           "coverage of the intervals against the planted truth",
                           created="when the study has a truth (synthetic)"),
                # per-class tables at two levels (terracarbon.landcover.study): the study's
                # classes (landcover table; the eight groups in the default study) and, when
                # those are subtypes, the eight groups (*_group)
                OutputSpec("by_landuse", "by_landuse.csv", "table", "area_ha: ha; *_Tg: Tg C",
                           "storage by land-use class (level: the study's classes)",
                           created="when the cube has a landuse layer"),
                OutputSpec("contribution", "ecosystem_contribution.csv", "table",
                           "change_Tg: Tg C; share: %",
                           "ecosystem contribution to change (level: the study's classes)",
                           created="when the cube has a landuse layer"),
                OutputSpec("transitions", "transitions.csv", "table", "ha",
                           "land-use transition matrix, first to last year (level: the "
                           "study's classes)", index=True,
                           created="when the cube has a landuse layer"),
                OutputSpec("decomposition", "decomposition.csv", "table", "t C; Tg C",
                           "change by transition (level: the study's classes)",
                           created="when the cube has a landuse layer"),
                OutputSpec("landcover_classes", "landcover_classes.csv", "table", "1",
                           "the study's land-cover classes and their groups (the crosswalk "
                           "between the two levels)",
                           created="when the cube has a landuse layer"),
                OutputSpec("by_landuse_group", "by_landuse_group.csv", "table",
                           "area_ha: ha; *_Tg: Tg C",
                           "storage by land-use group (level: the eight groups)",
                           created="when the study's classes are subtypes of the groups"),
                OutputSpec("contribution_group", "ecosystem_contribution_group.csv", "table",
                           "change_Tg: Tg C; share: %",
                           "ecosystem contribution to change (level: the eight groups)",
                           created="when the study's classes are subtypes of the groups"),
                OutputSpec("transitions_group", "transitions_group.csv", "table", "ha",
                           "land-use transition matrix, first to last year (level: the eight "
                           "groups)", index=True,
                           created="when the study's classes are subtypes of the groups"),
                OutputSpec("decomposition_group", "decomposition_group.csv", "table",
                           "t C; Tg C", "change by transition (level: the eight groups)",
                           created="when the study's classes are subtypes of the groups"),
                OutputSpec("by_region", "by_region.csv", "table", "area_ha: ha; *_Tg: Tg C",
                           "storage per reporting unit",
                           created="when the boundary has several reporting units"),
                _FIGURES,
                OutputSpec("lookup_comparison", "lookup_comparison.csv", "table", "Tg C",
                           "model vs land-use lookup totals",
                           created="when a model maps a pool"),
                OutputSpec("pools", "pools.csv", "table", "1",
                           "the pools mapped and where each comes from (pools section)"),
                OutputSpec("products", "products", "folder", "t C ha-1; t C",
                           "COG GeoTIFFs of density and storage, first and last year"),
            ),
            optional_upstream=("02_train_models",),  # lookup/product-only pools need no model
        ),
        StageSpec(
            "03_fluxes", "03_fluxes.ipynb", "Carbon fluxes",
            ("study", "flux", "compute"),
            inputs=(InputSpec("01_data_prep", "cube", required=False),
                    InputSpec("01_data_prep", "towers"),
                    InputSpec("01_data_prep", "monthly", required=False),
                    InputSpec("01_data_prep", "boundary", required=False),
                    InputSpec("01_data_prep", "flux_truth", required=False)),
            outputs=(
                OutputSpec("models", "models", "folder", "g C m-2 month-1",
                           "fitted tower models (one per target) with model cards"),
                OutputSpec("metrics", "metrics.csv", "table",
                           "r2: 1; rmse, mae, bias: g C m-2 month-1",
                           "family x target x CV scheme metrics at the towers"),
                OutputSpec("metrics_by_cover", "metrics_by_cover.csv", "table",
                           "r2: 1; rmse, mae, bias: g C m-2 month-1",
                           "the same per land-cover type (IGBP or land-use class)"),
                OutputSpec("skill", "skill.csv", "table", "r2: 1; rmse: g C m-2 month-1",
                           "FLUXCOM split of leave-one-site-out skill: across-site means, "
                           "mean seasonal cycle, monthly anomalies"),
                OutputSpec("oof", "oof.csv", "table", "g C m-2 month-1",
                           "out-of-fold predictions at the towers, every family and scheme"),
                OutputSpec("choice", "choice.json", "json", None,
                           "the mapping model per target and the CV scheme that chose it"),
                OutputSpec("monthly", "flux_monthly.zarr", "dataset", "g C m-2 month-1",
                           "monthly NEE, GPP, Reco per pixel with bounds",
                           created="when the study has a monthly cube and flux.map"),
                OutputSpec("annual", "flux_annual.zarr", "dataset", "g C m-2 yr-1",
                           "annual NEE, GPP, Reco, sink, Rh, NEP per pixel with bounds",
                           created="when the study has a monthly cube and flux.map",
                           layers=(
                               LayerSpec("sink", "Carbon sink (-NEE)", "sink"),
                               LayerSpec("nee", "Net ecosystem exchange", "nee"),
                               LayerSpec("nep", "NEP = NPP - Rh", "nep"),
                           )),
                OutputSpec("totals", "totals.csv", "table", "*_Tg: Tg C yr-1; *_Pg: Pg C yr-1",
                           "regional annual totals per flux with intervals",
                           created="when the study has a monthly cube and flux.map"),
                OutputSpec("by_landuse", "by_landuse.csv", "table", "area_ha: ha; *_Tg: Tg C yr-1",
                           "annual sink per land-use class",
                           created="when mapped and the cube has landuse"),
                OutputSpec("by_transition", "by_transition.csv", "table",
                           "area_ha: ha; *_Tg: Tg C yr-1",
                           "mean annual sink per land-use transition, first to last year",
                           created="when mapped and the cube has landuse"),
                OutputSpec("calibration", "calibration.csv", "table", "coverage: 1",
                           "intervals and totals against the planted flux truth",
                           created="for the synthetic flux study"),
                _FIGURES,
            ),
        ),
        StageSpec(
            "04_trends", "04_trends.ipynb", "Trends",
            ("study", "trends", "compute"),
            preload=("terracarbon.trends.core", "terracarbon.landcover"),
            inputs=(InputSpec("01_data_prep", "cube"),
                    InputSpec("01_data_prep", "boundary", required=False),
                    InputSpec("01_data_prep", "truth", required=False),
                    *_SERIES_INPUTS,
                    InputSpec("03_carbon_maps", "ensemble_sample", required=False)),
            optional_upstream=_OPTIONAL_SERIES_STAGES,
            outputs=(
                OutputSpec("trends", "trends.zarr", "dataset",
                           "slope: units of the series per year; z, p, tau, cv, hurst: 1",
                           "trend statistics of the series",
                           layers=(
                               LayerSpec("trend_class", "Trend class (Mann–Kendall, 5 classes)",
                                         "trend5", categorical=True),
                               LayerSpec("slope", "Theil–Sen slope", "slope"),
                               LayerSpec("hurst", "Hurst exponent (R/S)", "hurst"),
                               LayerSpec("future", "Future trend (Sen + Hurst)", "future",
                                         categorical=True),
                           )),
                _FIGURES,
                OutputSpec("trend_shares", "trend_shares.csv", "table", _CLASS_SHARE_UNITS,
                           "area per MK trend class"),
                OutputSpec("trend5_by_landuse", "trend5_by_landuse.csv", "table",
                           _CLASS_SHARE_UNITS,
                           "5-class trend areas per land-use class (the study's classes)"),
                OutputSpec("future_shares", "future_shares.csv", "table", _CLASS_SHARE_UNITS,
                           "Sen+Hurst future-trend areas per land-use class (the study's "
                           "classes)"),
                OutputSpec("driving_shares", "driving_shares.csv", "table", _CLASS_SHARE_UNITS,
                           "area per driving type", created="when trends.drivers are in the cube"),
                OutputSpec("robustness", "robustness.nc", "dataset",
                           "slope*: units of the series per year; agreement: 1",
                           "members' Sen slopes and trend-class agreement on the maps "
                           "stage's pixel sample",
                           created="when the series is a density of 03_carbon_maps mapped "
                                   "with an ensemble"),
            ),
        ),
        StageSpec(
            "05_zoning", "05_zoning.ipynb", "Zoning",
            ("study", "zoning", "compute"),
            preload=("terracarbon.spatial.autocorrelation", "terracarbon.spatial.zoning"),
            inputs=(InputSpec("01_data_prep", "boundary", required=False),
                    InputSpec("01_data_prep", "truth", required=False),
                    InputSpec("01_data_prep", "cube"),
                    *_SERIES_INPUTS, InputSpec("04_trends", "trends")),
            optional_upstream=_OPTIONAL_SERIES_STAGES,
            outputs=(
                OutputSpec("lisa", "lisa.zarr", "dataset", "Is, p_sim: 1; codes: see flag_meanings",
                           "LISA statistics and clusters of every year"),
                OutputSpec("zoning", "zoning.zarr", "dataset",
                           "Is, p: 1; codes: see flag_meanings",
                           "LISA of the last year, clusters per year, management zones",
                           layers=(
                               LayerSpec("lisa_cluster", "LISA cluster", "cluster_by_year",
                                         categorical=True),
                               LayerSpec("zone", "Management zone", "zone", categorical=True),
                           )),
                _FIGURES,
                OutputSpec("moran", "moran.csv", "table", "I, z, p: 1",
                           "global Moran's I per year"),
                OutputSpec("cluster_shares", "cluster_shares.csv", "table", _CLASS_SHARE_UNITS,
                           "LISA cluster area per year"),
                OutputSpec("zones", "zones.csv", "table", "area_ha: ha; share_pct: %; *_Tg: Tg C",
                           "area and carbon per zone"),
            ),
        ),
    )
}
"""Every stage, in run order. The one list of stage ids."""

STAGE_IDS: tuple[str, ...] = tuple(STAGES)


def dashboard_layers() -> tuple[tuple[str, str, LayerSpec], ...]:
    """``(stage id, output id, layer)`` of every map layer the stages declare, in menu order."""
    return tuple((spec.stage_id, out.id, layer)
                 for spec in STAGES.values() for out in spec.outputs for layer in out.layers)
