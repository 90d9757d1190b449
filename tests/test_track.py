"""training.report_to: real tiny trainings recorded by TensorBoard, MLflow and Trackio, read back
through each backend's own reader (TensorBoard's event accumulator, MLflow's client, Trackio's CLI)."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import default_config, tiny_sft_rows, tiny_training_settings

from vault_distill.config import ConfigError, check_tracking
from vault_distill.quantize import quantize_base
from vault_distill.runtime import write_jsonl
from vault_distill.track import (
    BACKENDS,
    append_figures,
    check_backend,
    evaluation_figures,
    flat_params,
    log_evaluation,
    quality_figures,
    read_history,
    read_trackio_run,
    tracked_training,
)
from vault_distill.train import train_adapter, write_log_history

HQQ = {"method": "hqq", "nbits": 4, "group_size": 64, "optimize": False}
EVALUATION = {
    "models": {
        "base": {"answers": 6, "compliant": 0, "compliance": 0.0, "parses_json": 1, "tokens_per_s": 70.0},
        "tuned": {"answers": 6, "compliant": 5, "compliance": 5 / 6, "parses_json": 6, "tokens_per_s": 35.0},
    }
}


def test_an_unknown_or_missing_backend_names_the_key_and_the_package(monkeypatch):
    check_backend("none")
    with pytest.raises(ConfigError, match=r"'training.report_to': 'wandb' is not one of none, tensorboard, mlflow"):
        check_backend("wandb")
    monkeypatch.setitem(BACKENDS, "mlflow", "mlflow_not_installed_here")
    with pytest.raises(ConfigError, match=r"needs the Python package 'mlflow_not_installed_here'"):
        check_backend("mlflow")
    config = default_config()
    config["tasks"]["judge"].setdefault("training", {})["report_to"] = "mlflow"
    with pytest.raises(ConfigError, match=r"^config key 'tasks.judge.training.report_to': mlflow needs"):
        check_tracking(config)
    config["tasks"]["judge"]["training"]["report_to"] = "none"
    check_tracking(config)


def test_settings_are_flattened_into_parameters():
    assert flat_params({"training": {"lora_r": 16, "target_modules": ["q_proj", "v_proj"]}, "task": "judge"}) == {
        "training.lora_r": "16",
        "training.target_modules": "q_proj,v_proj",
        "task": "judge",
    }


def test_evaluation_figures_are_each_arms_counts():
    figures = evaluation_figures(EVALUATION)
    assert figures["eval/tuned/compliance"] == pytest.approx(5 / 6)
    assert figures["eval/base/compliant"] == 0.0 and figures["eval/tuned/answers"] == 6.0
    assert len(figures) == 10


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("track") / "hqq"
    quantize_base(tiny_model_dir, folder, HQQ, "cpu", torch.bfloat16)
    return folder


def tiny_training(quantized, tiny_model_dir, tmp_path, report_to: str, experiment: str = "tests"):
    """Four real steps on the HQQ base of the tiny Llama, recorded by `report_to`."""
    settings = tiny_training_settings(max_steps=4, report_to=report_to, run_name="judge", experiment=experiment)
    rows = tiny_sft_rows(4)
    write_jsonl(tmp_path / "train.jsonl", rows)
    tracked = {"task": "judge", "training": {"lora_r": 4}, "quantization": HQQ}
    with tracked_training(
        report_to, "judge", tmp_path / "results/judge/runs", experiment, tracked, store=tmp_path / "results/mlflow.db"
    ) as run:
        result = train_adapter(
            rows,
            rows[:2],
            quantized,
            tiny_model_dir,
            tmp_path / "adapter",
            settings,
            tmp_path / "ckpt",
            100,
            tmp_path / "train.jsonl",
        )
    write_log_history(tmp_path / "train_log.csv", result.log_history)
    return run.reference(), result


def evaluate_into(report_to: str, reference: dict, tmp_path, experiment: str = "tests") -> dict:
    """What the track job does after tiny_training: EVALUATION's figures added to its run."""
    return log_evaluation(
        report_to,
        "judge",
        reference,
        read_history(tmp_path / "train_log.csv"),
        evaluation_figures(EVALUATION),
        tmp_path / "results/judge/runs",
        experiment,
        {"task": "judge"},
        store=tmp_path / "results/mlflow.db",
    )


