"""K dropout networks of one job fused into one: the packed form of `dropout_net` (HFTA's idea).

Every configuration ("slice") of a pack is the dense network `dropout_net.build` makes, with its own
weights: each Dense kernel of the K slices is one (K, in, out) tensor and each layer one `einsum`, so
K small models cost one model's framework overhead per step. A slice has its own dropout rate and
number of dropout layers (a per-slice mask), its own units (narrower slices are zero-padded to the
pack's widest and masked, so their padding never learns) and its own learning rate (used by the
packed trainer's Adam). Slices never mix: no op reads across the K axis, so one slice's NaN cannot
reach another's numbers.

`plain_model` cuts one slice out into the ordinary single-configuration Keras model, which is what a
user downloads and what predicts: packing is a way to train, never a different model.

Image models pack too, with a fused conv stem: the first conv reads the input all slices share, so
it is one conv with 16K filters (slice k owns output channels 16k..16k+15); the second is a grouped
conv (K groups: slice k's 32 filters read only its own 16 channels). Its global average pool gives
each slice its 32 features for its dense head. bench/image_packing.py measured this form fastest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

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


class PackedNet:
    """The fused weights of K slices and their forward pass. Every variable is K-first (kernels
    (K, *kernel), biases (K, out)), so the trainer treats conv and Dense weights alike."""

    def __init__(self, config: ModelConfig, slices: list[SliceConfig], seeds: list[int]) -> None:
        self.config = config
        self.slices = slices
        self.k = len(slices)
        hidden = config.hidden_layers
        self.width = max(max(s.widths(hidden)) for s in slices)  # narrower slices are padded to it
        self.mean = tf.constant(config.mean, tf.float32)
        self.std = tf.maximum(tf.sqrt(tf.constant(config.variance, tf.float32)), keras.config.epsilon())
        self.activation = keras.activations.get(config.activation)
        self.stem = len(STEM_FILTERS) if config.is_image else 0  # conv layers ahead of the Dense ones
        self.kernels: list[tf.Variable] = []  # one per layer of `layer_names`, conv stem first
        self.biases: list[tf.Variable] = []
        for layer, name in enumerate(layer_names(config)):
            padded = self._kernel_shape(layer, (self.width,) * hidden)
            kernel = np.zeros((self.k, *padded), np.float32)
            for k, (piece, seed) in enumerate(zip(slices, seeds, strict=True)):
                shape = self._kernel_shape(layer, piece.widths(hidden))
                # Glorot on the slice's true fan-in and fan-out, as `Dense`/`Conv2D` would draw it alone.
                init = keras.initializers.GlorotUniform(seed=seed * 97 + layer)
                kernel[_part(k, shape)] = np.asarray(init(shape))
            self.kernels.append(tf.Variable(kernel, name=f"{name}_kernel"))
            self.biases.append(tf.Variable(tf.zeros((self.k, padded[-1])), name=f"{name}_bias"))
        # Per hidden layer, (K, width): which of the padded units are each slice's own.
        self.unit_masks = [
            tf.constant(
                (np.arange(self.width)[None, :] < np.array([s.widths(hidden)[i] for s in slices])[:, None]).astype(
                    np.float32
                )
            )
            for i in range(hidden)
        ]
        self.rates = tf.constant([s.dropout_rate for s in slices], tf.float32)
        # Per hidden layer, the slices that drop out after it (the first `dropout_layers` of each).
        self.dropping = [tf.constant([i < s.dropout_layers for s in slices]) for i in range(config.hidden_layers)]

    @property
    def variables(self) -> list[tf.Variable]:
        return [v for pair in zip(self.kernels, self.biases, strict=True) for v in pair]

    def _kernel_shape(self, layer: int, widths: tuple[int, ...]) -> tuple[int, ...]:
        """Layer `layer`'s kernel in the plain model of a slice whose hidden layers have `widths` units."""
        if layer < self.stem:
            channels = self.config.input_shape[-1] if layer == 0 else STEM_FILTERS[layer - 1]
            return (STEM_KERNEL, STEM_KERNEL, channels, STEM_FILTERS[layer])
        dense = layer - self.stem
        features = STEM_FILTERS[-1] if self.config.is_image else int(np.prod(self.config.input_shape))
        rows = features if dense == 0 else widths[dense - 1]
        cols = output_units(self.config) if dense == self.config.hidden_layers else widths[dense]
        return rows, cols

    def __call__(self, x: tf.Tensor, training: bool, rng: tf.random.Generator | None = None) -> tf.Tensor:
        """(batch, *input_shape) -> each slice's output before the head's activation, (K, batch,
        outputs): logits for classification (Keras computes its losses from them too), values for
        regression."""
        x = (tf.cast(x, tf.float32) - self.mean) / self.std
        kernels, biases = self.kernels[self.stem :], self.biases[self.stem :]
        if self.config.is_image:
            h = tf.einsum("kbi,kio->kbo", self._conv_stem(x), kernels[0]) + biases[0][:, None, :]
        else:
            h = tf.einsum("bi,kio->kbo", x, kernels[0]) + biases[0][:, None, :]
        for i in range(self.config.hidden_layers):
            if i > 0:
                h = tf.einsum("kbi,kio->kbo", h, kernels[i]) + biases[i][:, None, :]
            h = self.activation(h) * self.unit_masks[i][:, None, :]
            if training and rng is not None:
                h = self._dropout(h, i, rng)
        return tf.einsum("kbi,kio->kbo", h, kernels[-1]) + biases[-1][:, None, :]

    def _conv_stem(self, x: tf.Tensor) -> tf.Tensor:
        """(batch, height, width, channels) -> each slice's pooled features, (K, batch, 32). Each
        conv is one `conv2d` over K * filters output channels, slice k's the k-th block: the first
        reads the shared input, the second is grouped (its kernel's 16 input channels against 16K)."""
        height, width = self.config.input_shape[:2]
        for layer, (kernel, bias) in enumerate(zip(self.kernels[: self.stem], self.biases[: self.stem], strict=True)):
            if layer > 0 and not grouped_conv_gradients():
                x = tf.nn.relu(_grouped_conv_by_patches(x, kernel) + tf.reshape(bias, [-1]))
            else:
                _, rows, cols, channels, filters = kernel.shape
                fused = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]), [rows, cols, channels, self.k * filters])
                x = tf.nn.relu(tf.nn.conv2d(x, fused, strides=1, padding="SAME") + tf.reshape(bias, [-1]))
            if min(height, width) >= 4:  # `dropout_net._conv_stem`'s rule
                x = tf.nn.max_pool2d(x, 2, 2, "VALID")
                height, width = height // 2, width // 2
        pooled = tf.reduce_mean(x, axis=[1, 2])  # (batch, K * 32)
        return tf.transpose(tf.reshape(pooled, [-1, self.k, STEM_FILTERS[-1]]), [1, 0, 2])

    def _dropout(self, h: tf.Tensor, layer: int, rng: tf.random.Generator) -> tf.Tensor:
        # Inverted dropout, as keras.layers.Dropout: keep with 1 - rate, scale the kept by 1/(1 - rate).
        rate = tf.where(self.dropping[layer], self.rates, 0.0)[:, None, None]
        keep = rng.uniform(tf.shape(h)) >= rate
        return tf.where(keep, h / (1.0 - rate), 0.0)

    def slice_weights(
        self, k: int, kernels: list[Any] | None = None, biases: list[Any] | None = None
    ) -> dict[str, list[np.ndarray]]:
        """Slice k's weights as the plain model's Conv2D and Dense layers hold them, padding cut off.
        `kernels`/`biases` default to the current weights (the trainer passes its best-epoch copy)."""
        kernels = kernels if kernels is not None else self.kernels
        biases = biases if biases is not None else self.biases
        weights = {}
        for layer, name in enumerate(layer_names(self.config)):
            shape = self._kernel_shape(layer, self.slices[k].widths(self.config.hidden_layers))
            weights[name] = [np.asarray(kernels[layer][_part(k, shape)]), np.asarray(biases[layer][k, : shape[-1]])]
        return weights

    def load_slice(self, k: int, weights: dict[str, list[np.ndarray]]) -> None:
        """Start slice k from a plain model's weights (Hyperband continues a trial this way)."""
        for layer, name in enumerate(layer_names(self.config)):
            kernel, bias = weights[name]
            self.kernels[layer][_part(k, kernel.shape)].assign(kernel)
            self.biases[layer][k, : bias.shape[0]].assign(bias)


