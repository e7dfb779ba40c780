"""What every pack trainer and the planner share, on any backend: one configuration of the template
(`SliceConfig`), each slice's seed, a configuration's size (`Cost`, which sizes packs), and a slice's
weights as a plain model or a file. Free of TensorFlow, so a JAX worker plans its packs without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from models.dropout_net import ModelConfig, build, hyperparameter
from store.spec import dropout_in


@dataclass(frozen=True)
class SliceConfig:
    """One configuration of a pack: the hyperparameters one trial searched."""

    dropout_rate: float  # with `dropout_layers`, as `store.spec.dropout_in` reads them (`from_hp`)
    dropout_layers: int
    units: int
    learning_rate: float
    # Units of each hidden layer where they differ (the verdict's smaller network); else `units` each.
    layer_units: tuple[int, ...] | None = None

    def widths(self, hidden_layers: int) -> tuple[int, ...]:
        return self.layer_units if self.layer_units is not None else (self.units,) * hidden_layers

    @classmethod
    def from_hp(cls, hp: Any, config: ModelConfig) -> SliceConfig:
        rate, layers = dropout_in(hp.values)
        return cls(
            dropout_rate=rate,
            dropout_layers=layers,
            units=int(hyperparameter(hp, "units", config.units)),
            learning_rate=float(hyperparameter(hp, "learning_rate", config.learning_rate)),
        )


# A pack's draws are seeded per slice from the job's seed and the slice's index (a trial id, a run's
# place in its pack): a prime above any index, so distinct pairs give distinct seeds.
SEED_STRIDE = 100_003


def slice_seed(seed: int, index: int) -> int:
    """The seed of one slice's own draws: the same job seed and index give the same, also on a re-run."""
    return seed * SEED_STRIDE + index


STEM_FILTERS = (16, 32)  # the filters of `dropout_net`'s conv stem, layer by layer
STEM_KERNEL = 3


@dataclass(frozen=True)
class Cost:
    """One configuration's size, per sample where it grows with the batch: what sizes a pack."""

    parameters: int
    flops: int  # of a forward pass of one sample
    activations: int  # floats a forward pass of one sample keeps


def cost(config: ModelConfig, units: int) -> Cost:
    """The plain model's size with `units` per hidden layer (the pack's widest)."""
    parameters = flops = activations = 0
    features = int(np.prod(config.input_shape))
    if config.is_image:
        height, width, channels = config.input_shape
        for filters in STEM_FILTERS:
            parameters += (STEM_KERNEL**2 * channels + 1) * filters
            flops += 2 * STEM_KERNEL**2 * channels * filters * height * width
            activations += filters * height * width
            if min(height, width) >= 4:
                height, width = height // 2, width // 2
                activations += filters * height * width
            channels = filters
        features = STEM_FILTERS[-1]
    widths = [features] + [units] * config.hidden_layers + [output_units(config)]
    for fan_in, fan_out in zip(widths, widths[1:], strict=False):
        parameters += (fan_in + 1) * fan_out
        flops += 2 * fan_in * fan_out
        activations += fan_out
    return Cost(parameters, flops, activations)


def layer_names(config: ModelConfig) -> list[str]:
    """The plain model's layers with weights, in order (its conv stem's, then its Dense layers'):
    where each packed kernel's slice goes."""
    stem = [f"conv_{i + 1}" for i in range(len(STEM_FILTERS))] if config.is_image else []
    return stem + [f"hidden_{i + 1}" for i in range(config.hidden_layers)] + ["output"]


def output_units(config: ModelConfig) -> int:
    return config.n_classes if config.task == "classification" and config.n_classes != 2 else 1  # type: ignore[return-value]


def plain_model(hp: Any, config: ModelConfig, weights: dict[str, list[np.ndarray]]) -> keras.Model:
    """The ordinary single-configuration model of `hp`, holding a slice's weights."""
    model = build(hp, config)
    for name, values in weights.items():
        model.get_layer(name).set_weights(values)
    return model


def save_weights(path: Any, weights: dict[str, list[np.ndarray]]) -> None:
    arrays = {f"{name}/{i}": value for name, values in weights.items() for i, value in enumerate(values)}
    np.savez(path, **arrays)  # type: ignore[arg-type]


def load_weights(path: Any) -> dict[str, list[np.ndarray]]:
    with np.load(path) as data:
        weights: dict[str, list[np.ndarray]] = {}
        for key in sorted(data.files, key=lambda key: int(key.rsplit("/", 1)[1])):
            name = key.rsplit("/", 1)[0]
            weights.setdefault(name, []).append(data[key])
    return weights
