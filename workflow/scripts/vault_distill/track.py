"""Stage track: trainings recorded where people look at runs (training.report_to).

Offline by default. TensorBoard writes event files under results/<task>/runs/; MLflow writes to
a local SQLite store, results/mlflow.db, unless MLFLOW_TRACKING_URI names another (since MLflow
3.13 the plain ./mlruns file store refuses without MLFLOW_ALLOW_FILE_STORE).

- While a trainer runs, `tracked_training` hands TRL the backend (`report_to`) and opens the run
  it logs to: loss, eval loss, learning rate and grad norm per step, plus this pipeline's own
  training, LoRA and quantization settings.
- After evaluation, the track job adds each task's compliance figures to that run (`log_evaluation`).
  A training made while report_to was `none` has no run: the job opens one and replays the
  training's loss log (train_log.csv) into it, so that turning tracking on never retrains.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError

# report_to -> the Python package its trainer callback needs.
BACKENDS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
NONE = "none"
MLFLOW_STORE = "results/mlflow.db"
# The columns of train_log.csv that are per-step figures (TRL's names), as the trainer logs them.
HISTORY_FIGURES = ("loss", "eval_loss", "learning_rate", "grad_norm")


def check_backend(report_to: str, key: str = "training.report_to") -> None:
    """A clear error, naming the key and the package, when the backend is not installed."""
    if report_to == NONE:
        return
    if report_to not in BACKENDS:
        raise ConfigError(f"config key '{key}': {report_to!r} is not one of {NONE}, {', '.join(BACKENDS)}")
    package = BACKENDS[report_to]
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"config key '{key}': {report_to} needs the Python package '{package}' (pip install {package})"
        )


def trainer_report_to(report_to: str) -> list[str]:
    """TrainingArguments.report_to: [] turns every integration off (transformers' own default is all)."""
    return [] if report_to == NONE else [report_to]


def mlflow_tracking_uri(store: str | Path = MLFLOW_STORE) -> str:
    """The user's MLFLOW_TRACKING_URI, else the local SQLite store `store`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(store).resolve()}"


def flat_params(settings: dict, prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow/TensorBoard parameters: `quantization.nbits` -> "4"."""
    flat = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return flat


@dataclass
class TrackedRun:
    """Where one training was recorded: train_metrics.json's `tracking`."""

    backend: str
    run_name: str
    log_dir: str | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None

    def reference(self) -> dict:
        fields = {
            "backend": self.backend,
            "run_name": self.run_name,
            "log_dir": self.log_dir,
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment,
        }
        return {key: value for key, value in fields.items() if value is not None}


def run_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def tracked_training(
    report_to: str, run_name: str, runs_dir: str | Path, experiment: str, params: dict, store: str = MLFLOW_STORE
):
    """Around one trainer's `train()`: yields the TrackedRun (None for `none`) the trainer logs into."""
    check_backend(report_to)
    if report_to == NONE:
        yield None
    elif report_to == "tensorboard":
        run = TrackedRun(
            "tensorboard", run_name, log_dir=str(Path(runs_dir) / f"{run_stamp()}-{run_name.replace('/', '-')}")
        )
        _tensorboard_params(run.log_dir, params)
        with _environment({"TENSORBOARD_LOGGING_DIR": run.log_dir}):
            yield run
    else:
        with _mlflow_run(run_name, experiment, store, params) as run:
            yield run


@contextlib.contextmanager
def _mlflow_run(run_name: str, experiment: str, store: str | Path, params: dict):
    """An active MLflow run, which transformers' MLflowCallback logs into instead of opening its own."""
    import mlflow

    uri = mlflow_tracking_uri(store)
    mlflow.set_tracking_uri(uri)
    _set_experiment(experiment, store)
    with mlflow.start_run(run_name=run_name) as active:
        mlflow.log_params({f"vault_distill.{key}": value for key, value in flat_params(params).items()})
        run = TrackedRun("mlflow", run_name, run_id=active.info.run_id, tracking_uri=uri, experiment=experiment)
        with _environment({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment}):
            yield run


def _set_experiment(experiment: str, store: str | Path) -> None:
    """Parallel jobs creating the SQLite store (its schema migrations) or the experiment race:
    one at a time."""
    import mlflow
    from filelock import FileLock

    Path(store).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{store}.lock"):
        mlflow.set_experiment(experiment)


def _tensorboard_params(log_dir: str, params: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=log_dir) as writer:
        table = "\n".join(f"| {key} | {value} |" for key, value in flat_params(params).items())
        writer.add_text("vault_distill/settings", "| setting | value |\n|---|---|\n" + table)


def read_history(path: str | Path) -> list[dict]:
    """train_log.csv's rows as {figure: value} by step, only the figures a run shows."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            figures = {key: float(row[key]) for key in HISTORY_FIGURES if row.get(key)}
            if figures and row.get("step"):
                rows.append({"step": int(float(row["step"])), **figures})
    return rows


def evaluation_figures(evaluation: dict) -> dict[str, float]:
    """eval.json's headline figures per model: `eval/tuned/compliance` and its counts."""
    figures = {}
    for arm, scores in evaluation["models"].items():
        for key in ("compliance", "compliant", "answers", "parses_json", "tokens_per_s"):
            if scores.get(key) is not None:
                figures[f"eval/{arm}/{key}"] = float(scores[key])
    return figures


def log_evaluation(
    report_to: str,
    task: str,
    trained: dict | None,
    history: list[dict],
    figures: dict[str, float],
    runs_dir: str | Path,
    experiment: str,
    params: dict,
    store: str = MLFLOW_STORE,
) -> dict:
    """Adds the evaluation's figures to the training's run; opens one (and replays `history` into it)
    where the training was not tracked with this backend. Returns the run's reference."""
    check_backend(report_to)
    if report_to == NONE:
        return {"backend": NONE}
    same = trained if trained and trained.get("backend") == report_to else None
    if report_to == "tensorboard":
        return _tensorboard_evaluation(task, same, history, figures, runs_dir, params)
    return _mlflow_evaluation(task, same, history, figures, store, experiment, params)


def _tensorboard_evaluation(task, same, history, figures, runs_dir, params) -> dict:
    from torch.utils.tensorboard import SummaryWriter

    run = TrackedRun("tensorboard", task, log_dir=same["log_dir"]) if same else None
    if run is None:
        run = TrackedRun("tensorboard", task, log_dir=str(Path(runs_dir) / f"{run_stamp()}-{task}"))
        _tensorboard_params(run.log_dir, params)
    step = max((row["step"] for row in history), default=0)
    with SummaryWriter(log_dir=run.log_dir) as writer:
        if not same:
            for row in history:
                for key, value in row.items():
                    if key != "step":
                        writer.add_scalar(_trainer_name(key), value, row["step"])
        for key, value in figures.items():
            writer.add_scalar(key, value, step)
    return {**run.reference(), "replayed_history": not same, "figures": len(figures)}


def _trainer_name(key: str) -> str:
    """The name transformers' callbacks give a logged figure (`eval_loss` -> `eval/loss`)."""
    return f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"


def _mlflow_evaluation(task, same, history, figures, store, experiment, params) -> dict:
    import mlflow

    uri = same["tracking_uri"] if same else mlflow_tracking_uri(store)
    mlflow.set_tracking_uri(uri)
    if same:
        context = mlflow.start_run(run_id=same["run_id"])
    else:
        _set_experiment(experiment, store)
        context = mlflow.start_run(run_name=task)
    step = max((row["step"] for row in history), default=0)
    with context as active:
        if not same:
            mlflow.log_params({f"vault_distill.{key}": value for key, value in flat_params(params).items()})
            for row in history:
                mlflow.log_metrics({key: value for key, value in row.items() if key != "step"}, step=row["step"])
        mlflow.log_metrics(figures, step=step)
        run = TrackedRun("mlflow", task, run_id=active.info.run_id, tracking_uri=uri, experiment=experiment)
    return {**run.reference(), "replayed_history": not same, "figures": len(figures)}
