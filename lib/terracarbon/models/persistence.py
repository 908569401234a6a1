"""Saving and loading fitted carbon models, each next to a ``model_card.json``.

A saved model is a folder::

    <dir>/model_card.json   what the model is: class key, features, units, scaling, CV
                            scheme and metrics, seed, package versions
    <dir>/model.joblib      the pickled model (scikit-learn based models), or whatever
                            files the model's own ``save`` writes (torch models)

The folder is written under a temporary name and renamed when complete
(:func:`terracarbon.data.io.atomic_path`), so a failed save leaves nothing behind.

Extension hook
--------------
* ``save_model`` calls ``model.save(directory)`` when the model has such a method (the CNN
  models write their torch state there) and otherwise pickles the model with joblib.
* ``load_model`` reads the card's ``"class"`` entry (the model's ``name``), looks it up in
  the model registry (:mod:`terracarbon.models.registry`: lazy ``"module:attribute"``
  import strings, so this module imports no model code, e.g. no torch), and calls
  ``Class.load(directory)`` when the model was saved by its own ``save``, else
  ``joblib.load``. Model classes from outside the package register with
  :func:`register_model_class` (or by setting ``MODEL_CLASSES[key]``), which adds a
  load-only entry to the registry.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pandas as pd

from terracarbon.data.io import atomic_path
from terracarbon.errors import InputDataError, ModelError
from terracarbon.models import registry
from terracarbon.models.base import CarbonModel
from terracarbon.pipeline.provenance import package_versions

CARD_NAME = "model_card.json"
"""The model card of a saved model folder (the CNN models' own ``save`` writes it too)."""
JOBLIB_NAME = "model.joblib"


class _ImportPaths(MutableMapping):
    """Card ``"class"`` key -> ``"module:attribute"``: a live view of the model registry.

    Reading gives each registered model's import path; setting a key registers a
    (load-only) model class; deleting one unregisters it.
    """

    def __getitem__(self, key: str) -> str:
        if not registry.is_registered(key):
            raise KeyError(key)
        return registry.import_path(key)

    def __setitem__(self, key: str, import_path: str) -> None:
        register_model_class(key, import_path)

    def __delitem__(self, key: str) -> None:
        if not registry.is_registered(key):
            raise KeyError(key)
        registry.unregister(key)

    def __iter__(self) -> Iterator[str]:
        return iter(registry.names())

    def __len__(self) -> int:
        return len(registry.names())

    def __repr__(self) -> str:
        return repr(dict(self))


MODEL_CLASSES: MutableMapping[str, str] = _ImportPaths()
"""Card ``"class"`` key -> ``"module:attribute"`` of the model class (imported lazily)."""


def register_model_class(key: str, import_path: str) -> None:
    """Register a model class for :func:`load_model` under the card key ``key``.

    The class is added to the model registry as a load-only entry (not a training
    candidate); registering a built-in key points its entry at ``import_path``.

    Parameters
    ----------
    key : str
        The model's ``name`` (written as the card's ``"class"``).
    import_path : str
        ``"package.module:ClassName"``.
    """
    if registry.is_registered(key):
        entry = dataclasses.replace(registry.get(key), import_path=import_path)
    else:
        entry = registry.ModelEntry(key, import_path, "registered with register_model_class")
    registry.register(entry)


def _resolve(key: str) -> type:
    if not registry.is_registered(key):
        raise ModelError(
            f"model card class {key!r} is not registered; known classes "
            f"{sorted(registry.names())}. Register it with "
            "terracarbon.models.persistence.register_model_class."
        )
    return registry.get(key).load()


def _jsonable(obj: Any) -> Any:
    """Plain-JSON version of ``obj``: NaN -> null, NumPy scalars/arrays -> Python."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def save_model(
    model: CarbonModel,
    directory: str | os.PathLike,
    *,
    cv_scheme: str | None = None,
    metrics: pd.DataFrame | None = None,
    selection: dict | None = None,
) -> Path:
    """Save a fitted model and its model card into ``directory`` (atomically).

    Parameters
    ----------
    model : CarbonModel
        A fitted model. If it has a ``save(directory)`` method that is used; otherwise the
        model is pickled with joblib to ``model.joblib``.
    directory : path
        Output folder; replaced as a whole if it exists.
    cv_scheme : str, optional
        The CV scheme the model was selected/evaluated with (recorded in the card).
    metrics : pandas.DataFrame, optional
        Its metrics table (r2 dimensionless; rmse, mae in t C ha-1), recorded in the card.
    selection : dict, optional
        For the mapping model: how it was chosen (criterion, whether change was validated,
        the reason in words; :meth:`~terracarbon.models.change_validation.ModelChoice.
        as_dict`), recorded in the card as ``selection``.

    Returns
    -------
    pathlib.Path
        ``directory``.

    Raises
    ------
    ModelError
        ``model`` does not implement the CarbonModel protocol.
    """
    if not isinstance(model, CarbonModel):
        raise ModelError(
            f"save_model takes a CarbonModel (fit/predict_samples/predict_map/card), got "
            f"{type(model).__name__}."
        )
    directory = Path(directory)
    card = dict(model.card())
    card.setdefault("class", model.name)
    card["format"] = "native" if callable(getattr(model, "save", None)) else "joblib"
    card.update({
        "features": list(model.features),
        "targets": list(model.targets),
        "units": card.get("units", "t C ha-1"),
        "cv_scheme": cv_scheme,
        "metrics": None if metrics is None else metrics.to_dict(orient="records"),
        "selection": selection,
        "seed": card.get("seed", getattr(model, "seed", None)),
        "package_versions": package_versions(),
        "saved_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    })
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        if card["format"] == "native":
            model.save(tmp)  # type: ignore[attr-defined]
        else:
            import joblib

            joblib.dump(model, tmp / JOBLIB_NAME)
        (tmp / CARD_NAME).write_text(json.dumps(_jsonable(card), indent=2))
    return directory


def read_model_card(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``model_card.json`` of a saved model folder, as a dict."""
    path = Path(directory) / CARD_NAME
    if not path.is_file():
        raise InputDataError(
            f"{path}: no model card; is {Path(directory)} a folder written by save_model?"
        )
    return json.loads(path.read_text())


def load_model(directory: str | os.PathLike) -> CarbonModel:
    """Load a model saved by :func:`save_model`.

    Parameters
    ----------
    directory : path
        The saved model folder.

    Returns
    -------
    CarbonModel
        The fitted model (same predictions as when saved).

    Raises
    ------
    InputDataError
        Missing card or model file.
    ModelError
        Unregistered class key, or the file holds a different class than the card says.
    """
    directory = Path(directory)
    card = read_model_card(directory)
    cls = _resolve(str(card.get("class")))
    if card.get("format") == "native":
        return cls.load(directory)
    path = directory / JOBLIB_NAME
    if not path.is_file():
        raise InputDataError(f"{path}: model file missing next to {CARD_NAME}.")
    import joblib

    model = joblib.load(path)
    if not isinstance(model, cls):
        raise ModelError(
            f"{path} holds a {type(model).__name__} but the card says class "
            f"{card.get('class')!r} ({registry.import_path(card['class'])})."
        )
    return model
