"""Where dropout goes in a user's network: its dropout sites.

A network that has Dropout or SpatialDropout layers has its sites there: their rates are what a job
searches. A network without any gets a site after each hidden Dense, convolution block, pooling and
recurrent layer, never after an output: after the layer and the normalisation and activation layers
that directly follow it, and a convolution followed by pooling has its site after the pooling. The
kind follows what is dropped: SpatialDropout after convolutions and their pooling (whole feature
maps), Dropout elsewhere.

A job's `model.recurrent_dropout` adds the rates inside each recurrent layer (LSTM, GRU, SimpleRNN, or
a Bidirectional wrapping one) as sites of their own (`RECURRENT_KINDS`): the layer's `dropout` (of its
inputs at each step) and its `recurrent_dropout` (of its state), in that order, just before the site
after the layer. Such a site sets the layer's own setting; no layer is added.

"Number of dropout layers" n fills the first n sites from the input (the template's order); a job's
`dropout_order: "from_output"` fills them from the output instead. A site's `sized` layer is the one
whose units or filters the smaller-network arm scales.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from store.errors import InputError
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
# The kinds of a site inside a recurrent layer, each the layer's setting it searches. Such a site is
# no layer of its own: a trainer that cannot vectorise a recurrent layer's dropout trains it unpacked.
DROPOUT_INPUTS = "dropout_inputs"
RECURRENT_DROPOUT = "recurrent_dropout"
RECURRENT_KINDS = frozenset({DROPOUT_INPUTS, RECURRENT_DROPOUT})
RECURRENT_SETTING = {DROPOUT_INPUTS: "dropout", RECURRENT_DROPOUT: "recurrent_dropout"}
# A job's `model.recurrent_dropout`: the kinds of site it adds to each recurrent layer.
RECURRENT_OPTIONS: dict[str, tuple[str, ...]] = {
    "off": (),
    "dropout": (DROPOUT_INPUTS,),
    "recurrent_dropout": (RECURRENT_DROPOUT,),
    "both": (DROPOUT_INPUTS, RECURRENT_DROPOUT),
}


@dataclass(frozen=True)
class DropoutSite:
    after: str  # the layer whose output is dropped (a recurrent kind's: the recurrent layer)
    kind: str  # Dropout, SpatialDropout1D, 2D or 3D, or one of RECURRENT_KINDS
    # The layer whose rate is searched: the network's own dropout layer here, or a recurrent kind's
    # recurrent layer; None: a dropout layer is added
    layer: str | None
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


def job_sites(
    network: NetworkSummary, names: list[str] | None, order: str, kind: str, recurrent: str = "off"
) -> list[DropoutSite]:
    """A job's dropout sites, in the order "number of dropout layers" fills them: the network's own
    (`default_sites`), or those the job names (`model.dropout_sites`: layers after which dropout goes,
    or the network's dropout layers); `kind` "dropout" puts plain Dropout where SpatialDropout would go;
    `recurrent` (`model.recurrent_dropout`) adds the recurrent layers' own rates (`recurrent_sites`)."""
    sites = default_sites(network) if names is None else _named_sites(network, names)
    if kind == "dropout":
        sites = [dataclasses.replace(s, kind="Dropout") if s.layer is None else s for s in sites]
    inside = recurrent_sites(network, RECURRENT_OPTIONS[recurrent])
    if inside:
        position = {layer.name: i for i, layer in enumerate(network.layers)}

        def key(site: DropoutSite) -> tuple[int, int]:
            if site.kind in RECURRENT_KINDS:  # inside its layer: before what follows the layer
                return position[site.after], 0
            return position[site.layer or site.after], 1

        sites = sorted([*sites, *inside], key=key)  # stable: a layer's inputs' site before its state's
    return sites_in_order(sites, order)


def recurrent_layers(network: NetworkSummary) -> list[NetworkLayer]:
    """The network's recurrent layers (not those of a model nested in it), from the input."""
    return [layer for layer in network.layers if layer.class_name in RECURRENT_LAYERS and not layer.nested]


def recurrent_sites(network: NetworkSummary, kinds: tuple[str, ...]) -> list[DropoutSite]:
    """A site of each of `kinds` in each recurrent layer, from the input."""
    return [
        DropoutSite(layer.name, kind, layer.name, layer.name) for layer in recurrent_layers(network) for kind in kinds
    ]


def _named_sites(network: NetworkSummary, names: list[str]) -> list[DropoutSite]:
    graph = _Graph(network)
    order = [layer.name for layer in network.layers]
    sites = []
    for name in names:
        layer = graph.layers.get(name)
        if layer is None or layer.class_name == "InputLayer" or name in network.outputs:
            what = "an output" if layer is not None and name in network.outputs else "not a hidden layer of the network"
            raise InputError("model.dropout_sites", f"{name!r} is {what}; name layers dropout may follow")
        if layer.class_name in DROPOUT_LAYERS:
            sites.append(DropoutSite(graph.source(layer), layer.class_name, name, graph.sized_before(name)))
        else:
            sites.append(DropoutSite(name, _kind(layer), None, graph.sized_before(name, include=True)))
    # From the input to the output, whatever order they were named in.
    return sorted(sites, key=lambda site: order.index(site.layer or site.after))
