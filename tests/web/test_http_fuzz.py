"""Property-based fuzzing of the HTTP/JSON API from its own OpenAPI document (schemathesis):
whatever a client sends, the gateway answers with a refusal or a result, never a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from services.gateway.web.openapi import document
from tests.web.conftest import CALL_SECONDS

SCHEMA = schemathesis.openapi.from_dict(document())
EXAMPLES_PER_OPERATION = 40  # enough to reach every field's edge values in seconds, not minutes


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_request_makes_the_api_fail(case, web):
    # One gateway per operation (the fixture is per test function, not per example); jobs the fuzz
    # submits run on the scripted worker, so event streams of real jobs end.
    response = case.call(base_url=web.gateway.http_address, timeout=CALL_SECONDS,
                         headers={"Authorization": f"Bearer {web.keys.alice}"})
    case.validate_response(response, checks=(not_a_server_error,))
