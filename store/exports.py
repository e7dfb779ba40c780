"""A job's trials and epochs as tables to download: the queries, the rows, and their CSV and JSON text.

A table is read once its job is found (owners apply as for every other read) and written as it is
sent, so a job of many trials and epochs is never held as one string. CSV cells that a spreadsheet
would run as a formula are neutralised; numbers stay numbers.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from store import jobs as q
from store.db import Database
from store.spec import JobSpec
from store.tables import Epoch, Job, Trial

Cell = str | int | float | bool | dt.datetime | None

# What a spreadsheet takes for the start of a formula (OWASP's list for CSV injection): a text cell
# starting with one of them gets a single quote in front, which spreadsheets show as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 500  # rows sent per write: few enough to stream, enough to keep writes few


@dataclass(frozen=True)
class Table:
    """A table to send: the file name it downloads as (without extension), its columns, and its rows,
    read from the store as they are iterated."""

    name: str
    columns: list[str]
    rows: Callable[[], Iterable[list[Cell]]]


# --- the two tables ------------------------------------------------------------------------------


def trials_table(db: Database, job_id: str, scope: str | None) -> Table:
    """One row per trial, by number: its state, a column per hyperparameter, its score and the metrics
    at its best epoch, its time, its error. NotFoundError for a missing job or another owner's."""
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id, scope)
        names = JobSpec.model_validate(job.spec).hyperparameter_names()
        trials = q.all_trials(session, job_id)
    metrics = metric_order({m for t in trials for m in t.best_metrics or {}})
    columns = [
        "number",
        "status",
        "candidate",
        *names,
        "score",
        "best_epoch",
        *metrics,
        "duration_s",
        "started_at",
        "error",
    ]
    rows = [trial_row(t, names, metrics) for t in trials]
    return Table(f"{file_stem(job)}-trials", columns, lambda: rows)


def trial_row(trial: Trial, names: list[str], metrics: list[str]) -> list[Cell]:
    best = trial.best_metrics or {}
    return [
        trial.number,
        trial.status,
        trial.candidate,
        *(trial.hyperparameters.get(n) for n in names),  # a rate without a dropout layer is None
        trial.score,
        trial.best_epoch,
        *(best.get(m) for m in metrics),
        trial.duration_s,
        trial.started_at,
        trial.error,
    ]


def epochs_table(db: Database, job_id: str, scope: str | None) -> Table:
    """Every trial's history in long form: one row per trial and epoch, a column per metric recorded.
    NotFoundError for a missing job or another owner's."""
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id, scope)
        metrics = metric_order(epoch_metric_names(session, job_id))

    def rows() -> Iterator[list[Cell]]:
        with db.session(readonly=True) as session:
            yield from epoch_rows(session, job_id, metrics)

    return Table(f"{file_stem(job)}-epochs", ["trial", "epoch", *metrics], rows)


def epoch_metric_names(session: Session, job_id: str) -> set[str]:
    """The metric names in any epoch of the job, asked of the database so the epochs are read once."""
    if session.get_bind().dialect.name == "postgresql":
        keys = select(func.json_object_keys(Epoch.metrics)).select_from(Epoch)
    else:  # SQLite: the keys of each epoch's object, as a table joined to it
        each = func.json_each(Epoch.metrics).table_valued("key")
        keys = select(each.c.key).select_from(Epoch).join(each, true())
    keys = keys.join(Trial, Trial.id == Epoch.trial_id).where(Trial.job_id == job_id).distinct()
    return set(session.scalars(keys))


def epoch_rows(session: Session, job_id: str, metrics: list[str]) -> Iterator[list[Cell]]:
    query = (
        select(Trial.number, Epoch.epoch, Epoch.metrics)
        .join(Trial, Trial.id == Epoch.trial_id)
        .where(Trial.job_id == job_id)
        .order_by(Trial.number, Epoch.epoch)
        .execution_options(yield_per=1000)
    )
    for number, epoch, values in session.execute(query):
        yield [number, epoch, *(values.get(m) for m in metrics)]


def metric_order(names: Iterable[str]) -> list[str]:
    """Training metrics before validation ones, loss first in each: loss, accuracy, val_loss, val_accuracy."""
    return sorted(names, key=lambda m: (m.startswith("val_"), m.removeprefix("val_") != "loss", m))


def file_stem(job: Job) -> str:
    """The job's name as a file name (lower-case ASCII letters, digits and dashes), else its id."""
    ascii_name = unicodedata.normalize("NFKD", job.name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[:60].strip("-")
    return slug or job.id


# --- as text -------------------------------------------------------------------------------------


def _first_visible(text: str) -> str:
    """The first character a spreadsheet would read past: spaces of any kind (NBSP, newlines...) and
    invisible format characters (zero-width space, BOM...) skipped, compatibility forms folded
    (a fullwidth `＝` is `=`). Empty if there is none."""
    for char in text:
        if not char.isspace() and unicodedata.category(char) != "Cf":
            return unicodedata.normalize("NFKC", char)
    return ""


def neutralise(text: str) -> str:
    """Text that a spreadsheet would take for a formula, quoted so that it shows as the text it is:
    one starting with a formula character, or whose first visible character is one."""
    if text.startswith(FORMULA_STARTS) or _first_visible(text).startswith(FORMULA_STARTS):
        return "'" + text
    return text


def _plain(cell: Cell) -> str | int | float | bool | None:
    """The cell as JSON has it: a time in ISO 8601, no NaN or infinity (the store keeps none anyway)."""
    if isinstance(cell, dt.datetime):
        return cell.isoformat()
    if isinstance(cell, float) and not math.isfinite(cell):
        return None
    return cell


def _csv_cell(cell: Cell) -> str | int | float:
    value = _plain(cell)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as JSON writes them
    return neutralise(value) if isinstance(value, str) else value  # a number, -0.5 included, stays one


class _Line:
    """A file-like object whose write returns what was written, so csv.writer gives back its lines."""

    def write(self, text: str) -> str:
        return text


def _chunks(lines: Iterable[str]) -> Iterator[str]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == ROWS_PER_CHUNK:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def csv_text(table: Table) -> Iterator[str]:
    """The table as CSV (RFC 4180, a header row first), a chunk of rows at a time."""
    writer = csv.writer(_Line())
    yield writer.writerow([_csv_cell(c) for c in table.columns])
    yield from _chunks(writer.writerow([_csv_cell(c) for c in row]) for row in table.rows())


def json_text(table: Table) -> Iterator[str]:
    """The table as a JSON array of objects, one per row, every column a key (null when empty), a
    chunk of rows at a time."""
    columns = table.columns
    objects = (json.dumps(dict(zip(columns, map(_plain, row), strict=True))) for row in table.rows())
    yield "["
    yield from _chunks(("\n" if i == 0 else ",\n") + text for i, text in enumerate(objects))
    yield "\n]\n"
