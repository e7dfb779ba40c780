"""The private Keras and TensorFlow parts the vectorized pack (`models.vector_pack`) relies on.

Kept in one module with a contract test (tests/unit/test_pack_internals.py), so an upgrade of either
library breaks here, loudly, and nowhere else:

- Keras's TensorFlow optimizers refuse `stateless_apply` (for tf.distribute's sake); the backend
  neutral `BaseOptimizer` has a working one, and the update rules (`update_step`) are the same
  code either way. `stateless_optimizer` puts the neutral methods in front of the user's class.
- pfor (`tf.vectorized_map`) lacks converters for ops Keras emits: a `Conv2D` whose filter differs
  per slice (it converts one with a shared filter), and `Bitcast` (Keras's `argmax`, hence its
  accuracy metrics, tests the sign bit). `add_converters` hands pfor converters for those ops:
  the K slices' filters fused into one convolution; a bitcast of the stacked tensor.
- pfor says which op it could not convert only in its log; `pfor_failure` catches that record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf
from keras.src.optimizers.base_optimizer import BaseOptimizer
from tensorflow.python.ops.parallel_for import pfor as pfor_lib

from models.packed_net import grouped_conv_gradients

# Methods TFOptimizer overrides to go through tf.Variable and tf.distribute: the neutral ones read
# and write Keras variables, which a StatelessScope maps to values.
_NEUTRAL_METHODS = (
    "stateless_apply",
    "assign",
    "assign_add",
    "assign_sub",
    "_var_key",
    "_backend_update_step",
    "_apply_weight_decay",
)


def stateless_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """A fresh, unbuilt optimizer of `optimizer`'s class and config whose `stateless_apply` works on
    the TensorFlow backend (its update rule is the class's own `update_step`)."""
    cls = type(optimizer)
    methods = {name: getattr(BaseOptimizer, name) for name in _NEUTRAL_METHODS}
    stateless: Any = type(f"Stateless{cls.__name__}", (cls,), methods)
    return stateless.from_config(optimizer.get_config())


# -- converters pfor lacks ------------------------------------------------------------------------


def add_converters(ops: Sequence[tf.Operation]) -> None:
    """Give pfor a converter for those of `ops` it has none for: a `Conv2D` (Keras's Conv1D is one
    too) with a filter per slice, a `Bitcast`. Set on the ops themselves, so nothing else in the
    process changes."""
    for op in ops:
        if op.type in _CONVERTERS:
            op.pfor_converter = _CONVERTERS[op.type]


def _convert_bitcast(pfor_input: Any) -> Any:
    # Elementwise but for the last axis, which a bitcast between widths splits or joins.
    return pfor_lib.wrap(tf.bitcast(pfor_input.stacked_input(0), pfor_input.get_attr("type")), True)


def _convert_conv2d(pfor_input: Any) -> Any:
    x, x_stacked, _ = pfor_input.input(0)
    kernel, kernel_stacked, _ = pfor_input.input(1)
    if not kernel_stacked:  # one filter for every slice: pfor's own converter folds K into the batch
        return pfor_lib._pfor_converter_registry["Conv2D"](pfor_input)
    if pfor_input.get_attr("data_format") != b"NHWC":
        raise ValueError("a Conv2D with per-slice filters is vectorised only in NHWC")
    strides = pfor_input.get_attr("strides")
    dilations = pfor_input.get_attr("dilations")
    padding = pfor_input.get_attr("padding").decode()
    if padding == "EXPLICIT":
        pads = pfor_input.get_attr("explicit_paddings")
        paddings = [[0, 0]] * int(x_stacked) + [pads[i : i + 2] for i in range(0, 8, 2)]
        x, padding = tf.pad(x, paddings), "VALID"
    k, rows, cols, channels, filters = _static_shape(kernel)
    fused = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]), [rows, cols, channels, k * filters])
    if not x_stacked:  # the slices read one input (a first layer): one conv with K times the filters
        y = tf.nn.conv2d(x, fused, strides, padding, dilations=dilations)
    else:
        x = tf.transpose(x, [1, 2, 3, 0, 4])  # (batch, h, w, K, channels)
        shape = tf.shape(x)
        x = tf.reshape(x, [shape[0], shape[1], shape[2], k * channels])
        if grouped_conv_gradients():  # K groups: slice k's filters read only its own channels
            y = tf.nn.conv2d(x, fused, strides, padding, dilations=dilations)
        else:
            y = _grouped_conv_by_patches(x, kernel, strides, padding, dilations)
    shape = tf.shape(y)
    y = tf.reshape(y, [shape[0], shape[1], shape[2], k, filters])
    return pfor_lib.wrap(tf.transpose(y, [3, 0, 1, 2, 4]), True)


