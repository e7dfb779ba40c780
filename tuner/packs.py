"""The packs a job trains: K configurations at once, whatever the network.

Two trainers stand behind one interface (`Pack`): droptune's template as its fused einsum network
(`models.packed_net`, TensorFlow only; on the template it is faster, bench/vector_pack.py), and any
Keras network, a user's uploaded one, as one step vectorised over its slices (`models.vector_pack`,
on TensorFlow or JAX; on JAX the template trains so too). `plan` decides once per search process
which trainer the job's trials use and how many train together, or why they must train one at a
time; the job records that decision (`store.execution`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import keras
import keras_tuner as kt

from models.dropout_net import ModelConfig
from models.pack_network import Network, NotVectorizable, template_network, template_rates
from models.pack_plan import Cost, SliceConfig, cost, slice_seed
from models.user_network import DROPOUT_NAME, NetworkBuild, build_network, compiled, narrowed, set_dropout
from models.vector_pack import SliceSpec, VectorPack
from store.bayesian import BayesianPacks, bayesian_packs
from store.config import Settings
from store.execution import Execution
from store.network_files import NetworkSummary
from store.spec import MAX_PACK_SIZE, JobSpec, planned_trials
from tuner import backend
from tuner.kt_internals import checkpoint_files
from tuner.setup import Prepared
from tuner.trial_weights import slice_weights, store_slice_weights

if TYPE_CHECKING:  # TensorFlow code: imported where it runs (`TemplatePacker`), never on JAX
    from tuner.pack_training import PackTrainer

log = logging.getLogger(__name__)

# `auto` packs no more than this on a CPU: past it a pack's step is arithmetic, not overhead
# (bench/pack_sizes.py).
AUTO_MAX_PACK = 32
# On an accelerator `auto` packs up to this many, sized from the device's free memory (a share of it:
# XLA's workspace and the validation pass need the rest) and a step's arithmetic.
AUTO_MAX_DEVICE_PACK = 4096
DEVICE_MEMORY_SHARE = 0.5
DEVICE_STEP_FLOPS = 1e12
# `auto` keeps one pack step under about this many floating-point operations, for the same reason.
AUTO_STEP_FLOPS = 2e9


class SliceOutcome(Protocol):
    """What one slice of a pack did (both trainers' `SliceResult`)."""

    history: dict[int, dict[str, float]]
    best_epoch: int | None
    best_value: float | None
    seconds: float
    failure: str | None

    @property
    def active(self) -> bool: ...


class Pack(Protocol):
    """K trials training together, epoch by epoch; the caller records epochs and ends trials."""

    objective: str

    @property
    def results(self) -> Sequence[SliceOutcome]: ...

    def run_epoch(self, number: int) -> list[int]:
        """Train every active slice one epoch (from 1); the slices that ended with it."""

    def fail(self, k: int, reason: str) -> None:
        """End slice k as failed; the others train on."""

    def keep(self, k: int, tuner: kt.Tuner, trial: Any) -> None:
        """Store slice k's best-epoch weights as its trial's, where the job's other parts find them."""


class Packer(Protocol):
    """Makes the packs of one search process."""

    def start(self, tuner: kt.Tuner, trials: list[Any], first_epoch: int) -> Pack:
        """A pack of these trials (begun already), each from its parent's weights where Hyperband
        continues one (a slice whose parent's weights were not kept fails)."""


# -- planning -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackSizes:
    """How many trials each pack of a search takes: `largest` each, or for a Bayesian search (`bayesian`)
    its initial points first, `largest` at most per pack, then packs of `bayesian.pack_size`."""

    largest: int
    bayesian: BayesianPacks | None = None

    def next(self, made: int) -> int:
        """The next pack's size, after `made` trials of the search were made."""
        if self.bayesian is None:
            return self.largest
        if made < self.bayesian.initial_points:
            return min(self.largest, self.bayesian.initial_points - made)
        return self.bayesian.pack_size


@dataclass(frozen=True)
class Plan:
    execution: Execution
    packer: Packer | None  # None: keras-tuner's own loop, one fit per trial
    sizes: PackSizes


def plan(prepared: Prepared, settings: Settings) -> Plan:
    """How this job's trials train: the trainer, the pack sizes, and why not packed where it is not;
    with the backend and the device that train them."""
    spec = prepared.spec
    where = {"backend": backend.name(), "device": backend.device()}
    sizes = pack_sizes(spec, trial_cost(spec, prepared.config, prepared.network), settings)
    wanted = sizes.largest
    if wanted == 1:
        return Plan(Execution(trainer="fit", pack_size=1, **where), None, sizes)
    if not backend.packs_run_here():
        return _one_at_a_time(spec, backend.unpacked_reason(), where)
    packed = {"pack_size": wanted, "bayesian": sizes.bayesian, **where}
    if prepared.network is None and backend.fused_template_here():
        return Plan(Execution(trainer="template_pack", **packed), TemplatePacker(prepared), sizes)
    reason = network_refusal(prepared.network) if prepared.network is not None else template_refusal(spec)
    if reason is None:
        try:
            packer = NetworkPacker.of(prepared, wanted)
        except NotVectorizable as exc:
            reason = str(exc)
        else:
            return Plan(Execution(trainer="vectorized_pack", **packed), packer, sizes)
    return _one_at_a_time(spec, reason, where)


def _one_at_a_time(spec: JobSpec, reason: str, where: dict[str, str]) -> Plan:
    """keras-tuner's own loop, one `fit` per trial, although the job allowed packs: the job says why."""
    log.info("training one trial at a time: %s", reason)
    if spec.pack_size != "auto":
        reason = f"pack_size {spec.pack_size} was asked for, but {reason}"
    return Plan(Execution(trainer="fit", pack_size=1, reason=reason, **where), None, PackSizes(1))


def template_refusal(spec: JobSpec) -> str | None:
    """Why the template's trials cannot train as one vectorised pack (off TensorFlow, where its
    fused pack does not run): a vectorised pack's slices share their weights' shapes."""
    units = spec.search_space.units
    if units is not None and len(units.candidate_values()) > 1:
        return "its units vary between trials, and a vectorised pack's slices share their weights' shapes"
    return None


def network_refusal(network: NetworkBuild) -> str | None:
    """Why a network's configurations cannot train as one vectorised pack, as far as its sites tell."""
    odd = [site for site in network.sites if site.kind not in PACKED_KINDS]
    if odd:
        names = ", ".join(f"{site.after} ({site.kind})" for site in odd)
        return (
            f"its dropout sites {names} are not dropout layers a pack can vary per configuration "
            "(a recurrent layer's own dropout is part of the layer)"
        )
    return None


# The dropout layers a vectorised pack replaces with its own per-slice dropout (`SiteDropout`).
PACKED_KINDS = frozenset({"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"})


@dataclass(frozen=True)
class PackBudget:
    """What one pack may take under `auto`: memory, slices, and arithmetic per step."""

    memory_mb: float
    most: int
    step_flops: float


def pack_budget(cpu_memory_mb: float) -> PackBudget:
    """On a CPU the settings' budget (DROPTUNE_PACK_MEMORY_MB), packs of at most 32 whose step stays
    overhead-bound; on an accelerator whose free memory the backend reports, a share of that memory
    and packs of up to 4096 (a GPU's step is arithmetic-bound only far past a CPU's)."""
    free = backend.free_memory_mb()
    if free is None:
        return PackBudget(cpu_memory_mb, min(AUTO_MAX_PACK, MAX_PACK_SIZE), AUTO_STEP_FLOPS)
    return PackBudget(free * DEVICE_MEMORY_SHARE, AUTO_MAX_DEVICE_PACK, DEVICE_STEP_FLOPS)


def pack_size(spec: JobSpec, size: Cost, settings: Settings) -> int:
    """Trials per pack: the spec's, or `auto`'s capped at each trial process's share of the trials."""
    if spec.pack_size != "auto":
        return spec.pack_size
    return max(1, min(pack_limit(size, spec, pack_budget(settings.pack_memory_mb)), _share(spec)))


def _share(spec: JobSpec) -> int:
    # k trial processes share the job's trials: one must not take them all.
    return math.ceil(planned_trials(spec) / spec.parallel_trials)


def pack_sizes(spec: JobSpec, size: Cost, settings: Settings) -> PackSizes:
    """The search's pack sizes (`pack_size`); a Bayesian search's first pack holds its initial points
    (as many as `auto` would pack, and at least the spec's size), its later packs the spec's size or,
    under `auto`, `store.bayesian`'s (each no larger than `auto` would pack)."""
    packs = bayesian_packs(spec)
    if packs is None:
        return PackSizes(pack_size(spec, size, settings))
    limit = max(1, min(pack_limit(size, spec, pack_budget(settings.pack_memory_mb)), _share(spec)))
    later = min(packs.pack_size, limit) if spec.pack_size == "auto" else packs.pack_size
    first = max(later, min(packs.initial_points, limit))
    if first == 1:
        return PackSizes(1)
    return PackSizes(first, BayesianPacks(initial_points=packs.initial_points, pack_size=later))


def trial_cost(spec: JobSpec, config: ModelConfig, network: NetworkBuild | None) -> Cost:
    """One trial's model's size: the user's network's, or the template's at its widest units."""
    if network is not None and network.summary is not None:
        return network_cost(network.summary)
    units = max(spec.search_space.units.candidate_values()) if spec.search_space.units else config.units
    return cost(config, int(units))


def pack_limit(size: Cost, spec: JobSpec, budget: PackBudget) -> int:
    """As many trials as the budget's memory holds, while a step stays within its arithmetic, at most
    its `most`."""
    batch = spec.training.batch_size
    # Weights, best-epoch copy, the optimizer's two moments and the gradient; a training batch's
    # activations forward and backward (validation has its own fixed budget, in the trainers).
    per_trial = 4 * (5 * size.parameters + 4 * batch * size.activations)
    by_memory = int(budget.memory_mb * 2**20 // max(1, per_trial))
    by_compute = int(budget.step_flops // max(1, 3 * size.flops * batch))  # backward costs about twice forward
    return max(1, min(budget.most, by_memory, by_compute))


def network_cost(summary: NetworkSummary) -> Cost:
    """A user's network's size from its summary: each layer's weights, and per sample its output
    and about 2 operations per weight at each position the layer is applied (a convolution's pixels,
    a recurrent layer's steps)."""
    parameters = flops = activations = 0
    for layer in summary.layers:
        weights = layer.parameters or 0
        parameters += weights
        positions = math.prod(d or 1 for d in (layer.input_shape or (1,))[:-1])
        flops += 2 * weights * positions
        activations += math.prod(d or 1 for d in (layer.output_shape or ()))
    return Cost(parameters, max(1, flops), max(1, activations))


# -- the template: the fused einsum network -----------------------------------------------------------


class TemplatePacker:
    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared

    def start(self, tuner: kt.Tuner, trials: list[Any], first_epoch: int) -> Pack:
        from models.packed_net import PackedNet
        from tuner.pack_training import PackTrainer

        prepared = self.prepared
        spec, config = prepared.spec, prepared.config
        net = PackedNet(
            config,
            [SliceConfig.from_hp(t.hyperparameters, config) for t in trials],
            seeds=[slice_seed(spec.seed, int(t.trial_id)) for t in trials],
        )
        trainer = PackTrainer(
            net,
            prepared.fit_args,
            prepared.fit_kwargs["validation_data"],
            batch_size=spec.training.batch_size,
            objective=spec.objective.metric,
            direction=spec.objective.direction or "min",
            patience=spec.training.early_stopping_patience,
            seed=slice_seed(spec.seed, int(trials[0].trial_id)),
            sample_weight=prepared.sample_weight(),
        )
        pack = TemplatePack(trainer)
        recorder = tuner.recorder
        for k, trial in enumerate(trials):
            parent = trial.hyperparameters.values.get("tuner/trial_id")
            if parent is None:
                continue
            weights = slice_weights(recorder.artifacts, recorder.job_id, int(parent))
            if weights is None:
                trainer.fail(k, f"the weights of trial {parent}, which it continues, were not kept")
            else:
                net.load_slice(k, weights)
        return pack


class TemplatePack:
    def __init__(self, trainer: PackTrainer) -> None:
        self.trainer, self.objective = trainer, trainer.objective

    @property
    def results(self) -> Sequence[SliceOutcome]:
        return self.trainer.results

    def run_epoch(self, number: int) -> list[int]:
        return self.trainer.run_epoch(number)

    def fail(self, k: int, reason: str) -> None:
        self.trainer.fail(k, reason)

    def keep(self, k: int, tuner: kt.Tuner, trial: Any) -> None:
        recorder = tuner.recorder
        store_slice_weights(recorder.artifacts, recorder.job_id, int(trial.trial_id), self.trainer.best_weights(k))


# -- any network: the vectorised pack -----------------------------------------------------------------


def pack_network(network: NetworkBuild) -> Network:
    """A user's network as the vectorised pack builds it: each configuration is their config with
    the rates at its sites (`user_network.set_dropout`), compiled as a trial's model is."""
    sites = list(network.sites)

    def build(rates: tuple[float, ...]) -> keras.Model:
        model = build_network(set_dropout(network.config, sites, list(rates)))
        return compiled(model, network, network.learning_rate)

    names = tuple(site.layer or DROPOUT_NAME.format(site.after) for site in sites)
    return Network(build, len(sites), names)


def narrowed_network(network: NetworkBuild, rates: list[float], learning_rate: float) -> Network:
    """The verdict's smaller network (`user_network.narrowed`) as a pack's network without sites."""

    def build(_: tuple[float, ...]) -> keras.Model:
        return compiled(build_network(narrowed(network.config, list(network.sites), rates)), network, learning_rate)

    return Network(build, 0, ())


def early_stopping(prepared: Prepared) -> keras.callbacks.EarlyStopping | None:
    callbacks = prepared.fit_kwargs.get("callbacks") or []
    return next((c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)), None)


def vector_pack(
    prepared: Prepared, network: Network, slices: list[SliceSpec], seed: int, start: bool = True
) -> VectorPack:
    """A vectorised pack of the job's data (its rows weighted by the job's class weights), batches,
    objective and early stopping."""
    spec = prepared.spec
    x, y = prepared.fit_args
    return VectorPack(
        network,
        slices,
        (x, y, prepared.sample_weight()),
        prepared.fit_kwargs["validation_data"],
        batch_size=spec.training.batch_size,
        objective=spec.objective.metric,
        direction=spec.objective.direction or "min",
        early_stopping=early_stopping(prepared),
        seed=seed,
        start=start,
    )


RatesOf = Callable[[dict[str, Any]], Sequence[float]]  # a trial's hyperparameters -> its rate at each site


class NetworkPacker:
    """The packs of a network: a user's, or the template where its fused pack does not run. Each pack
    size traces its step once; later packs of that size restart on it. Made with a first pack of
    `size` (so a network that cannot vectorise is found before any trial begins)."""

    def __init__(self, prepared: Prepared, size: int, network: Network, rates_of: RatesOf) -> None:
        self.prepared, self.network, self.rates_of = prepared, network, rates_of
        probe = [SliceSpec(tuple(0.0 for _ in range(network.sites)), seed=k) for k in range(size)]
        # Traced only: the first pack's restart builds its slices (not these placeholders) once.
        self.packs = {size: vector_pack(prepared, self.network, probe, prepared.spec.seed, start=False)}

    @classmethod
    def of(cls, prepared: Prepared, size: int) -> NetworkPacker:
        """The job's network: the user's, or the template at the one shape its trials share."""
        if prepared.network is not None:
            return cls(prepared, size, pack_network(prepared.network), prepared.network.rates)
        config, units = prepared.config, prepared.spec.search_space.units
        shape = {} if units is None else {"units": int(units.candidate_values()[0])}
        return cls(prepared, size, template_network(config, shape), lambda values: template_rates(config, values))

    def start(self, tuner: kt.Tuner, trials: list[Any], first_epoch: int) -> Pack:
        spec = self.prepared.spec
        slices = [self._slice(trial) for trial in trials]
        seed = slice_seed(spec.seed, int(trials[0].trial_id))
        pack = self.packs.get(len(slices))
        if pack is None:
            pack = self.packs[len(slices)] = vector_pack(self.prepared, self.network, slices, seed)
        else:
            pack.restart(slices, seed=seed)
        for k, trial in enumerate(trials):
            parent = trial.hyperparameters.values.get("tuner/trial_id")
            if parent is None:
                continue
            path, _ = checkpoint_files(tuner, str(parent))
            if path.exists():  # fetched from the store as the trial began (`recording`)
                model = self.network.plain(slices[k].rates)
                model.load_weights(path)
                pack.load_slice(k, model)
            else:
                pack.fail(k, f"the weights of trial {parent}, which it continues, were not kept")
        return NetworkPack(pack)

    def _slice(self, trial: Any) -> SliceSpec:
        values = trial.hyperparameters.values
        return slice_spec(self.rates_of(values), values, slice_seed(self.prepared.spec.seed, int(trial.trial_id)))


class NetworkPack:
    def __init__(self, pack: VectorPack) -> None:
        self.pack, self.objective = pack, pack.objective

    @property
    def results(self) -> Sequence[SliceOutcome]:
        return self.pack.results

    def run_epoch(self, number: int) -> list[int]:
        return self.pack.run_epoch(number)

    def fail(self, k: int, reason: str) -> None:
        self.pack.fail(k, reason)

    def keep(self, k: int, tuner: kt.Tuner, trial: Any) -> None:
        """As keras-tuner checkpoints an unpacked trial: its best epoch's weights where keras-tuner
        keeps them, which the tuner's `on_trial_end` puts in the store (`recording`)."""
        path, _ = checkpoint_files(tuner, trial.trial_id)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.pack.slice_model(k, best=True).save_weights(path)


def slice_spec(rates: Sequence[float], hp: dict[str, Any], seed: int) -> SliceSpec:
    """A trial's or confirmation run's slice: its rate at each site, its seed, its learning rate
    where `hp` searched one (else the compiled optimizer's)."""
    rate = hp.get("learning_rate")
    return SliceSpec(tuple(float(r) for r in rates), seed=seed, learning_rate=None if rate is None else float(rate))
