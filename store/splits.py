"""How a job's rows are divided, by size: the held-out rows, the search's split, each confirmation run's.

A job that confirms (`repeats` > 0) first sets aside `training.heldout_split` of its dataset: rows the
search never trains on or scores, on which every confirmation run is scored, so the verdict rests on
data the choice of configurations did not see. The search splits the rest into training and
validation as before; each confirmation run draws its own split of that rest from its seed (the same
split for every configuration at that seed), so the intervals cover the split as well as the
initialisation and the dropout draws. With a validation dataset the user's split is kept: the held-out
rows come from the training dataset, and every run validates on theirs.

The sizes are decided here, for the API's check and the worker's draw alike (pure Python: the API
imports this module).
"""

from __future__ import annotations

import math

from pydantic import BaseModel

# Fewer held-out rows than this would score the runs on noise: the job keeps all its rows for the
# search, and the runs are scored on their own validation splits (the report says so).
MIN_HELDOUT_ROWS = 20


def heldout_rows(n_samples: int, fraction: float, repeats: int) -> int:
    """How many of a dataset's `n_samples` rows the job holds out (0: none)."""
    if repeats == 0 or fraction <= 0:
        return 0
    rows = math.ceil(n_samples * fraction)
    return rows if rows >= MIN_HELDOUT_ROWS else 0


def search_rows(n_samples: int, fraction: float, repeats: int) -> int:
    """The rows left for the search's (and the confirmation runs') training and validation."""
    return n_samples - heldout_rows(n_samples, fraction, repeats)


class ScoredOn(BaseModel):
    """What the confirmation runs' scores rest on, for the report."""

    heldout_rows: int  # 0: each run's own validation rows
    validation_rows: int  # each run's validation rows (its best epoch, its early stopping)
    training_rows: int
    own_splits: bool  # each seed drew its own training/validation split (False: the user's validation set)

    def words(self, repeats: int) -> str:
        """One sentence for the verdict: what the scores are on, and what the intervals cover."""
        split = (
            f"each seed drew its own split into {self.training_rows} training and {self.validation_rows} validation "
            "rows (the same for every configuration)"
            if self.own_splits
            else f"every run trained on the same {self.training_rows} rows and chose its best epoch on the "
            f"validation dataset's {self.validation_rows}"
        )
        covers = "initialisation, dropout draws and split" if self.own_splits else "initialisation and dropout draws"
        if self.heldout_rows:
            return (
                f"Scores are on {self.heldout_rows} held-out rows the search never saw, {repeats} runs per "
                f"configuration: {split}, so the intervals cover the runs' {covers}, not the choice of held-out rows."
            )
        return (
            f"Scores are on each run's best validation epoch ({self.validation_rows} rows; the dataset is too small "
            f"to hold rows out), {repeats} runs per configuration: {split}, so the intervals cover the runs' {covers}."
        )
