"""How a Bayesian search is packed: as batch Bayesian optimisation packs one.

Its first trials are random points (the baseline among them), keras-tuner's `num_initial_points`:
nothing is learned until they end, so they train together as one pack. From then on each pack holds
a few points chosen together: keras-tuner's oracle fits its Gaussian process to the trials that
ended and, for each later point of a pack, gives the earlier ones still pending its pessimistic
guess of their score (the process's mean plus one standard deviation: `_vectorize_trials`
"hallucinates" ongoing trials), so they are not chosen twice and the next point looks elsewhere.
A pack this small learns after every few trials; a pack of the whole search would learn nothing.

This module is the one place that says how many: the worker packs by it (`tuner.packs`), the API
and the CLI show it. It imports neither TensorFlow nor keras-tuner.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from store.spec import JobSpec, planned_trials, resolve_space

# The later packs' size under `pack_size: auto`. bench/bayes_packing.py measures it against packs of
# one (unpacked Bayesian) and random search: see bench/results/bayes_packing.txt.
LEARNING_PACK_SIZE = 3


class BayesianPacks(BaseModel):
    """A Bayesian search's packs: a first pack of its initial random points, then packs chosen together."""

    initial_points: int = Field(ge=1, description="random points (the baseline first) trained before any is chosen")
    pack_size: int = Field(
        ge=1,
        description="the most trials of each later pack, chosen together: each point after the first with the "
        "earlier ones pending (keras-tuner's oracle gives them a pessimistic guess of their score)",
    )


def initial_points(spec: JobSpec) -> int:
    """keras-tuner's default (3 per hyperparameter searched, at least 3), but at most half the trials
    planned: past that, a small search would be random search with a few chosen points at its end."""
    space = resolve_space(spec.search_space)
    declared = 1 + sum(r is not None for r in (space.dropout_rate, space.units, space.learning_rate))
    return max(1, min(max(3 * declared, 3), math.ceil(planned_trials(spec) / 2)))


def bayesian_packs(spec: JobSpec) -> BayesianPacks | None:
    """How the spec's Bayesian search packs its trials; None for other algorithms and for packs of one."""
    if spec.algorithm != "bayesian" or spec.pack_size == 1:
        return None
    size = LEARNING_PACK_SIZE if spec.pack_size == "auto" else spec.pack_size
    return BayesianPacks(initial_points=initial_points(spec), pack_size=size)
