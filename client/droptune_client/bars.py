"""A job's progress as a tqdm bar: `tqdm.auto` draws a widget in Jupyter and a line in a terminal."""

from __future__ import annotations

import sys
from typing import Any

from droptune_client.client import Snapshot
from droptune_client.progress import epoch_text, fraction, state


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (notebook, JupyterLab, VS Code, Colab), whose output is
    shown although stderr is no terminal. Every such kernel is ipykernel's."""
    return "ipykernel" in sys.modules


def show_by_default() -> bool:
    """Progress is shown where someone watches: a terminal, or a notebook."""
    return sys.stderr.isatty() or in_notebook()


class TqdmProgress:
    """Call with each `Snapshot`: a bar of the job's epochs done of planned, all phases (a pack of
    trials moves it every epoch), with where the job is beside it (the phase and what trains in it,
    the best score). tqdm estimates the time left from the pace of the epochs."""

    def __init__(self, file: Any = None) -> None:
        self.file = file
        self.bar: Any = None

    def __call__(self, snap: Snapshot) -> None:
        job = snap.job
        done, planned = fraction(job)
        unit = "epoch" if job["progress"].get("epochs_planned") else "trial"
        if self.bar is None:
            from tqdm.auto import tqdm  # chosen when first drawn: by then a notebook has loaded ipykernel

            self.bar = tqdm(total=planned, desc=f"job {job['id'][:8]}", unit=unit, file=self.file)
        if self.bar.total != planned and not snap.finished:  # a job that ends short keeps its plan: red
            self.bar.total = planned
            widget = getattr(self.bar, "container", None)  # tqdm.notebook's: its bar's max follows reset() only
            if widget is not None:
                widget.children[1].max = planned
        # state() begins with the status and the trial count; the bar counts epochs, so the trials stay.
        status, trials, *rest = state(snap)
        epoch = None if snap.finished else epoch_text(job)
        self.bar.set_description(f"job {job['id'][:8]} {status}", refresh=False)
        self.bar.set_postfix_str("  ".join([trials, *rest, *([epoch] if epoch else [])]), refresh=False)
        self.bar.n = done  # set, not added: tqdm then takes the time left from the average pace
        self.bar.refresh()
        if snap.finished:
            if job["status"] == "succeeded":  # planned is at most; a search may end sooner and well
                self.bar.total = done
            self.bar.close()