@functools.cache
def grouped_conv_gradients() -> bool:
    """Whether this machine's TensorFlow can train a grouped convolution. Its CPU kernels have no
    gradient for one ("not supported on CPU"), except where oneDNN supplies it (some CPUs only)."""
    with tf.init_scope():  # eagerly, even when first asked while a tf.function traces
        try:  # the input's gradient of a 3x3 conv of 2 channels in 2 groups (1x1 ones take another path)
            tf.raw_ops.Conv2DBackpropInput(
                input_sizes=[1, 4, 4, 2],
                filter=tf.zeros((STEM_KERNEL, STEM_KERNEL, 1, 2)),
                out_backprop=tf.zeros((1, 4, 4, 2)),
                strides=[1, 1, 1, 1],
                padding="SAME",
            ).numpy()
        except tf.errors.InvalidArgumentError:
            return False
    return True


def _grouped_conv_by_patches(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """The grouped conv of `_conv_stem` without a grouped conv op, where none can be trained: every
    3x3 patch of the K slices' channels (`extract_patches`, laid out (row, col, channel)), then one
    einsum of slice k's patch against slice k's kernel. x (batch, h, w, K * C), kernel (K, rows,
    cols, C, F) -> (batch, h, w, K * F), slice k's F channels the k-th block, as the grouped conv."""
    k, rows, cols, channels, filters = kernel.shape
    patches = tf.image.extract_patches(x, [1, rows, cols, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
    shape = tf.shape(patches)
    patches = tf.reshape(patches, [shape[0], shape[1], shape[2], rows * cols, k, channels])
    out = tf.einsum("bhwpkc,kpco->bhwko", patches, tf.reshape(kernel, [k, rows * cols, channels, filters]))
    return tf.reshape(out, [shape[0], shape[1], shape[2], k * filters])


def _part(k: int, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """The index of slice k's `shape` in a packed (K, *padded) tensor: its leading corner."""
    return (k, *(slice(0, size) for size in shape))


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
