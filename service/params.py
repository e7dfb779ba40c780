"""Path parameters that several routes share, each with its one rule."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path
from pydantic import BeforeValidator

# A trial number as a path writes it: a plain non-negative decimal integer, no sign, no leading zero,
# no decimal point or exponent ("1.0", "+1", "01" and "1e0" are not trial 1). The dashboard's pages
# (routes/dashboard.py, js/common.js) check the same before using one.
TRIAL_NUMBER = re.compile(r"0|[1-9][0-9]{0,9}")
MAX_TRIAL_NUMBER = 1_000_000_000


def _plain_trial_number(raw: object) -> object:
    if isinstance(raw, str) and TRIAL_NUMBER.fullmatch(raw) is None:
        raise ValueError("a trial number is a plain non-negative decimal integer, such as 0 or 12")
    return raw


TrialNumber = Annotated[
    int,
    BeforeValidator(_plain_trial_number),
    Path(ge=0, le=MAX_TRIAL_NUMBER, description="the trial's number: 0, 1, 2, ... as the job lists them"),
]
