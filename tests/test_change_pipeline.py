"""Change through the whole pipeline (issue #14): a user's inventory export with remeasured
plots validates change and chooses the model by it; a two-campaign design without revisits
runs, says change is unvalidated, and still gives change intervals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny_study import load_run_all, make_tiny_study

run_all = load_run_all()
STAGES = ["--from", "01_data_prep"]


def _run(tmp_path: Path, *, remeasured: bool) -> Path:
    study = make_tiny_study(tmp_path / "study", remeasured=remeasured)
    runs = tmp_path / "runs"
    argv = ["--params", str(study), "--runs-dir", str(runs),
            "--set", "study.stages=[01_data_prep,02_train_models,03_carbon_maps]",
            "--set", "models.ensemble_members=12"]
    assert run_all.main(argv) == 0
    return runs / "tiny"


@pytest.fixture(scope="module")
def remeasured_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("change_remeasured"), remeasured=True)


@pytest.fixture(scope="module")
def two_campaign_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("change_two_campaigns"), remeasured=False)


def test_remeasured_plots_from_a_csv_validate_change(remeasured_run):
    samples = pd.read_csv(remeasured_run / "01_data_prep" / "samples.csv")
    twice = int((samples.groupby("plot_id")["year"].nunique() == 2).sum())
    change = pd.read_csv(remeasured_run / "02_train_models" / "change_validation.csv")
    assert set(change["model"]) >= {"mlr", "rf"}
    for _, row in change.iterrows():  # one pair per site measured in both campaigns
        assert 0.9 * twice <= row["n_pairs"] <= twice
        assert row["units"] == "t C ha-1" and np.isfinite(row["rate_rmse"])
    choice = json.loads((remeasured_run / "02_train_models" / "best_model.json").read_text())
    assert choice["criterion"] == "remeasured_change" and choice["change_validated"]
    assert choice["best_model"] in choice["shortlist"]
    card = json.loads((remeasured_run / "02_train_models" / "models" / choice["best_model"]
                       / "model_card.json").read_text())
    assert card["selection"]["criterion"] == "remeasured_change"
    # the model with the lowest change-rate error on the shortlist is among the tied ones,
    # and of those the chosen model has the lowest spatial-CV RMSE
    rate = change.groupby("model")["rate_rmse"].mean()
    assert rate.reindex(choice["shortlist"]).idxmin() in choice["tied"]
    assert choice["best_model"] in choice["tied"]
    metrics = pd.read_csv(remeasured_run / "02_train_models" / "metrics.csv")
    assert {"campaign", "loso", "spatial_block", "random"} <= set(metrics["cv_scheme"])
    spatial = metrics[(metrics.cv_scheme == "spatial_block") & (metrics.split == "cv_mean")]
    level = spatial.groupby("model")["rmse"].mean()
    assert level[choice["best_model"]] == level.reindex(choice["tied"]).min()
    assert choice["plausible"][0] == choice["best_model"]
    assert set(choice["plausible"]) == set(choice["tied"])


def test_change_has_an_interval_and_the_index_shows_it(remeasured_run):
    change = pd.read_csv(remeasured_run / "03_carbon_maps" / "change.csv")
    whole = change[change["period"] == "whole"].set_index("pool")
    assert (whole["lower_Tg"] < whole["upper_Tg"]).all()
    index = (remeasured_run / "index.html").read_text()
    lo, hi = whole.loc["total", ["lower_Tg", "upper_Tg"]]
    assert f"[{lo:.2f}, {hi:.2f}]".replace("-", "") in index.replace("-", "").replace("−", "")
    assert "change unvalidated" not in index
    assert (remeasured_run / "03_carbon_maps" / "change_map.nc").exists()


def test_two_campaigns_without_revisits_say_change_is_unvalidated(two_campaign_run):
    change = pd.read_csv(two_campaign_run / "02_train_models" / "change_validation.csv")
    assert (change["n_pairs"] == 0).all()
    choice = json.loads((two_campaign_run / "02_train_models" / "best_model.json").read_text())
    assert choice["criterion"] == "leave_one_campaign_out"
    assert not choice["change_validated"] and "unvalidated" in choice["reason"]
    table = pd.read_csv(two_campaign_run / "03_carbon_maps" / "change.csv")
    whole = table[table["period"] == "whole"]
    assert whole[["lower_Tg", "upper_Tg"]].notna().all().all()
    index = (two_campaign_run / "index.html").read_text()
    assert "change unvalidated" in index
    report = (two_campaign_run / "03_carbon_maps" / "03_carbon_maps.html").read_text()
    assert "change unvalidated" in report
