"""The same search as the service runs, as a bare keras-tuner script (the benchmark's baseline).

Usage: python bench/bare_search.py DATASET TRIALS EPOCHS SEED
Prints `search_s=...` (the search alone) and `best_val_loss=...` (the best trial's score). The model and
the split are the service's; the split is written out as `tuner.setup.split` makes it (stratified,
test_size 0.2, random_state SEED), so that the timed script imports no more than keras-tuner needs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from models.dropout_net import ModelConfig, build, normalization_stats  # noqa: E402
from store.datasets import load_builtin  # noqa: E402


def main() -> None:
    dataset, trials, epochs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    keras.utils.set_random_seed(seed)
    data = load_builtin(dataset)
    stratify = data.y if data.task == "classification" else None
    x_train, x_val, y_train, y_val = train_test_split(
        data.x, data.y, test_size=0.2, random_state=seed, stratify=stratify
    )
    mean, variance = normalization_stats(x_train)
    config = ModelConfig(
        input_shape=x_train.shape[1:],
        task="classification",
        n_classes=data.n_classes,
        hidden_layers=3,
        units=128,
        activation="relu",
        learning_rate=1e-3,
        mean=mean,
        variance=variance,
    )
    hp = kt.HyperParameters()
    hp.Choice("dropout_rate", [round(0.1 * i, 1) for i in range(8)], ordered=True)
    hp.Int("dropout_layers", 0, 3)
    with tempfile.TemporaryDirectory() as workdir:
        tuner = kt.RandomSearch(
            hypermodel=partial(build, config=config),
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
        print(f"best_val_loss={tuner.oracle.get_best_trials(1)[0].score}")


if __name__ == "__main__":
    main()
