"""Path and query parameters whose rule is more than their type says, each with its one rule."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import Path, Query
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
    Path(ge=0, le=MAX_TRIAL_NUMBER, description="the trial's number: 0, 1, 2, ... as the job lists them"),
    # After the bounds: pydantic states bounds set outside a validator as raw `ge`/`le`, not JSON Schema's.
    BeforeValidator(_plain_trial_number),
]


# A cursor as the trials listing gives it: an RFC 3339 date-time with its offset, what the schema's
# `format: date-time` promises. Pydantic alone would also read a bare number as seconds (or
# milliseconds) since 1970 and a date-time without an offset as UTC: a number sent here is more
# likely a trial number or a timestamp of the caller's own than a cursor, so it gets a 422.
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(raw: object) -> object:
    if isinstance(raw, str) and DATE_TIME.fullmatch(raw) is None:
        raise ValueError(
            f"{raw[:50]!r} is not a date-time with its offset; send the `cursor` of the previous answer "
            "(such as 2025-01-31T12:00:00Z)"
        )
    return raw


Since = Annotated[
    dt.datetime | None,
    BeforeValidator(_rfc3339),
    Query(
        description="only the trials changed after this cursor: the `cursor` of the previous answer, an RFC 3339 "
        "date-time with its offset (a bare number gets 422)"
    ),
]