def _static_shape(kernel: tf.Tensor) -> list[int]:
    dims = kernel.shape.as_list()
    if any(d is None for d in dims):
        raise ValueError("a Conv2D with per-slice filters needs a filter of static shape")
    return [int(d) for d in dims]


def _grouped_conv_by_patches(
    x: tf.Tensor, kernel: tf.Tensor, strides: list[int], padding: str, dilations: list[int]
) -> tf.Tensor:
    """The grouped conv without a grouped conv op (whose CPU kernels have no gradient on some
    machines): every patch of the K slices' channels, then one einsum of slice k's patches against
    slice k's filter. x (batch, h, w, K * C), kernel (K, rows, cols, C, F) -> (batch, h', w', K * F)."""
    k, rows, cols, channels, filters = _static_shape(kernel)
    patches = tf.image.extract_patches(x, [1, rows, cols, 1], strides, dilations, padding)
    shape = tf.shape(patches)
    patches = tf.reshape(patches, [shape[0], shape[1], shape[2], rows * cols, k, channels])
    y = tf.einsum("bhwpkc,kpcf->bhwkf", patches, tf.reshape(kernel, [k, rows * cols, channels, filters]))
    return tf.reshape(y, [shape[0], shape[1], shape[2], k * filters])


_CONVERTERS = {"Conv2D": _convert_conv2d, "Bitcast": _convert_bitcast}


# -- what pfor could not convert --------------------------------------------------------------------


@dataclass
class PforFailure:
    """What pfor could not vectorise, as its log or its error says: the op it failed on and why
    ("" where neither says), and the types of the ops it ran one slice at a time (its while-loop
    fallback, which it takes for some ops, seeded random ones among them, even when told not to)."""

    op_name: str = ""
    op_type: str = ""
    reason: str = ""
    one_at_a_time: list[str] = field(default_factory=list)

    def read(self, text: str) -> None:
        """Take the op's name, type and the cause from pfor's log record or its error's text."""
        if self.op_type:
            return
        name, kind = re.search(r'name: "([^"]+)"', text), re.search(r'op: "([^"]+)"', text)
        cause = re.search(r"(No pfor vectorization defined for \S+|stack traces: (.+))", text)
        self.op_name, self.op_type = (name.group(1) if name else ""), (kind.group(1) if kind else "")
        self.reason = (cause.group(2) or cause.group(1)) if cause else ""


class _Catch(logging.Handler):
    def __init__(self, failure: PforFailure) -> None:
        super().__init__(logging.DEBUG)
        self.failure = failure

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "pfor was converting op" in text:
            self.failure.read(text)
        elif fallback := re.match(r"Using a while_loop for converting (\S+)|(\S+) uses a while_loop", text):
            self.failure.one_at_a_time.append(fallback.group(1) or fallback.group(2))


@contextmanager
def pfor_failure() -> Iterator[PforFailure]:
    """Within it, what pfor could not vectorise is read into the yielded record, from its log (which
    it would print: the op's whole definition and creation stack, pages of it) and from the error
    passing through (which it still raises). Its fallbacks it logs at debug level only."""
    failure = PforFailure()
    logger = logging.getLogger("tensorflow")
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers, logger.propagate = [_Catch(failure)], False
    logger.setLevel(logging.DEBUG)
    try:
        yield failure
    except Exception as error:  # a missing converter pfor reports in its error only
        failure.read(str(error))
        raise
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
