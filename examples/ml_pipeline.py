"""The paved path from data to a deployed model, as a pave TaskFlow DAG.

    workspace (setup)
      -> load_data -> check_data -> quality_gate --> halt            (bad data: fail the run)
                                               \--> make_grid
      -> train[hparams] x grid_size (mapped; cpu 1, memory 1Gi, gpu 1 -- CPU when there is no GPU)
      -> pick_best -> slo_gate --> deploy   (publish to the registry, make it current)
                              \--> alert    (keep the current model, write an alert)
      -> report (teardown): a summary of the run, whatever happened

Only small JSON goes through XCom: the dataset and the models are files
under $PAVE_HOME/artifacts/<dag_id>/<run_id>/, passed around as file:// URIs.
Published models live in $PAVE_HOME/registry/<model>/v<N>/, and
$PAVE_HOME/registry/<model>/current is a symlink to the live version.

Run it once, in process (needs `python3 -m pip install -r examples/requirements.txt`):

    pave dags test examples/ml_pipeline.py
    pave dags test examples/ml_pipeline.py --conf '{"min_accuracy": 0.999}'   # -> alert
    pave dags test examples/ml_pipeline.py --conf '{"min_rows": 100000}'      # -> halt

numpy and scikit-learn are imported inside the tasks only, so parsing this
file is fast and works where they are not installed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlparse

from pave import AirflowFailException, Param, dag, get_current_context, setup, task, teardown

MODEL_NAME = "digits-classifier"

# The hyperparameter grid, tried in this order; `grid_size` takes the first N.
CANDIDATES = [
    {"model": "logreg", "C": 0.1},
    {"model": "logreg", "C": 1.0},
    {"model": "random_forest", "n_estimators": 50, "max_depth": 8},
    {"model": "random_forest", "n_estimators": 100, "max_depth": None},
    {"model": "logreg", "C": 0.01},
    {"model": "random_forest", "n_estimators": 30, "max_depth": 4},
    {"model": "logreg", "C": 10.0},
    {"model": "random_forest", "n_estimators": 200, "max_depth": 12},
]


# Each trial asks for one GPU. On a machine without any GPU, pave's local
# executor runs GPU tasks on CPU (the task log says so and the task sees
# PAVE_GPU_FALLBACK=cpu); with GPUs, the task gets one through
# CUDA_VISIBLE_DEVICES.
TRAIN_RESOURCES = {"cpu": 1, "memory": "1Gi", "gpu": 1}


# -- artifact helpers -----------------------------------------------------------

def pave_home() -> Path:
    return Path(os.environ.get("PAVE_HOME") or Path.home() / ".pave").expanduser().resolve()


def safe_name(run_id: str) -> str:
    """A run id as a file name (run ids hold ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def to_uri(path: Path) -> str:
    return path.resolve().as_uri()


def from_uri(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ValueError(f"only file:// URIs are supported here, got {uri!r}")
    return Path(unquote(parsed.path))


def write_json(path: Path, value: dict) -> None:
    """Writes `value` to `path` atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# -- the DAG --------------------------------------------------------------------

@dag(
    dag_id="digits_classifier",
    description="Train digit classifiers over a hyperparameter grid; deploy the best if it meets the SLO.",
    schedule=None,  # trigger by hand; "@daily" would retrain every day
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,  # one deploy at a time
    tags=["example", "ml"],
    default_args={"retries": 1, "retry_delay": 5},
    params={
        "min_accuracy": Param(0.9, type="number", minimum=0, maximum=1,
                              description="Deploy only when the best test accuracy is at least this"),
        "grid_size": Param(6, type="integer", minimum=1, maximum=len(CANDIDATES),
                           description="How many hyperparameter settings to train"),
        "min_rows": Param(1000, type="integer", minimum=1,
                          description="Data-quality gate: the fewest rows to accept"),
    },
)
def digits_classifier():

    # ---- prep ------------------------------------------------------------------

    @setup
    @task
    def workspace(dag=None, run_id=None) -> str:
        """Creates this run's artifact folder and returns its URI."""
        folder = pave_home() / "artifacts" / dag.dag_id / safe_name(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"artifacts go to {folder}")
        return to_uri(folder)

    @task
    def load_data(workspace_uri: str) -> str:
        """Loads scikit-learn's digits (shipped with the package), splits it once
        so every trial is scored on the same test set, and saves it."""
        import numpy as np
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, stratify=y, random_state=0)
        path = from_uri(workspace_uri) / "data.npz"
        np.savez_compressed(path, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
        print(f"saved {len(X)} rows x {X.shape[1]} features to {path}")
        return to_uri(path)

    @task
    def check_data(data_uri: str, params=None) -> dict:
        """Data-quality checks; returns a report (the gate reads it)."""
        import numpy as np

        data = np.load(from_uri(data_uri))
        X = np.concatenate([data["X_train"], data["X_test"]])
        y = np.concatenate([data["y_train"], data["y_test"]])
        counts = np.bincount(y)
        failures = []
        if len(X) < params["min_rows"]:
            failures.append(f"{len(X)} rows, fewer than min_rows={params['min_rows']}")
        if np.isnan(X).any():
            failures.append(f"{int(np.isnan(X).sum())} NaN values")
        if counts.min() < 0.5 * len(y) / len(counts):
            failures.append(f"class imbalance: smallest class has {counts.min()} of {len(y)} rows")
        if X.min() < 0 or X.max() > 16:  # digits are 8x8 images of 0..16 intensities
            failures.append(f"feature values outside [0, 16]: [{X.min()}, {X.max()}]")
        report = {"rows": int(len(X)), "features": int(X.shape[1]), "classes": int(len(counts)),
                  "smallest_class": int(counts.min()), "failures": failures}
        print(json.dumps(report))
        return report

    @task.branch
    def quality_gate(report: dict) -> str:
        return "make_grid" if not report["failures"] else "halt"

    @task
    def halt(report: dict):
        """Bad data: fail the run (no retry) so it shows red, naming every check."""
        raise AirflowFailException("data-quality gate failed: " + "; ".join(report["failures"]))

    # ---- train -----------------------------------------------------------------

    @task
    def make_grid(params=None) -> list[dict]:
        """Built at run time, so `grid_size` can change per run."""
        return CANDIDATES[: params["grid_size"]]

    @task(resources=TRAIN_RESOURCES, execution_timeout=300)
    def train(data_uri: str, hparams: dict) -> dict:
        """Trains one model (one mapped instance per grid point), saves it, and
        returns its metrics. scikit-learn runs on the CPU; with a GPU slot,
        pave sets CUDA_VISIBLE_DEVICES for frameworks that use it."""
        import pickle

        import numpy as np
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        ti = get_current_context()["ti"]
        print(f"trial {ti.map_index}: {hparams}, GPUs: {os.environ.get('CUDA_VISIBLE_DEVICES', 'none')}")
        data = np.load(from_uri(data_uri))
        if hparams["model"] == "logreg":
            model = make_pipeline(StandardScaler(), LogisticRegression(C=hparams["C"], max_iter=500))
        else:
            model = RandomForestClassifier(n_estimators=hparams["n_estimators"],
                                           max_depth=hparams["max_depth"], random_state=0, n_jobs=1)
        model.fit(data["X_train"], data["y_train"])
        accuracy = float(model.score(data["X_test"], data["y_test"]))

        path = from_uri(data_uri).parent / f"model-{ti.map_index}.pkl"
        path.write_bytes(pickle.dumps(model))
        print(f"trial {ti.map_index}: accuracy {accuracy:.4f}, saved to {path}")
        return {"params": hparams, "accuracy": round(accuracy, 4), "model_uri": to_uri(path)}

    # ---- validate --------------------------------------------------------------

    @task
    def pick_best(trials: list[dict]) -> dict:
        """Receives every mapped trial's result, in map-index order."""
        for t in trials:
            print(f"{t['accuracy']:.4f}  {t['params']}")
        best = max(trials, key=lambda t: t["accuracy"])
        print(f"best: {best['accuracy']:.4f} with {best['params']}")
        return best

    @task.branch
    def slo_gate(best: dict, params=None) -> str:
        return "deploy" if best["accuracy"] >= params["min_accuracy"] else "alert"

    # ---- deploy ----------------------------------------------------------------

    @task
    def deploy(best: dict, data_uri: str, dag=None, run_id=None) -> dict:
        """Publishes the model as the next version and points `current` at it.
        A retry of the same run reuses the version it already published."""
        registry = pave_home() / "registry" / MODEL_NAME
        registry.mkdir(parents=True, exist_ok=True)
        versions = sorted((int(p.name[1:]) for p in registry.glob("v*") if p.name[1:].isdigit()))

        def run_of(version: int):
            meta = registry / f"v{version}" / "metadata.json"
            return json.loads(meta.read_text()).get("run_id") if meta.is_file() else None

        published = next((v for v in versions if run_of(v) == run_id), None)
        if published is None:
            staging = registry / f".staging-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            shutil.copyfile(from_uri(best["model_uri"]), staging / "model.pkl")
            write_json(staging / "metadata.json", {
                "model": MODEL_NAME, "params": best["params"], "metrics": {"accuracy": best["accuracy"]},
                "dag_id": dag.dag_id, "run_id": run_id, "data_uri": data_uri,
                "source_model_uri": best["model_uri"],
                "created_at": datetime.now(timezone.utc).isoformat(),
            })
            published = (versions[-1] if versions else 0) + 1
            while True:  # renaming a folder is atomic; a taken number moves us on
                try:
                    os.rename(staging, registry / f"v{published}")
                    break
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    published += 1

        # Swap `current` atomically: a new symlink renamed over the old one.
        link = registry / f".current-{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(f"v{published}")
        os.replace(link, registry / "current")
        print(f"deployed {MODEL_NAME} v{published} (accuracy {best['accuracy']}) -> {registry / 'current'}")
        return {"model": MODEL_NAME, "version": published, "uri": to_uri(registry / f"v{published}")}

    @task
    def alert(best: dict, params=None, run_id=None) -> str:
        """The best model missed the SLO: keep the current version, say so loudly."""
        registry = pave_home() / "registry" / MODEL_NAME
        path = registry / "alerts" / f"{safe_name(run_id)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"run_id": run_id, "best": best, "min_accuracy": params["min_accuracy"],
                          "created_at": datetime.now(timezone.utc).isoformat()})
        current = registry / "current"
        kept = os.readlink(current) if current.is_symlink() else "none"
        print(f"ALERT: best accuracy {best['accuracy']} < min_accuracy {params['min_accuracy']}; "
              f"not deployed, current stays {kept}; details in {path}")
        return to_uri(path)

    @teardown
    @task
    def report(workspace_uri: str, ti=None) -> dict:
        """Runs last, whatever happened; writes summary.json into the run's folder."""
        summary = {
            "data_quality": ti.xcom_pull(task_ids="check_data"),
            "trials": ti.xcom_pull(task_ids="train"),
            "best": ti.xcom_pull(task_ids="pick_best"),
            "deployed": ti.xcom_pull(task_ids="deploy"),
            "alert": ti.xcom_pull(task_ids="alert"),
        }
        write_json(from_uri(workspace_uri) / "summary.json", summary)
        print(json.dumps(summary, indent=2))
        return {k: v for k, v in summary.items() if k in ("best", "deployed", "alert")}

    # ---- wiring: data flows through arguments; >> only where no data does ------

    folder = workspace()
    data_uri = load_data(folder)
    quality = check_data(data_uri)
    gate = quality_gate(quality)
    stop = halt(quality)
    grid = make_grid()
    gate >> [grid, stop]

    trials = train.partial(data_uri=data_uri).expand(hparams=grid)
    best = pick_best(trials)
    decision = slo_gate(best)
    shipped = deploy(best, data_uri)
    alerted = alert(best)
    decision >> [shipped, alerted]

    [stop, shipped, alerted] >> report(folder)


digits_classifier()
