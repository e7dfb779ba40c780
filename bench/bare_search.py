"""The same search as the service runs, as a bare keras-tuner script (the benchmark's baseline).

Usage: python bench/bare_search.py DATASET TRIALS EPOCHS SEED [NETWORK]
NETWORK is `template` (default: the service's template, 3 x 128 relu, on DATASET) or `cnn` (a user's
own CNN on digits as 8x8x1 images, bench/digits_cnn.py, searched as their keras-tuner script would:
a `build(hp)` that rebuilds it with the trial's dropout; DATASET must be `digits`).
Prints `search_s=...` (the search alone), `best_val_loss=...` (the best trial's score), `best_hp=...`
(its hyperparameters, JSON) and `trials=...` (each trial's hyperparameters and score). The split is
the service's, written out as `tuner.setup.split` makes it (stratified, test_size 0.2, random_state
SEED), so that the timed script imports no more than keras-tuner needs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

HyperModel = Callable[[kt.HyperParameters], keras.Model]


def template(x_train: np.ndarray, n_classes: int) -> HyperModel:
    """The service's template, normalised on the training split as the service does."""
    from models.dropout_net import ModelConfig, build, normalization_stats

    mean, variance = normalization_stats(x_train)
    config = ModelConfig(
        input_shape=x_train.shape[1:],
        task="classification",
        n_classes=n_classes,
        hidden_layers=3,
        units=128,
        activation="relu",
        learning_rate=1e-3,
        mean=mean,
        variance=variance,
    )
    return partial(build, config=config)


def cnn_build(hp: kt.HyperParameters) -> keras.Model:
    """The user's `build(hp)`: their CNN with the two hyperparameters the service searches."""
    from digits_cnn import cnn

    return cnn(hp.get("dropout_rate"), hp.get("dropout_layers"))


def main() -> None:
    dataset, trials, epochs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    network = sys.argv[5] if len(sys.argv) > 5 else "template"
    keras.utils.set_random_seed(seed)
    if network == "cnn":
        from digits_cnn import images

        if dataset != "digits":
            raise SystemExit("the cnn trains on digits only")
        x, y = images()
    else:
        from store.datasets import load_builtin

        data = load_builtin(dataset)
        x, y = data.x, data.y
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    hypermodel = cnn_build if network == "cnn" else template(x_train, len(np.unique(y)))
    hp = kt.HyperParameters()
    hp.Choice("dropout_rate", [round(0.1 * i, 1) for i in range(8)], ordered=True)
    hp.Int("dropout_layers", 0, 3)
    with tempfile.TemporaryDirectory() as workdir:
        tuner = kt.RandomSearch(
            hypermodel=hypermodel,
            objective=kt.Objective("val_loss", "min"),
            hyperparameters=hp,
            max_trials=trials,
            seed=seed,
            directory=workdir,
            project_name="bare",
        )
        started = time.perf_counter()
        tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=32, verbose=0)
        print(f"search_s={time.perf_counter() - started:.2f}")
        best = tuner.oracle.get_best_trials(1)[0]
        print(f"best_val_loss={best.score}")
        print(f"best_hp={json.dumps(best.hyperparameters.values)}")
        print(f"trials={json.dumps([[t.hyperparameters.values, t.score] for t in tuner.oracle.trials.values()])}")


if __name__ == "__main__":
    main()
