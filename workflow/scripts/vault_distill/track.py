"""Stage track: trainings recorded where people look at runs (training.report_to).

Offline by default. TensorBoard writes event files under results/<task>/runs/; MLflow writes to
a local SQLite store, results/mlflow.db, unless MLFLOW_TRACKING_URI names another (since MLflow
3.13 the plain ./mlruns file store refuses without MLFLOW_ALLOW_FILE_STORE); Trackio writes its
SQLite projects under results/trackio/, unless TRACKIO_DIR names another folder.

- While a trainer runs, `tracked_training` hands TRL the backend (`report_to`) and opens the run
  it logs to: loss, eval loss, learning rate and grad norm per step, plus this pipeline's own
  training, LoRA and quantization settings.
- After evaluation, the track job adds each task's compliance figures to that run (`log_evaluation`).
  A training made while report_to was `none` has no run: the job opens one and replays the
  training's loss log (train_log.csv) into it, so that turning tracking on never retrains.
- The quality benchmark adds its figures (compliance, gold accuracy, fidelity per arm and as
  deployed) to the same run (`append_figures`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError

# report_to -> the Python package its trainer callback needs.
BACKENDS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "trackio": "trackio"}
NONE = "none"
MLFLOW_STORE = "results/mlflow.db"
TRACKIO_STORE = "results/trackio"
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


def tracking_arguments(settings: dict) -> dict:
    """The trainer's tracking arguments: the backend, the run's name and its project (Trackio's,
    the MLflow experiment's name), never a Hugging Face Space (offline)."""
    return {
        "report_to": trainer_report_to(settings.get("report_to", NONE)),
        "run_name": settings.get("run_name"),
        "project": settings.get("experiment", "vault-distill"),
        "trackio_static_space_id": False,
    }


def mlflow_tracking_uri(store: str | Path = MLFLOW_STORE) -> str:
    """The user's MLFLOW_TRACKING_URI, else the local SQLite store `store`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(store).resolve()}"


def trackio_dir(store: str | Path = TRACKIO_STORE) -> str:
    """The user's TRACKIO_DIR, else the local folder `store`. Trackio reads it once, when imported."""
    return os.environ.get("TRACKIO_DIR") or str(Path(store).resolve())


def use_trackio_dir(store: str | Path = TRACKIO_STORE) -> None:
    """Sets TRACKIO_DIR (unless the user did) before anything imports Trackio: TRL imports it with
    itself where it is installed, and Trackio reads the folder only then."""
    os.environ["TRACKIO_DIR"] = trackio_dir(store)


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
    report_to: str,
    run_name: str,
    runs_dir: str | Path,
    experiment: str,
    params: dict,
    store: str = MLFLOW_STORE,
    trackio_store: str = TRACKIO_STORE,
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
    elif report_to == "trackio":
        # transformers' TrackioCallback opens the run itself (project: TrainingArguments.project).
        folder = trackio_dir(trackio_store)
        _trackio_folder(folder)
        with _environment({"TRACKIO_DIR": folder}):
            yield TrackedRun("trackio", run_name, log_dir=folder, experiment=experiment)
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
        mlflow.log_params(_prefixed_params(params))
        run = TrackedRun("mlflow", run_name, run_id=active.info.run_id, tracking_uri=uri, experiment=experiment)
        with _environment({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment}):
            yield run


def _prefixed_params(params: dict) -> dict[str, str]:
    """The pipeline's settings as `vault_distill.*`: MLflow's params, and keys of Trackio's config."""
    return {f"vault_distill.{key}": value for key, value in flat_params(params).items()}


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


def quality_figures(result: dict, bench: str = "quality") -> dict[str, float]:
    """One task's quality figures (quality.json's `tasks.<task>`) as run metrics: per arm its
    compliance, field agreement, gold accuracy and fidelity, the same as deployed, and the
    teacher's gold accuracy (`quality/tuned/gold/topic`)."""
    figures = {}
    arms = {key: value for key, value in result.items() if isinstance(value, dict) and "compliant" in value}
    for arm, scores in arms.items():
        name = f"{bench}/{arm}"
        figures[f"{name}/compliance"] = float(scores["rate"])
        figures[f"{name}/compliant"] = float(scores["compliant"])
        if scores.get("field_agreement") is not None:
            figures[f"{name}/field_agreement"] = float(scores["field_agreement"])
        figures |= _field_rates(f"{name}/gold", scores.get("gold") or {})
        fidelity = scores.get("fidelity") or {}
        figures |= {f"{name}/fidelity/{field}": float(value) for field, value in fidelity.items() if value is not None}
    return figures | _field_rates(f"{bench}/teacher/gold", result.get("teacher_gold") or {})


def _field_rates(name: str, fields: dict) -> dict[str, float]:
    return {f"{name}/{field}": float(score["rate"]) for field, score in fields.items() if score.get("rate") is not None}


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
    trackio_store: str = TRACKIO_STORE,
) -> dict:
    """Adds the evaluation's figures to the training's run; opens one (and replays `history` into it)
    where the training was not tracked with this backend. Returns the run's reference, with the
    step the figures were logged at."""
    check_backend(report_to)
    if report_to == NONE:
        return {"backend": NONE}
    same = trained if trained and trained.get("backend") == report_to else None
    run = TrackedRun(**same) if same else _new_run(report_to, task, runs_dir, experiment, store, trackio_store)
    step = max((row["step"] for row in history), default=0)
    # A new run gets the history and the settings; Trackio's config is rewritten on every resume.
    settings = params if not same or report_to == "trackio" else None
    append_figures(run.reference(), figures, step, history=[] if same else history, params=settings)
    return {**run.reference(), "step": step, "replayed_history": not same, "figures": len(figures)}


