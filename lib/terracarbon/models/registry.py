"""The model families terracarbon knows: one entry each, read by everything that lists models.

Every place that needs to know the models reads this registry: the parameter schema
(``pipeline.params.MODEL_NAMES``, the allowed ``models.candidates`` and ``maps.model``), model
training (:func:`terracarbon.models.training.model_factory`, ``DEEP_MODELS``), and loading a
saved model (:func:`terracarbon.models.persistence.load_model` maps the model card's
``"class"`` to the class through :attr:`ModelEntry.import_path`).

An entry names its class by a lazy ``"package.module:Class"`` string, so importing this
module (which the parameter schema does) imports neither torch nor scikit-learn.

Adding a model family is one module with the model class plus one entry in
:data:`_BUILT_IN`: its name, import path, whether it is a deep (patch) model, the cube
variables it reads besides ``models.features``, how it is built from the ``models``
parameter section, and a one-line description. Models from outside the package can be
registered for loading with :func:`register` (or
:func:`terracarbon.models.persistence.register_model_class`).

>>> MODEL_NAMES
('rf', 'cnn', 'cnn_tcn', 'ndvi_lr', 'mlr', 'gbm', 'svr', 'mlp', 'lookup')
>>> get("cnn_tcn").deep, get("lookup").inputs
(True, ('landuse',))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from terracarbon.errors import ModelError, ParameterError

Builder = Callable[[type, Mapping[str, Any], list[str], int, tuple[str, ...]], Any]
"""``build(cls, settings, features, seed, targets)`` -> an unfitted model of class ``cls``.

