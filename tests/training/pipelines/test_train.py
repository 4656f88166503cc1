"""`train_all` (``rebuy train``): aliases move only once every model trained and registered.

One module fixture, one real SQLite MLflow in tmp_path, three runs on the same small store:

A. the repurchase step refuses its config (a policy rule naming an unknown segment) after the
   recommender was trained and registered: no name gets any alias;
B. a run that succeeds: every model's new version becomes its champion;
C. a second successful run, through the CLI: every new version becomes challenger, the
   champions stay, and the summary table shows the aliases finally set.

A and B fit the repurchase models in a second process beside the recommender (``parallel=True``,
what stores of a million events get); C, through the CLI, trains this small store one step after
the other. Both ways give the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.load import write_store
from features.sample import SampleConfig, generate_store
from features.schema import StoreTables
from features.window import default_as_of
from rebuy.cli import app
from tests.training.pipelines.weak_configs import WEAK_RECOMMENDER, WEAK_REPURCHASE
from training.pipelines.train import REPURCHASE_STEP, TrainResult, TrainStepError, train_all
from training.recommender import load_recommender_config
from training.registry import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAMES,
    RECOMMENDER_MODEL,
    REPURCHASE_MODEL,
    TIMING_MODEL,
    RegistrySettings,
    get_alias_version,
)
from training.repurchase.config import load_repurchase_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD_POLICY = (
    WEAK_REPURCHASE
    + """
[[policy.rules]]
segment = "vip"
action = "gold_card"
"""
)


@dataclass
class Runs:
    settings: RegistrySettings
    a_error: TrainStepError
    a_aliases: dict[str, dict[str, str | None]]
    a_versions: dict[str, list[tuple[str, list[str]]]]
    b: TrainResult
    b_aliases: dict[str, dict[str, str | None]]
    c_exit: int
    c_output: str
    c_aliases: dict[str, dict[str, str | None]]
    c_repurchase_metrics: dict[str, float]


def _aliases(settings: RegistrySettings) -> dict[str, dict[str, str | None]]:
    """Per registered name, the version each alias points to (None: no such alias)."""
    out: dict[str, dict[str, str | None]] = {}
    for name in MODEL_NAMES:
        out[name] = {}
        for alias in (CHAMPION, CHALLENGER):
            version = get_alias_version(settings, name, alias=alias)
            out[name][alias] = None if version is None else str(version.version)
    return out


def _versions(settings: RegistrySettings) -> dict[str, list[tuple[str, list[str]]]]:
    """Per registered name, (version, its aliases) for every version the registry holds."""
    client = settings.client()
    out = {}
    for model in client.search_registered_models():
        found = client.search_model_versions(f"name='{model.name}'")
        out[model.name] = sorted((str(v.version), list(v.aliases)) for v in found)
    return out


def _train(store: StoreTables, settings: RegistrySettings, root: Path, repurchase_toml: str) -> TrainResult:
    (root / "reco.toml").write_text(WEAK_RECOMMENDER)
    (root / "rep.toml").write_text(repurchase_toml)
    return train_all(
        store,
        as_of=default_as_of(store),
        recommender_config=load_recommender_config(root / "reco.toml"),
        repurchase_config=load_repurchase_config(root / "rep.toml"),
        settings=settings,
        parallel=True,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("train")
    store = generate_store(SampleConfig(users=700, days=240, seed=5))
    write_store(store, root / "store")
    home = root / "home"
    settings = RegistrySettings.from_env({"REBUY_HOME": str(home)})

    with pytest.raises(TrainStepError) as failed:
        _train(store, settings, root, BAD_POLICY)
    a_aliases, a_versions = _aliases(settings), _versions(settings)
    b = _train(store, settings, root, WEAK_REPURCHASE)
    b_aliases = _aliases(settings)
    (root / "rep.toml").write_text(WEAK_REPURCHASE)
    c = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(root / "store"),
            "--recommender-config",
            str(root / "reco.toml"),
            "--repurchase-config",
            str(root / "rep.toml"),
        ],
        env={"REBUY_HOME": str(home), "MLFLOW_TRACKING_URI": ""},
    )
    client = settings.client()
    c_run = client.get_model_version(REPURCHASE_MODEL, "2").run_id
    c_metrics = dict(client.get_run(c_run).data.metrics)
    return Runs(
        settings,
        failed.value,
        a_aliases,
        a_versions,
        b,
        b_aliases,
        c.exit_code,
        c.output,
        _aliases(settings),
        c_metrics,
    )


def test_a_failed_step_leaves_every_name_without_an_alias(runs: Runs) -> None:
    assert runs.a_error.step == REPURCHASE_STEP
    assert runs.a_error.registered == {RECOMMENDER_MODEL: "1"}
    message = str(runs.a_error)
    assert "repurchase and timing step" in message and "segment 'vip' is unknown" in message
    assert "no alias was changed; registered without an alias: rebuy-recommender v1" in message
    # the recommender was registered before the failure, alias-free; the others never were
    assert runs.a_versions == {RECOMMENDER_MODEL: [("1", [])]}
    assert all(alias is None for by_alias in runs.a_aliases.values() for alias in by_alias.values())


def test_a_successful_run_makes_champions_of_all_three(runs: Runs) -> None:
    assert runs.b.aliases == {RECOMMENDER_MODEL: CHAMPION, REPURCHASE_MODEL: CHAMPION, TIMING_MODEL: CHAMPION}
    assert runs.b.recommender.alias == CHAMPION
    assert (runs.b.repurchase.repurchase_alias, runs.b.repurchase.timing_alias) == (CHAMPION, CHAMPION)
    assert runs.b_aliases == {
        RECOMMENDER_MODEL: {CHAMPION: "2", CHALLENGER: None},  # v1 of the failed run keeps no alias
        REPURCHASE_MODEL: {CHAMPION: "1", CHALLENGER: None},
        TIMING_MODEL: {CHAMPION: "1", CHALLENGER: None},
    }


def test_a_second_run_gives_challengers_and_shows_them(runs: Runs) -> None:
    assert runs.c_exit == 0, runs.c_output
    assert runs.c_aliases == {
        RECOMMENDER_MODEL: {CHAMPION: "2", CHALLENGER: "3"},
        REPURCHASE_MODEL: {CHAMPION: "1", CHALLENGER: "2"},
        TIMING_MODEL: {CHAMPION: "1", CHALLENGER: "2"},
    }
    for name, version in ((RECOMMENDER_MODEL, "3"), (REPURCHASE_MODEL, "2"), (TIMING_MODEL, "2")):
        row = next(line for line in runs.c_output.splitlines() if line.startswith(f"│ {name}"))
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[:3] == [name, version, CHALLENGER], runs.c_output
    assert "aliases: done in" in runs.c_output


def test_a_second_process_fits_the_same_repurchase_models_as_one_process(runs: Runs) -> None:
    parallel = runs.b.repurchase.metrics  # run B, fitted beside the recommender
    assert parallel["lightgbm.roc_auc"] > 0.5 and len(parallel) > 20
    assert {k: runs.c_repurchase_metrics[k] for k in parallel} == pytest.approx(parallel, rel=1e-9)
