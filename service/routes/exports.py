"""A job's trials and epochs as files to download (CSV, or the same rows as JSON); see store.exports."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from service.auth import CallerDep
from service.deps import DatabaseDep
from service.schemas import API_ERRORS, errors
from store import exports
from store.exports import Table

router = APIRouter(prefix="/api/v1/jobs", tags=["exports"], responses=API_ERRORS)

Format = Annotated[
    Literal["csv", "json"],
    Query(description="`csv` (the default), or `json`: the same rows as an array of objects, one key per column"),
]
TABLE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The table, as a file to save (Content-Disposition: attachment)",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    },
    **errors(e404="no such job (or another owner's)"),
}


class CSVResponse(StreamingResponse):
    media_type = "text/csv"  # Starlette adds "; charset=utf-8"


@router.get("/{job_id}/trials.csv", responses=TABLE)
def export_trials(db: DatabaseDep, caller: CallerDep, job_id: str, format: Format = "csv") -> Response:
    """One row per trial: number, status, candidate, a column per hyperparameter, score, best_epoch,
    a column per metric at the best epoch, duration_s, started_at, error."""
    return download(exports.trials_table(db, job_id, caller.scope), format)


@router.get("/{job_id}/epochs.csv", responses=TABLE)
def export_epochs(db: DatabaseDep, caller: CallerDep, job_id: str, format: Format = "csv") -> Response:
    """Every trial's per-epoch history in long form: one row per trial and epoch (trial, epoch, a
    column per metric)."""
    return download(exports.epochs_table(db, job_id, caller.scope), format)


def download(table: Table, format: str) -> Response:
    if format == "json":
        headers = {"Content-Disposition": f'attachment; filename="{table.name}.json"'}
        return StreamingResponse(exports.json_text(table), media_type="application/json", headers=headers)
    headers = {"Content-Disposition": f'attachment; filename="{table.name}.csv"'}
    return CSVResponse(exports.csv_text(table), headers=headers)
