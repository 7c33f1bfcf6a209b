"""The device API's OpenAPI document as the handlers really behave.

Handlers that read raw bytes (to check a device's signature over exactly what was sent) give
FastAPI nothing to describe: no request body, only a 200. This adds the wire models from
``sync.wire.protocol`` as request and response bodies, the signature headers, and every status a
device may get, so a contract tester (schemathesis in the tests) can generate real requests and
hold each answer to the schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sync.wire.protocol import (
    API,
    CBOR_MEDIA_TYPE,
    ENVELOPE_MEDIA_TYPE,
    HEADER_DEVICE,
    HEADER_SIGNATURE,
    EnrollRequest,
    EnrollResult,
    ErrorBody,
    Heartbeat,
    PushBatch,
    PushResult,
    ReadmitRequest,
)

_SIGNED = [
    {"name": HEADER_DEVICE, "in": "header", "required": True, "schema": {"type": "string"},
     "description": "Enrolled device id."},
    {"name": HEADER_SIGNATURE, "in": "header", "required": True, "schema": {"type": "string"},
     "description": "Base64 Ed25519 signature of the request (sync.wire.protocol.request_signing_bytes)."},
]
_ERRORS = {
    "401": "Not signed by an enrolled device (readmit: certificate or signature refused).",
    "404": "Nothing of that kind on this server.",
    "409": "The batch conflicts with what the server holds (chain broken, record altered, conflict).",
    "413": "Body over the size limit.",
    "422": "The request does not validate.",
    "429": "Too many requests from this device or address.",
    "503": "The database is unavailable: retry after Retry-After seconds.",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(ErrorBody, _ERRORS[code]) for code in codes}


def _add_models(spec: dict[str, Any], *models: type[BaseModel]) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema


def describe(spec: dict[str, Any], *, push: bool = False) -> dict[str, Any]:
    """Complete FastAPI's generated ``spec`` for the device API routes it has; ``push``: the app
    answers ``POST /v1/push`` outside FastAPI's router (``sync.server.push``), so FastAPI does not
    know that operation."""
    _add_models(spec, EnrollRequest, EnrollResult, ErrorBody, Heartbeat, PushBatch, PushResult, ReadmitRequest)
    paths = spec.setdefault("paths", {})
    if push:
        paths.setdefault(f"{API}/push", {}).setdefault("post", {"summary": "Push", "operationId": "push_v1_push_post"})
    if op := paths.get(f"{API}/enroll", {}).get("post"):
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(EnrollRequest)}}}
        op["responses"] = {"200": _json(EnrollResult, "Enrolled (or the same key again)."),
                           **_errors("401", "409", "413", "422", "429", "503")}
    if op := paths.get(f"{API}/readmit", {}).get("post"):
        op["parameters"] = _SIGNED
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(ReadmitRequest)}}}
        op["responses"] = {"200": _json(EnrollResult, "Re-admitted: certificate and signature check out."),
                           **_errors("401", "409", "413", "429", "503")}
    if op := paths.get(f"{API}/enrollment", {}).get("get"):
        op["parameters"] = _SIGNED
        op["responses"] = {"200": _json(EnrollResult, "The signing device's enrollment certificate."),
                           **_errors("401", "429", "503")}
    if op := paths.get(f"{API}/push", {}).get("post"):
        op["parameters"] = _SIGNED
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(PushBatch)}}}
        op["responses"] = {"200": _json(PushResult, "Stored; acked_seq is the highest seq held without a gap."),
                           **_errors("401", "409", "413", "422", "429", "503")}
    if op := paths.get(f"{API}/heartbeat", {}).get("post"):
        op["parameters"] = _SIGNED
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(Heartbeat)}}}
        op["responses"] = {"204": {"description": "Kept as the device's latest heartbeat (its 'last seen')."},
                           **_errors("401", "413", "422", "429", "503")}
    downloads = {"trust": ENVELOPE_MEDIA_TYPE, "policy": ENVELOPE_MEDIA_TYPE, "time": ENVELOPE_MEDIA_TYPE,
                 "risk": CBOR_MEDIA_TYPE, "valuesets": ENVELOPE_MEDIA_TYPE, "software/{target}": ENVELOPE_MEDIA_TYPE}
    for name, media in downloads.items():
        if op := paths.get(f"{API}/{name}", {}).get("get"):
            op["parameters"] = [*_SIGNED, *op.get("parameters", [])]
            op["responses"] = {"200": {"description": "Signed update.", "content": {media: {"schema": {}}}},
                               "204": {"description": "Nothing newer than the device has."},
                               **_errors("401", "404", "422", "429", "503")}
    if op := paths.get(f"{API}/software/files/{{sha256}}", {}).get("get"):
        op["parameters"] = [*_SIGNED, *op.get("parameters", [])]
        op["responses"] = {"200": {"description": "One wheel of a signed release, by its SHA-256.",
                                   "content": {"application/octet-stream": {"schema": {}}}},
                           **_errors("401", "404", "422", "429", "503")}
    return spec


def install_openapi(app: FastAPI, *, push: bool = False) -> None:
    """Serve ``describe(FastAPI's schema)`` as the app's OpenAPI document, and answer a request that
    fails FastAPI's own parameter validation with the same ``ErrorBody`` as every other error
    (FastAPI's default is a different shape, with the input echoed back)."""
    generate = app.openapi

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(str(p) for p in err.get("loc", ())) for err in exc.errors()[:5])
        body = ErrorBody(error="bad_request", detail=f"invalid: {fields}"[:200])
        return JSONResponse(body.model_dump(exclude_none=True), status_code=422)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(generate(), push=push)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