def _new_run(report_to, task, runs_dir, experiment, store, trackio_store) -> TrackedRun:
    """A run for a training that was not tracked with `report_to` (named after the task)."""
    if report_to == "tensorboard":
        return TrackedRun("tensorboard", task, log_dir=str(Path(runs_dir) / f"{run_stamp()}-{task}"))
    if report_to == "trackio":
        return TrackedRun("trackio", task, log_dir=trackio_dir(trackio_store), experiment=experiment)
    import mlflow

    uri = mlflow_tracking_uri(store)
    mlflow.set_tracking_uri(uri)
    _set_experiment(experiment, store)
    with mlflow.start_run(run_name=task) as active:
        return TrackedRun("mlflow", task, run_id=active.info.run_id, tracking_uri=uri, experiment=experiment)


def append_figures(
    reference: dict, figures: dict[str, float], step: int, history: list[dict] = (), params: dict | None = None
) -> None:
    """`figures` at `step` added to the run `reference` names, after `history` (train_log.csv's
    rows, replayed into a run the training did not log) and with the pipeline's `params`."""
    run = TrackedRun(**{key: value for key, value in reference.items() if key in TrackedRun.__dataclass_fields__})
    appenders = {"tensorboard": _tensorboard_append, "mlflow": _mlflow_append, "trackio": _trackio_append}
    appenders[run.backend](run, figures, step, list(history), params)


def _tensorboard_append(run: TrackedRun, figures, step, history, params) -> None:
    from torch.utils.tensorboard import SummaryWriter

    if params is not None:
        _tensorboard_params(run.log_dir, params)
    with SummaryWriter(log_dir=run.log_dir) as writer:
        for row in history:
            for key, value in row.items():
                if key != "step":
                    writer.add_scalar(_trainer_name(key), value, row["step"])
        for key, value in figures.items():
            writer.add_scalar(key, value, step)


def _trainer_name(key: str) -> str:
    """The name transformers' callbacks give a logged figure (`eval_loss` -> `eval/loss`)."""
    return f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"


def _mlflow_append(run: TrackedRun, figures, step, history, params) -> None:
    import mlflow

    mlflow.set_tracking_uri(run.tracking_uri)
    with mlflow.start_run(run_id=run.run_id):
        if params is not None:
            mlflow.log_params(_prefixed_params(params))
        for row in history:
            mlflow.log_metrics({key: value for key, value in row.items() if key != "step"}, step=row["step"])
        mlflow.log_metrics(figures, step=step)


def _trackio_append(run: TrackedRun, figures, step, history, params) -> None:
    """Trackio replaces a resumed run's config with the one it is given: the stored one is kept
    and the pipeline's settings added (as `vault_distill.*`, like MLflow's params)."""
    _trackio_folder(run.log_dir)
    with _environment({"TRACKIO_DIR": run.log_dir}):
        import trackio
        from trackio.sqlite_storage import SQLiteStorage

        exists = run.run_name in SQLiteStorage.get_runs(run.experiment)
        stored = SQLiteStorage.get_run_config(run.experiment, run.run_name) if exists else {}
        config = {key: value for key, value in (stored or {}).items() if not key.startswith("_")}
        config |= _prefixed_params(params) if params is not None else {}
        trackio.init(
            project=run.experiment,
            name=run.run_name,
            config=config,
            resume="must" if exists else "never",
            embed=False,
            auto_log_cpu=False,
            auto_log_gpu=False,
        )
        try:
            for row in history:
                trackio.log({_trainer_name(k): value for k, value in row.items() if k != "step"}, step=row["step"])
            trackio.log(figures, step=step)
        finally:
            trackio.finish()


def read_trackio_run(project: str, run_name: str, folder: str) -> dict:
    """A Trackio run as Trackio's own reader (its CLI, in a process of its own, which reads
    TRACKIO_DIR afresh) gives it back: {"config": ..., "metrics": {name: [(step, value)]}}."""
    trackio = str(Path(sys.executable).with_name("trackio"))

    def ask(*args: str) -> dict:
        done = subprocess.run(
            [trackio, "get", *args, "--project", project, "--run", run_name, "--json"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TRACKIO_DIR": folder},
        )
        return json.loads(done.stdout)

    run = ask("run")
    metrics = {}
    for name in run["metrics"]:
        values = ask("metric", "--metric", name)["values"]
        metrics[name] = [(row["step"], row["value"]) for row in values]
    return {"config": run["config"], "metrics": metrics}


def _trackio_folder(folder: str) -> None:
    """Trackio reads TRACKIO_DIR once, when first imported: one folder per process."""
    if "trackio.utils" in sys.modules and Path(sys.modules["trackio.utils"].TRACKIO_DIR) != Path(folder):
        imported = sys.modules["trackio.utils"].TRACKIO_DIR
        raise RuntimeError(f"trackio was imported in this process with TRACKIO_DIR={imported}, not {folder}")
