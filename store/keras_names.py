"""Keras's built-in names a job may give, known without importing Keras: losses, optimizers and metrics
(`model.loss`, `model.optimizer`, `model.metrics`), and which way each metric is better.

A loss or metric fits a network's one output (its `Head`): one sigmoid unit for two classes, a softmax
unit per class (the target a class index, as droptune's datasets store it), or a regression's value.
Each allow-listed name is one Keras resolves (`keras.losses.get`, `keras.optimizers.get`, a compiled
metric's string); a contract test checks them against Keras, and `keras_tuner_direction` against
keras-tuner's own inference.
"""

from __future__ import annotations

from typing import Literal

Head = Literal["binary", "classes", "regression"]
HEAD_TEXT: dict[str, str] = {
    "binary": "one sigmoid unit (two classes)",
    "classes": "a softmax unit per class",
    "regression": "a regression's value",
}

LOSSES: dict[str, Head] = {
    "binary_crossentropy": "binary",
    "binary_focal_crossentropy": "binary",
    "hinge": "binary",
    "squared_hinge": "binary",
    "sparse_categorical_crossentropy": "classes",
    "mean_squared_error": "regression",
    "mse": "regression",
    "mean_absolute_error": "regression",
    "mae": "regression",
    "mean_absolute_percentage_error": "regression",
    "mape": "regression",
    "mean_squared_logarithmic_error": "regression",
    "msle": "regression",
    "huber": "regression",
    "log_cosh": "regression",
}
# Each built with the job's `model.learning_rate` and Keras's defaults otherwise.
OPTIMIZERS = ("adam", "adamw", "adamax", "nadam", "sgd", "rmsprop", "adagrad", "adadelta", "lion", "ftrl")
_BINARY: frozenset[Head] = frozenset({"binary"})
_CLASSES: frozenset[Head] = frozenset({"classes"})
_CLASSIFICATION: frozenset[Head] = frozenset({"binary", "classes"})
_REGRESSION: frozenset[Head] = frozenset({"regression"})
# A metric by the name `fit` logs it under (the name given), and the heads it is computed for.
METRICS: dict[str, frozenset[Head]] = {
    "accuracy": _CLASSIFICATION,
    "binary_accuracy": _BINARY,
    "auc": _BINARY,
    "precision": _BINARY,
    "recall": _BINARY,
    "sparse_categorical_accuracy": _CLASSES,
    "sparse_top_k_categorical_accuracy": _CLASSES,
    "mae": _REGRESSION,
    "mse": _REGRESSION,
    "mean_absolute_error": _REGRESSION,
    "mean_squared_error": _REGRESSION,
    "root_mean_squared_error": _REGRESSION,
    "mape": _REGRESSION,
    "msle": _REGRESSION,
    "r2_score": _REGRESSION,
}
MAX_METRICS = 16  # metrics one job may name


def head_of(task: str, outputs: int) -> Head:
    """What a network's output of `outputs` units is for a dataset of `task`."""
    if task == "regression":
        return "regression"
    return "binary" if outputs == 1 else "classes"


# --- which way a metric is better ------------------------------------------------------------------

# Better higher, by name: accuracies, AUC, precision and recall, scores; losses and errors are lower.
BETTER_HIGHER = (
    "acc", "accuracy", "auc", "precision", "recall", "f1_score", "fbeta_score", "r2_score", "cosine_similarity",
    "true_positives", "true_negatives",
)  # fmt: skip


def metric_direction(metric: str) -> Literal["min", "max"] | None:
    """A metric's direction, by its name (`val_` for the validation split's); None where the name does
    not tell it."""
    name = metric.removeprefix("val_")
    if name in ("loss", "mae", "mse", "rmse", "msle", "mape") or name.endswith(("_error", "crossentropy", "loss")):
        return "min"
    if name in BETTER_HIGHER or name.endswith(("_accuracy", "_auc", "_precision", "_recall")):
        return "max"
    return None


# keras-tuner's `infer_metric_direction` (keras_tuner/src/engine/metrics_tracking.py, 1.4.8 over Keras
# 3), as a table: it strips `val_` and then `weighted_`, takes loss, crossentropy and ce for min and acc
# for max, then deserializes the name as a Keras metric or loss: a class or function in its list of
# better-higher metrics is max, any other Keras metric or loss min, and a name Keras does not resolve
# (or one that needs arguments) has no direction. Note where it differs from `metric_direction`:
# f1_score, r2_score and cosine_similarity are min to keras-tuner.
KERAS_TUNER_MAX = frozenset(
    {
        "AUC", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "Precision", "Recall",
        "SparseCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "TopKCategoricalAccuracy", "TrueNegatives",
        "TruePositives", "acc", "accuracy", "auc", "binary_accuracy", "categorical_accuracy", "precision", "recall",
        "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy",
        "true_negatives", "true_positives",
    }
)  # fmt: skip
KERAS_TUNER_MIN = frozenset(
    {
        "BinaryCrossentropy", "BinaryFocalCrossentropy", "BinaryIoU", "CTC", "CategoricalCrossentropy",
        "CategoricalFocalCrossentropy", "CategoricalGeneralizedCrossEntropy", "CategoricalHinge", "Circle",
        "ConcordanceCorrelation", "CosineSimilarity", "Dice", "F1Score", "FBetaScore", "FalseNegatives",
        "FalsePositives", "Hinge", "Huber", "KLDivergence", "LogCosh", "LogCoshError", "MeanAbsoluteError",
        "MeanAbsolutePercentageError", "MeanSquaredError", "MeanSquaredLogarithmicError", "PearsonCorrelation",
        "Poisson", "R2Score", "RootMeanSquaredError", "SparseCategoricalCrossentropy", "SquaredHinge", "Tversky",
        "binary_crossentropy", "binary_focal_crossentropy", "binary_io_u", "categorical_crossentropy",
        "categorical_focal_crossentropy", "categorical_generalized_cross_entropy", "categorical_hinge", "ce",
        "circle", "concordance_correlation", "cosine_similarity", "crossentropy", "ctc", "dice", "f1_score",
        "f_beta_score", "false_negatives", "false_positives", "hinge", "huber", "kl_divergence", "log_cosh",
        "log_cosh_error", "loss", "mae", "mape", "mean_absolute_error", "mean_absolute_percentage_error",
        "mean_squared_error", "mean_squared_logarithmic_error", "mse", "msle", "pearson_correlation", "poisson",
        "r2_score", "root_mean_squared_error", "sparse_categorical_crossentropy", "squared_hinge", "tversky",
    }
)  # fmt: skip


def keras_tuner_direction(metric: str) -> Literal["min", "max"] | None:
    """The direction keras-tuner infers for an objective given as a plain string (`"val_accuracy"`)."""
    name = metric.removeprefix("val_").removeprefix("weighted_")
    if name in KERAS_TUNER_MAX:
        return "max"
    if name in KERAS_TUNER_MIN:
        return "min"
    return None
