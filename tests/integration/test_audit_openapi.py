"""schemathesis over the audit service's own OpenAPI document, against the real service.

Generated requests (valid and invalid) must never get a 5xx, and every answer must match
the document: its status codes, content types and response schemas. Ingest runs with the
hub recorder's token (allowed to write), queries with an audit reader's.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.helpers.hub import REPO, running_hub
from tests.helpers.openapi_checks import CHECKS, Tried
from tests.integration.test_audit import audit_service_pid

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_path(REPO / "spawner" / "audit" / "openapi.json")
TRIED = Tried()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("openapi")) as h:
        env = open(f"/proc/{audit_service_pid(h)}/environ", "rb").read().split(b"\0")
        h.writer_token = next(
            e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"JUPYTERHUB_API_TOKEN=")
        )
        h.reader_token = h.token("admin")
        yield h
    print(TRIED.report())


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_audit_api_conforms_to_its_openapi_document(case, hub):
    token = hub.writer_token if case.method == "POST" else hub.reader_token
    TRIED.add(case)
    case.call_and_validate(
        base_url=f"{hub.url}/services/audit",
        headers={"Authorization": f"token {token}"},
        checks=CHECKS,
    )
