"""A job's kept models: listed, downloaded as `.keras` files or SavedModel exports, and asked for
predictions (which run in the predictor process, `service.predictor_client`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.datastructures import UploadFile

from service import models as logic
from service import predict
from service.auth import CallerDep
from service.deps import DatabaseDep, SettingsDep
from service.params import TrialNumber
from service.predictor_client import ModelRef, Predictor
from service.schemas import API_ERRORS, UPLOAD_ENCODING, errors, refusals
from store.errors import InputError
from store.spec import MAX_MC_SAMPLES

router = APIRouter(prefix="/api/v1/jobs", tags=["models"], responses=API_ERRORS)
Format = Annotated[
    Literal["keras", "savedmodel"],
    Query(
        description="keras: the .keras file `keras.saving.load_model` loads; savedmodel: a tar.gz of its SavedModel "
        "export for TensorFlow Serving (`1/saved_model.pb`, `1/variables/`), made once by the predictor"
    ),
]
PREDICTOR_ERRORS = errors(
    e502="the predictor failed to answer (its log has why)",
    e503="the database or the predictor is unavailable, or the predictor did not answer in time (Retry-After)",
)
MODEL_FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/octet-stream": {}, "application/gzip": {}},
        "description": "The model file (an attachment): .keras, or a SavedModel's tar.gz",
    },
    **errors(e404="no such job (or another owner's), or it kept no such model"),
    **PREDICTOR_ERRORS,
}
PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": predict.PredictOut, "description": "A prediction per row, in the dataset's terms"},
    **errors(
        e404="no such job (or another owner's), or it kept no such model",
        e415="a body that is neither JSON nor a multipart upload",
    ),
    **refusals(predict.PREDICT_RULES, "the rows are read as the model's input"),
    **PREDICTOR_ERRORS,
}
UPLOAD_FIELDS = ("file", "mc_samples", "seed")
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": predict.PredictRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    # As `read_predict_body` refuses them: a misspelt option must not be ignored.
                    "additionalProperties": False,
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV with a header naming the dataset's features (any order; a target "
                            "column is ignored), or NPZ with an array `x` of shape (rows, *input_shape); any other "
                            "file (an image, say) gets 422",
                        },
                        "mc_samples": {"type": "integer", "minimum": 0, "maximum": MAX_MC_SAMPLES},
                        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                    },
                },
                "encoding": UPLOAD_ENCODING,
            },
        },
    }
}


async def get_predictor(request: Request) -> Predictor:
    """This API process's predictor (made by `create_app`; tests override this)."""
    return request.app.state.predictor  # type: ignore[no-any-return]


async def read_predict_body(request: Request) -> bytes | predict.Upload:
    """The request's JSON as bytes, or its multipart upload; checked against the model later."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=len(UPLOAD_FIELDS))
        try:
            for field in form:
                if field not in UPLOAD_FIELDS:
                    raise InputError(field[:100], f"unknown form field; a prediction takes {', '.join(UPLOAD_FIELDS)}")
                if len(form.getlist(field)) > 1:
                    raise InputError(field, f"the form has more than one {field!r} field; send one")
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise InputError("file", "send the rows as a file (CSV or NPZ) in the form field 'file'")
            return predict.Upload(
                await file.read(), _text(form.get("mc_samples"), "mc_samples"), _text(form.get("seed"), "seed")
            )
        finally:
            await form.close()
    if media in ("", "application/json"):
        return await request.body()
    raise HTTPException(415, f"send JSON (application/json) or a multipart upload (multipart/form-data), not {media!r}")


def _text(value: str | UploadFile | None, field: str) -> str | None:
    if isinstance(value, UploadFile):
        raise InputError(field, "a plain form field, not a file")
    return value


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
PredictBody = Annotated[bytes | predict.Upload, Depends(read_predict_body)]


@router.get("/{job_id}/models", responses=errors(e404="no such job (or another owner's)"))
def list_models(db: DatabaseDep, caller: CallerDep, job_id: str) -> list[logic.ModelOut]:
    """The models the job kept when it ended: its best trials', the recommended configuration's, and
    a refit one if the spec asked for it."""
    return logic.list_models(db, job_id, caller.scope)


@router.get("/{job_id}/model", response_class=StreamingResponse, responses=MODEL_FILE)
def get_job_model(
    db: DatabaseDep,
    settings: SettingsDep,
    caller: CallerDep,
    predictor: PredictorDep,
    job_id: str,
    format: Format = "keras",
) -> StreamingResponse:
    """The job's model: its refit model if it has one, else the recommended configuration's trial
    model, else its best trial's."""
    return _download(db, settings, predictor, logic.find_model(db, job_id, caller.scope, None), format)


@router.get("/{job_id}/trials/{number}/model", response_class=StreamingResponse, responses=MODEL_FILE)
def get_trial_model(
    db: DatabaseDep,
    settings: SettingsDep,
    caller: CallerDep,
    predictor: PredictorDep,
    job_id: str,
    number: TrialNumber,
    format: Format = "keras",
) -> StreamingResponse:
    """A kept trial's model at its best epoch."""
    return _download(db, settings, predictor, logic.find_model(db, job_id, caller.scope, number), format)


@router.post("/{job_id}/predict", responses=PREDICT_RESPONSES, openapi_extra=PREDICT_BODY)
def predict_with_job_model(
    db: DatabaseDep, settings: SettingsDep, caller: CallerDep, predictor: PredictorDep, job_id: str, body: PredictBody
) -> JSONResponse:
    """Predictions of the job's model (the one GET /model serves) for rows sent as JSON or as a CSV or
    NPZ upload; with `mc_samples` also the MC-dropout mean and spread of each row."""
    return JSONResponse(predict.predict(db, settings, predictor, job_id, caller.scope, None, body))


@router.post("/{job_id}/trials/{number}/predict", responses=PREDICT_RESPONSES, openapi_extra=PREDICT_BODY)
def predict_with_trial_model(
    db: DatabaseDep,
    settings: SettingsDep,
    caller: CallerDep,
    predictor: PredictorDep,
    job_id: str,
    number: TrialNumber,
    body: PredictBody,
) -> JSONResponse:
    """Predictions of a kept trial's model, as POST /predict gives the job's."""
    return JSONResponse(predict.predict(db, settings, predictor, job_id, caller.scope, number, body))


def _download(
    db: logic.Database, settings: logic.Settings, predictor: Predictor, model: logic.StoredModel, format: str
) -> StreamingResponse:
    if format == "savedmodel":
        file = logic.savedmodel_file(db, settings, model, lambda m: predictor.export_savedmodel(ModelRef.of(m)))
        headers = {"Content-Disposition": f'attachment; filename="{file.filename}"'}
        return StreamingResponse(file.chunks, media_type="application/gzip", headers=headers)
    file = logic.model_file(db, settings, model)
    headers = {"Content-Disposition": f'attachment; filename="{file.filename}"', "Content-Length": str(model.size)}
    return StreamingResponse(file.chunks, media_type="application/octet-stream", headers=headers)
