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
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.dropout_net import ModelConfig
from models.pack_plan import STEM_FILTERS, STEM_KERNEL, SliceConfig, layer_names, output_units


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