``settings`` is the ``models`` parameter section (hyper-parameters under ``rf``, ``cnn``,
``cnn_tcn``), ``features`` the cube variables used as predictors, ``targets`` the pools the
plots measured (``veg``, ``soil``).
"""


@dataclass(frozen=True)
class ModelEntry:
    """One model family.

    Attributes
    ----------
    name : str
        The model's ``name``: its value in ``models.candidates`` and the card's ``"class"``.
    import_path : str
        ``"package.module:Class"`` of the model class, imported on first use.
    description : str
        One line for tables and documentation.
    deep : bool
        A patch (CNN) model: trained by gradient descent on covariate windows, so it gets
        ``models.cv_folds_deep`` folds and no leave-one-site-out CV.
    inputs : tuple of str
        Cube variables the model reads besides ``models.features`` (the baselines' fixed
        predictor); stage 02 loads them and checks they exist.
    build : Builder or None
        How to build the model from the parameters; None for a model that can only be
        loaded (registered for :func:`~terracarbon.models.persistence.load_model`).
    """

    name: str
    import_path: str
    description: str
    deep: bool = False
    inputs: tuple[str, ...] = ()
    build: Builder | None = None

    def load(self) -> type:
        """The model class (imports its module)."""
        module, _, attr = self.import_path.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ModelError(
                f"cannot import {self.import_path!r} for class {self.name!r}: {err}"
            ) from err


# ------------------------------------------------------------------------------ builders
# One per family: the mapping from the parameter file's names (``patch_size_px``,
# ``max_epochs`` ...) to the class's arguments lives here, so the classes stay free of it.


def _build_rf(cls: type, settings: Mapping[str, Any], features: list[str], seed: int,
              targets: tuple[str, ...]) -> Any:
    hp = settings["rf"]
    return cls(features, targets=targets, n_estimators=hp["n_estimators"],
               max_depth=hp["max_depth"], min_samples_leaf=hp["min_samples_leaf"], seed=seed)


def _cnn_arguments(settings: Mapping[str, Any], seed: int, targets: tuple[str, ...]
                   ) -> dict[str, Any]:
    hp = settings["cnn"]
    return {"patch_size": hp["patch_size_px"], "lr": hp["learning_rate"],
            "weight_decay": hp["weight_decay"], "epochs": hp["max_epochs"],
            "patience": hp["patience"], "batch_size": hp["batch_size"], "seed": seed,
            "targets": targets}


def _build_cnn(cls: type, settings: Mapping[str, Any], features: list[str], seed: int,
               targets: tuple[str, ...]) -> Any:
    return cls(features, **_cnn_arguments(settings, seed, targets))


def _build_cnn_tcn(cls: type, settings: Mapping[str, Any], features: list[str], seed: int,
                   targets: tuple[str, ...]) -> Any:
    # the CNN-TCN shares the CNN's optimiser settings but has its own epoch budget
    tcn = settings["cnn_tcn"]
    return cls(features, sequence_length=tcn["sequence_years"],
               **{**_cnn_arguments(settings, seed, targets), "epochs": tcn["max_epochs"]})


def _build_one_input_baseline(cls: type, settings: Mapping[str, Any], features: list[str],
                              seed: int, targets: tuple[str, ...]) -> Any:
    # NDVI regression and the land-use lookup read their fixed input, not models.features
    return cls(targets=targets)


def _build_mlr(cls: type, settings: Mapping[str, Any], features: list[str], seed: int,
               targets: tuple[str, ...]) -> Any:
    return cls(features, targets=targets)


def _family_builder(family: str) -> Builder:
    # gbm, svr, mlp: the estimator of models.estimators, hyper-parameters under models.<family>
    def build(cls: type, settings: Mapping[str, Any], features: list[str], seed: int,
              targets: tuple[str, ...]) -> Any:
        return cls(features, family=family, targets=targets,
                   settings={family: settings.get(family) or {}}, seed=seed)
    return build


_BUILT_IN: tuple[ModelEntry, ...] = (
    ModelEntry("rf", "terracarbon.models.rf:RandomForestCarbon",
               "random forest per pool, quantile-regression-forest intervals (Ningxia study)",
               build=_build_rf),
    ModelEntry("cnn", "terracarbon.models.cnn:CnnCarbon",
               "patch CNN on k x k covariate windows, MC-dropout intervals (Guangdong study)",
               deep=True, build=_build_cnn),
    ModelEntry("cnn_tcn", "terracarbon.models.cnn:CnnTcnCarbon",
               "CNN encoder per year + causal temporal convolution (urban green-space study)",
               deep=True, build=_build_cnn_tcn),
    ModelEntry("ndvi_lr", "terracarbon.models.baselines:NdviLinear",
               "baseline: density = a + b * NDVI, least squares",
               inputs=("ndvi",), build=_build_one_input_baseline),
    ModelEntry("mlr", "terracarbon.models.baselines:MultipleLinear",
               "baseline: standardised multiple regression, land-use classes one-hot",
               build=_build_mlr),
    ModelEntry("gbm", "terracarbon.models.families:EstimatorCarbon",
               "histogram gradient boosting per pool (the flux path's gbm family)",
               build=_family_builder("gbm")),
    ModelEntry("svr", "terracarbon.models.families:EstimatorCarbon",
               "support-vector regression per pool, standardised inputs",
               build=_family_builder("svr")),
    ModelEntry("mlp", "terracarbon.models.families:EstimatorCarbon",
               "multilayer perceptron per pool (scikit-learn), standardised inputs",
               build=_family_builder("mlp")),
    ModelEntry("lookup", "terracarbon.models.baselines:LanduseLookup",
               "baseline: mean plot density of each land-use class (InVEST-style lookup)",
               inputs=("landuse",), build=_build_one_input_baseline),
    # not a candidate of its own: training forms it from the shortlisted candidates
    ModelEntry("average", "terracarbon.models.average:AveragedModel",
               "equal-weight mean of the shortlisted candidates (formed by training)"),
)

_ENTRIES: dict[str, ModelEntry] = {e.name: e for e in _BUILT_IN}

MODEL_NAMES: tuple[str, ...] = tuple(e.name for e in _BUILT_IN if e.build is not None)
"""The model families a study can train (``models.candidates``), in display order."""

DEEP_MODELS: tuple[str, ...] = tuple(e.name for e in _BUILT_IN if e.deep)
"""The patch (CNN) models among :data:`MODEL_NAMES`."""

MAPPABLE_MODELS: tuple[str, ...] = tuple(e.name for e in _BUILT_IN)
"""Models ``maps.model`` can name: the candidates and the average training forms."""


# ------------------------------------------------------------------------------ look-ups


def get(name: str) -> ModelEntry:
    """The entry of model ``name``; ParameterError listing the known models otherwise.

    >>> get("rf").import_path
    'terracarbon.models.rf:RandomForestCarbon'
    >>> get("svm")
    Traceback (most recent call last):
    ...
    terracarbon.errors.ParameterError: models.candidates: unknown model 'svm'; expected one of rf, cnn, cnn_tcn, ndvi_lr, mlr, gbm, svr, mlp, lookup
    """
    if name not in _ENTRIES:
        raise ParameterError(f"models.candidates: unknown model {name!r}; expected one of "
                             f"{', '.join(n for n, e in _ENTRIES.items() if e.build)}")
    return _ENTRIES[name]


def names() -> tuple[str, ...]:
    """Every registered model name, built-in first, then registered ones."""
    return tuple(_ENTRIES)


def import_path(name: str) -> str:
    """``"package.module:Class"`` of model ``name``."""
    return get(name).import_path


def extra_inputs(candidates: Sequence[str]) -> list[tuple[str, str]]:
    """``(candidate, cube variable)`` for each variable a candidate reads besides
    ``models.features``, in registry order.

    >>> extra_inputs(["lookup", "rf", "ndvi_lr"])
    [('ndvi_lr', 'ndvi'), ('lookup', 'landuse')]
    """
    wanted = set(candidates)
    return [(name, var) for name, entry in _ENTRIES.items() if name in wanted
            for var in entry.inputs]


def register(entry: ModelEntry) -> None:
    """Add ``entry`` (or replace the entry of the same name).

    Raises
    ------
    ParameterError
        ``entry.import_path`` is not ``"package.module:Class"``.
    """
    if ":" not in entry.import_path:
        raise ParameterError(
            f"import_path={entry.import_path!r}; expected 'package.module:ClassName'."
        )
    _ENTRIES[entry.name] = entry


def unregister(name: str) -> ModelEntry:
    """Remove model ``name`` and return its entry (KeyError when it is not registered)."""
    return _ENTRIES.pop(name)


def is_registered(name: str) -> bool:
    """True when ``name`` has an entry."""
    return name in _ENTRIES
