"""Where dropout goes in a user's network: its dropout sites.

A network that has Dropout or SpatialDropout layers has its sites there: their rates are what a job
searches. A network without any gets a site after each hidden Dense, convolution block, pooling and
recurrent layer, never after an output: after the layer and the normalisation and activation layers
that directly follow it, and a convolution followed by pooling has its site after the pooling. The
kind follows what is dropped: SpatialDropout after convolutions and their pooling (whole feature
maps), Dropout elsewhere.

"Number of dropout layers" n fills the first n sites from the input (the template's order); a job's
`dropout_order: "from_output"` fills them from the output instead. A site's `sized` layer is the one
whose units or filters the smaller-network arm scales.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from store.network_files import (
    CONV_LAYERS,
    DENSE_LAYERS,
    DROPOUT_LAYERS,
    RECURRENT_LAYERS,
    NetworkLayer,
    NetworkSummary,
)

POOLING = re.compile(r"(Global)?(Max|Average)Pooling([123])D")
# Layers a site moves past: what directly follows a Dense or convolution in a block.
BLOCK_TAIL = frozenset({"BatchNormalization", "LayerNormalization", "GroupNormalization", "Activation", "ReLU",
                        "LeakyReLU", "PReLU", "ELU"})  # fmt: skip
SIZED = DENSE_LAYERS | CONV_LAYERS | RECURRENT_LAYERS


@dataclass(frozen=True)
class DropoutSite:
    after: str  # the layer whose output is dropped
    kind: str  # Dropout, SpatialDropout1D, 2D or 3D
    layer: str | None  # the network's own dropout layer here (its rate is searched), or None: one is added
    sized: str | None  # the Dense, convolution or recurrent layer the smaller-network arm narrows


def default_sites(network: NetworkSummary) -> list[DropoutSite]:
    """The network's dropout sites, from the input to the output."""
    graph = _Graph(network)
    existing = [layer for layer in network.layers if layer.class_name in DROPOUT_LAYERS]
    if existing:
        return [
            DropoutSite(graph.source(layer), layer.class_name, layer.name, graph.sized_before(layer.name))
            for layer in existing
        ]
    sites = []
    for layer in network.layers:
        if layer.nested or layer.name in network.outputs or not _candidate(layer):
            continue
        end = graph.block_end(layer.name)
        following = graph.only_consumer(end)
        if layer.class_name in CONV_LAYERS and following is not None and POOLING.fullmatch(following.class_name):
            continue  # the pooling after it carries the site
        if end in network.outputs:
            continue
        sites.append(DropoutSite(end, _kind(layer), None, graph.sized_before(end, include=True)))
    return sites


def _candidate(layer: NetworkLayer) -> bool:
    return layer.class_name in SIZED or POOLING.fullmatch(layer.class_name) is not None


def _kind(layer: NetworkLayer) -> str:
    """SpatialDropout of the layer's dimensions after convolutions and their pooling, else Dropout."""
    pooling = POOLING.fullmatch(layer.class_name)
    if pooling:
        return "Dropout" if pooling.group(1) else f"SpatialDropout{pooling.group(3)}D"
    conv = re.search(r"Conv([123])D$", layer.class_name)
    return f"SpatialDropout{conv.group(1)}D" if conv and layer.class_name in CONV_LAYERS else "Dropout"


class _Graph:
    """Who reads whose output: a Functional model's inbound layers, a Sequential's order."""

    def __init__(self, network: NetworkSummary) -> None:
        self.layers = {layer.name: layer for layer in network.layers if not layer.nested}
        order = [layer.name for layer in network.layers if not layer.nested]
        sequential = network.model_class == "Sequential"
        self.inputs: dict[str, list[str]] = {}
        for i, name in enumerate(order):
            reads = [order[i - 1]] if sequential and i > 0 else list(self.layers[name].inbound)
            self.inputs[name] = [r for r in reads if r in self.layers]
        self.readers: dict[str, list[str]] = {name: [] for name in order}
        for name, reads in self.inputs.items():
            for read in reads:
                self.readers[read].append(name)

    def only_consumer(self, name: str) -> NetworkLayer | None:
        readers = self.readers.get(name, [])
        return self.layers[readers[0]] if len(readers) == 1 else None

    def block_end(self, name: str) -> str:
        """The last of the normalisation and activation layers that directly follow `name` alone."""
        while (following := self.only_consumer(name)) is not None and following.class_name in BLOCK_TAIL:
            if len(self.inputs[following.name]) != 1:
                break
            name = following.name
        return name

    def source(self, layer: NetworkLayer) -> str:
        reads = self.inputs.get(layer.name, [])
        return reads[0] if reads else layer.name

    def sized_before(self, name: str, include: bool = False) -> str | None:
        """The nearest Dense, convolution or recurrent layer at or before `name` on a single path."""
        reads = self.inputs.get(name, [])
        current: str | None = name if include else (reads[0] if len(reads) == 1 else None)
        while current is not None:
            if self.layers[current].class_name in SIZED:
                return current
            reads = self.inputs.get(current, [])
            current = reads[0] if len(reads) == 1 else None
        return None


def sites_in_order(sites: list[DropoutSite], order: str) -> list[DropoutSite]:
    """The sites in the order "number of dropout layers" fills them."""
    return list(reversed(sites)) if order == "from_output" else list(sites)
