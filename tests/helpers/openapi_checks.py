"""What both schemathesis runs check (tests/integration/test_*openapi.py): no 5xx, and every
answer's status code, content type and body as the document says. ``Tried`` counts the
generated cases per operation, for the report."""

from __future__ import annotations

from collections import Counter

from schemathesis import checks as st_checks

CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


class Tried(Counter):
    def add(self, case) -> None:
        self[f"{case.method} {case.path}"] += 1

    def report(self) -> str:
        return f"schemathesis cases per operation: {dict(self)} total {sum(self.values())}"