def tensorboard_scalars(log_dir) -> tuple[dict[str, list], set[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    scalars = {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    return scalars, set(events.Tags()["tensors"])


def test_a_tensorboard_training_is_read_back_with_its_settings_and_evaluation(quantized, tiny_model_dir, tmp_path):
    reference, result = tiny_training(quantized, tiny_model_dir, tmp_path, "tensorboard")
    assert reference["backend"] == "tensorboard"
    assert reference["log_dir"].startswith(str(tmp_path / "results/judge/runs"))
    scalars, texts = tensorboard_scalars(reference["log_dir"])
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert scalars["train/loss"][-1][1] == pytest.approx(result.metrics["final_train_loss"], rel=1e-5)
    assert {"train/learning_rate", "train/grad_norm", "eval/loss"} <= set(scalars)
    assert "vault_distill/settings/text_summary" in texts

    logged = evaluate_into("tensorboard", reference, tmp_path)
    assert logged["log_dir"] == reference["log_dir"] and logged["replayed_history"] is False
    scalars, _ = tensorboard_scalars(reference["log_dir"])
    assert scalars["eval/tuned/compliance"] == [(4, pytest.approx(5 / 6))]
    assert len(scalars["train/loss"]) == 4  # the history was not logged a second time


def test_an_mlflow_training_is_read_back_from_its_sqlite_store(quantized, tiny_model_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    reference, result = tiny_training(quantized, tiny_model_dir, tmp_path, "mlflow")
    assert reference["tracking_uri"] == f"sqlite:///{(tmp_path / 'results/mlflow.db').resolve()}"
    client = MlflowClient(reference["tracking_uri"])
    run = client.get_run(reference["run_id"])
    assert run.info.run_name == "judge" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tests"
    assert run.data.params["vault_distill.training.lora_r"] == "4"
    assert run.data.params["vault_distill.quantization.method"] == "hqq"
    losses = client.get_metric_history(reference["run_id"], "loss")
    assert sorted(metric.step for metric in losses) == [1, 2, 3, 4]
    assert max(losses, key=lambda m: m.step).value == pytest.approx(result.metrics["final_train_loss"], rel=1e-5)
    assert {"learning_rate", "grad_norm", "eval_loss"} <= set(run.data.metrics)

    logged = evaluate_into("mlflow", reference, tmp_path)
    assert logged["run_id"] == reference["run_id"]
    metrics = client.get_run(reference["run_id"]).data.metrics
    assert metrics["eval/tuned/compliance"] == pytest.approx(5 / 6) and metrics["eval/base/compliant"] == 0
    assert len(client.get_metric_history(reference["run_id"], "loss")) == 4


QUALITY = {
    "tuned": {
        "n": 4,
        "compliant": 3,
        "rate": 0.75,
        "field_agreement": 0.5,
        "gold": {"goal": {"rate": 0.5}},
        "fidelity": {"goal": 1.25, "horizon": None},
    },
    "as_deployed": {"arm": "tuned_grammar", "n": 4, "compliant": 4, "rate": 1.0, "gold": {"goal": {"rate": 0.75}}},
    "teacher_gold": {"goal": {"n": 4, "correct": 2, "rate": 0.5}},
    "inputs": {"heldout": 4},
}


def test_quality_figures_are_each_arms_compliance_gold_and_fidelity():
    assert quality_figures(QUALITY) == {
        "quality/tuned/compliance": 0.75,
        "quality/tuned/compliant": 3.0,
        "quality/tuned/field_agreement": 0.5,
        "quality/tuned/gold/goal": 0.5,
        "quality/tuned/fidelity/goal": 1.25,
        "quality/as_deployed/compliance": 1.0,
        "quality/as_deployed/compliant": 4.0,
        "quality/as_deployed/gold/goal": 0.75,
        "quality/teacher/gold/goal": 0.5,
    }
    assert set(quality_figures(QUALITY, "holdout")) == {
        key.replace("quality/", "holdout/", 1) for key in quality_figures(QUALITY)
    }


@pytest.fixture
def trackio_store() -> str:
    """The suite's own TRACKIO_DIR (conftest): Trackio reads it once per process, when imported."""
    return os.environ["TRACKIO_DIR"]


def test_a_trackio_training_is_read_back_with_its_settings_evaluation_and_quality(
    quantized, tiny_model_dir, tmp_path, trackio_store
):
    project = f"tests-{tmp_path.name}"
    reference, result = tiny_training(quantized, tiny_model_dir, tmp_path, "trackio", project)
    assert reference == {"backend": "trackio", "run_name": "judge", "log_dir": trackio_store, "experiment": project}
    run = read_trackio_run(project, "judge", trackio_store)
    # Trackio counts its own steps (one per log call); the trainer's step is train/global_step.
    losses = run["metrics"]["train/loss"]
    assert len(losses) == 4 and losses[-1][1] == pytest.approx(result.metrics["final_train_loss"], rel=1e-5)
    assert {value for _, value in run["metrics"]["train/global_step"]} == {1, 2, 3, 4}
    assert {"train/learning_rate", "train/grad_norm", "eval/loss"} <= set(run["metrics"])

    logged = evaluate_into("trackio", reference, tmp_path, project)
    assert logged["replayed_history"] is False and logged["step"] == 4
    append_figures(logged, quality_figures(QUALITY), logged["step"])
    run = read_trackio_run(project, "judge", trackio_store)
    assert run["metrics"]["eval/tuned/compliance"] == [(4, pytest.approx(5 / 6))]
    assert run["metrics"]["quality/as_deployed/compliance"] == [(4, 1.0)]
    assert len(run["metrics"]["train/loss"]) == 4  # the history was not logged a second time
    # The trainer's own config (TrainingArguments) is kept beside the pipeline's settings.
    assert run["config"]["vault_distill.task"] == "judge" and run["config"]["max_steps"] == 4


def test_an_untracked_training_is_replayed_into_a_new_run(tmp_path):
    """report_to turned on after training: the track job opens the run from train_log.csv."""
    from mlflow.tracking import MlflowClient

    (tmp_path / "train_log.csv").write_text(
        "step,epoch,eval_loss,grad_norm,learning_rate,loss\n1,0.5,,1.2,0.001,0.9\n2,1.0,0.8,,,\n2,1.0,,1.1,0.0005,0.7\n",
        encoding="utf-8",
    )
    history = read_history(tmp_path / "train_log.csv")
    assert history[1] == {"step": 2, "eval_loss": 0.8}
    logged = log_evaluation(
        "mlflow",
        "judge",
        None,
        history,
        evaluation_figures(EVALUATION),
        tmp_path / "runs",
        "tests",
        {"task": "judge", "training": {"lora_r": 16}},
        store=tmp_path / "mlflow.db",
    )
    assert logged["replayed_history"] is True
    client = MlflowClient(logged["tracking_uri"])
    assert [(m.step, m.value) for m in client.get_metric_history(logged["run_id"], "loss")] == [(1, 0.9), (2, 0.7)]
    assert client.get_run(logged["run_id"]).data.params["vault_distill.training.lora_r"] == "16"
