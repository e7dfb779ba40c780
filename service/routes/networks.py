from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile, status

from service import networks as logic
from service.auth import CallerDep
from service.datasets import read_limited
from service.deps import DatabaseDep, SettingsDep, each_field_once
from service.idempotency import KEY_RULE, REPLAYABLE, IdempotencyKeyHeader
from service.schemas import API_ERRORS, NO_NUL, NetworkOut, errors, refusals

router = APIRouter(prefix="/api/v1/networks", tags=["networks"], responses=API_ERRORS)
# The file part as the schema states it: a .keras file is a zip.
NETWORK_ENCODING = {"file": {"contentType": "application/zip"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(each_field_once("file", "name"))],
    responses={**REPLAYABLE, **refusals((*logic.NETWORK_RULES, KEY_RULE), "the file is read as a Keras network")},
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"encoding": NETWORK_ENCODING}}}},
)
def upload_network(
    db: DatabaseDep,
    settings: SettingsDep,
    caller: CallerDep,
    file: Annotated[
        UploadFile,
        File(
            description="a .keras file as `model.save('net.keras')` writes it: a Sequential or Functional model "
            "of built-in Keras layers (no Lambda, no custom classes)",
            json_schema_extra={"format": "binary"},
        ),
    ],
    name: Annotated[str | None, Form(max_length=200, json_schema_extra=NO_NUL)] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> NetworkOut:
    """Check and keep a network: its layers with their shapes and weights, its inputs and outputs, its
    compile settings and its dropout sites come back. A file that is not such a network is a 422
    naming the layer or the reason, and nothing is kept."""
    data = read_limited(file.file, settings.network_max_bytes)
    return logic.register_network(db, settings, caller.owner, data, name, file.filename, idempotency_key)


@router.get("")
def list_networks(db: DatabaseDep, caller: CallerDep) -> list[NetworkOut]:
    """The caller's networks, oldest first, each with how many of their jobs train it."""
    return logic.read_networks(db, caller.scope)


@router.get("/{network_id}", responses=errors(e404="no such network (or another owner's)"))
def get_network(db: DatabaseDep, caller: CallerDep, network_id: str) -> NetworkOut:
    return logic.read_network_row(db, network_id, caller.scope)


@router.delete(
    "/{network_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(e404="no such network (or another owner's)", e409="a queued or running job trains it"),
)
def delete_network(db: DatabaseDep, settings: SettingsDep, caller: CallerDep, network_id: str) -> None:
    logic.remove_network(db, settings, network_id, caller.scope)
