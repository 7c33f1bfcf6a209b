"""The device API's contract tested from the outside: schemathesis generates requests from the
server's OpenAPI document, signs them as an enrolled device, sends them over real HTTP, and holds
every answer to the document: no server error, status, content type and body as declared.
Bounded: a fixed number of examples per operation, no deadline per example."""

from __future__ import annotations

import os
import tempfile

import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edge.devtools.server_procs import new_server_data_dir, new_server_database
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.wire.protocol import HEADER_DEVICE, HEADER_SIGNATURE, b64, request_signing_bytes

DEVICE = "contract-device"
DEVICE_KEY = Ed25519PrivateKey.generate()
#: examples per operation; CI can raise it (CHECKPOINT_CONTRACT_EXAMPLES) for a longer run
EXAMPLES = int(os.environ.get("CHECKPOINT_CONTRACT_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class DeviceSignature(requests.auth.AuthBase):
    """Sign each prepared request exactly as a device does (method, path with query, body bytes)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body.encode() if isinstance(r.body, str) else (r.body or b"")
        r.headers[HEADER_DEVICE] = DEVICE
        r.headers[HEADER_SIGNATURE] = b64(DEVICE_KEY.sign(request_signing_bytes(r.method, r.path_url, body)))
        return r


def _spec() -> dict:
    """The OpenAPI document the server app serves (built once, from a throw-away database)."""
    with tempfile.TemporaryDirectory(prefix="contract-spec-") as d:
        db_url = new_server_database(f"sqlite:///{d}/server.sqlite")
        app = create_app(ServerSettings(db_url=db_url, encryption_key=X25519PrivateKey.generate()))
        spec = app.openapi()
        app.state.storage.close()
    return spec


schema = schemathesis.openapi.from_dict(_spec())


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contract")
    settings_ = new_server_data_dir(tmp / "data")
    with ServerThread(create_app(settings_)) as srv:
        srv._server.config.app.state.storage.enroll(DEVICE, DEVICE_KEY.public_key().public_bytes_raw())
        session = requests.Session()
        session.auth = DeviceSignature()
        session.trust_env = False
        yield srv.url, session


@schema.include(path_regex=r"^/v1/").parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_device_api_answers_as_its_schema_says(case, live_server):
    url, session = live_server
    if case.headers:  # the signing session sets the real signature headers
        case.headers.pop(HEADER_DEVICE, None)
        case.headers.pop(HEADER_SIGNATURE, None)
    if isinstance(case.body, dict) and "device_id" in case.body and case.path.endswith("/push"):
        case.body["device_id"] = DEVICE  # the signing device's own batch: past the identity check, into ingest
    response = case.call(base_url=url, session=session, timeout=10)
    case.validate_response(response, checks=CHECKS)
