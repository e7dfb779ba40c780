"""How a job's trials train, as the worker decided when its search started (`jobs.execution`).

Packs train K trials as one computation; where a job asked for packs and its network cannot train
in one, its trials train one at a time and the job says why, so that a user who wonders why their
search is slow reads the reason on the job, not in a log.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from store.bayesian import BayesianPacks

# The trainers: droptune's template as a fused einsum network (`models.packed_net`, on TensorFlow),
# any Keras network (the template too, on JAX) as one step vectorised over its slices
# (`models.vector_pack`), or keras-tuner's own loop with one `fit` per trial.
Trainer = Literal["template_pack", "vectorized_pack", "fit"]


class Execution(BaseModel):
    trainer: Trainer = Field(description="template_pack, vectorized_pack (any network), or fit (one trial at a time)")
    pack_size: int = Field(ge=1, description="the most trials trained together (1: one at a time)")
    bayesian: BayesianPacks | None = Field(
        None,
        description="a Bayesian search in packs: its first pack holds its initial random points (pack_size "
        "trials at most), each later pack at most bayesian.pack_size trials chosen together, so that each "
        "pack learns from the ones before; null for other algorithms and for one trial at a time",
    )
    # Null on jobs recorded before droptune ran on more than one backend (all TensorFlow on a CPU).
    backend: str | None = Field(None, description="the Keras backend that trained the trials: tensorflow or jax")
    device: str | None = Field(
        None, description="what trained them: cpu, or the accelerator's name as the backend reports it"
    )
    reason: str | None = Field(
        None, description="why the trials train one at a time although the job allowed packs; null otherwise"
    )
