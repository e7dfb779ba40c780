"""A job's progress as a tqdm bar: `tqdm.auto` draws a widget in Jupyter and a line in a terminal."""

from __future__ import annotations

import sys
from typing import Any

from droptune_client.client import Snapshot
from droptune_client.progress import state


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (notebook, JupyterLab, VS Code, Colab), whose output is
    shown although stderr is no terminal. Every such kernel is ipykernel's."""
    return "ipykernel" in sys.modules


def show_by_default() -> bool:
    """Progress is shown where someone watches: a terminal, or a notebook."""
    return sys.stderr.isatty() or in_notebook()


class TqdmProgress:
    """Call with each `Snapshot`: a bar of trials finished of planned, with the job's state beside it
    (best score, the trial training now). tqdm estimates the time left from the pace of the trials."""

    def __init__(self, file: Any = None) -> None:
        self.file = file
        self.bar: Any = None

    def __call__(self, snap: Snapshot) -> None:
        job = snap.job
        done, planned = job["progress"]["finished"], job["progress"]["planned"]
        if self.bar is None:
            from tqdm.auto import tqdm  # chosen when first drawn: by then a notebook has loaded ipykernel

            self.bar = tqdm(total=planned, desc=f"job {job['id'][:8]}", unit="trial", file=self.file)
        if self.bar.total != planned:
            self.bar.total = planned
        # state() begins with the status and the trial count, which the bar's own text shows.
        self.bar.set_description(f"job {job['id'][:8]} {job['status']}", refresh=False)
        self.bar.set_postfix_str("  ".join(state(snap)[2:]), refresh=False)
        self.bar.n = done  # set, not added: tqdm then takes the time left from the average pace
        self.bar.refresh()
        if snap.finished:
            if job["status"] == "succeeded":  # planned is at most; a search may end sooner and well
                self.bar.total = done
            self.bar.close()
