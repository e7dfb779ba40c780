from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile, status

from service import datasets as logic
from service.auth import CallerDep
from service.deps import DatabaseDep, SettingsDep, each_field_once
from service.idempotency import KEY_RULE, REPLAYABLE, IdempotencyKeyHeader
from service.schemas import API_ERRORS, NO_NUL, UPLOAD_ENCODING, DatasetOut, errors, refusals

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"], responses=API_ERRORS)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(each_field_once("file", "name", "target", "reuse"))],
    responses={
        **REPLAYABLE,
        **refusals((*logic.UPLOAD_RULES, KEY_RULE), "the file is read as a dataset"),
        status.HTTP_200_OK: {"model": DatasetOut, "description": "with reuse: a dataset of yours with the same data"},
    },
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"encoding": UPLOAD_ENCODING}}}},
)
def upload_dataset(
    db: DatabaseDep,
    settings: SettingsDep,
    caller: CallerDep,
    # `format: binary` (OpenAPI 3.0's mark of a file, which FastAPI leaves out) makes generated clients
    # send a file part rather than a text field.
    file: Annotated[
        UploadFile,
        File(
            description="CSV with a header row, or NPZ with arrays x and y; any other file (an image, say) gets 422",
            json_schema_extra={"format": "binary"},
        ),
    ],
    name: Annotated[str | None, Form(max_length=200, json_schema_extra=NO_NUL)] = None,
    target: Annotated[
        str | None, Form(description="CSV target column; default: the last column", json_schema_extra=NO_NUL)
    ] = None,
    reuse: Annotated[
        bool,
        Form(
            description="answer 200 with a dataset of yours that holds the same data and description, if there "
            "is one, instead of adding another (its first name is kept)"
        ),
    ] = False,
    idempotency_key: IdempotencyKeyHeader = None,
    *,
    response: Response,
) -> DatasetOut:
    data = logic.read_limited(file.file, settings.upload_max_bytes)
    stored = logic.store_upload(
        db, settings, caller.owner, data, name, file.filename, target, idempotency_key, reuse=reuse
    )
    if not stored.created:
        response.status_code = status.HTTP_200_OK
    return stored.dataset


@router.get("")
def list_datasets(db: DatabaseDep, settings: SettingsDep, caller: CallerDep) -> list[DatasetOut]:
    """Built-ins first, then uploads, oldest first; each with its stored file's size and how many of the
    caller's jobs use it (and how many of those are queued or running)."""
    return logic.read_datasets(db, settings, caller.scope)


@router.get("/{dataset_id}", responses=errors(e404="no such dataset (or another owner's)"))
def get_dataset(db: DatabaseDep, settings: SettingsDep, caller: CallerDep, dataset_id: str) -> DatasetOut:
    return logic.read_dataset(db, settings, dataset_id, caller.scope)


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(e404="no such dataset (or another owner's)", e409="built in, or used by an active job"),
)
def delete_dataset(db: DatabaseDep, settings: SettingsDep, caller: CallerDep, dataset_id: str) -> None:
    logic.remove_dataset(db, settings, dataset_id, caller.scope)
