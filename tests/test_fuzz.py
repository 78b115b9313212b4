"""Fuzzing in CI: schemathesis generates valid and invalid requests for every operation in the running service's
OpenAPI document (`GET /docs.json`) and checks each answer: never a 5xx, a documented status code and content type,
and a body that conforms to the documented schema (the one error body included).

Not checked: that every schema-valid request is accepted (a valid body can still break a business rule: an unknown
item, a minimum above the budget: a documented 400) nor that every invalid one is refused (pydantic turns "5" into
5 on purpose). Bounded: FUZZ_EXAMPLES examples per operation and mode (about a minute on 2 cores); raise
OMNIDECIDE_FUZZ_EXAMPLES for a deeper run.
"""
from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

FUZZ_EXAMPLES = int(os.environ.get("OMNIDECIDE_FUZZ_EXAMPLES", "40"))
CHECKS = [schemathesis.checks.not_a_server_error, openapi_checks.status_code_conformance,
          openapi_checks.content_type_conformance, openapi_checks.response_schema_conformance]


from omnidecide.serving.service import OmniDecide  # noqa: E402

# every endpoint of the service (a new one is fuzzed without an edit here), and readiness
OPERATIONS = [("POST", api.route) for api in OmniDecide.apis.values()] + [("GET", "/readyz")]


@pytest.fixture(scope="module")
def fuzz_client(served_tags, own_client):
    """A service of its own on a database of its own: the fuzzer's random `/items`, `/events` and `/forget_user`
    calls would otherwise change the live catalogue and online store that every later test's runtime reads."""
    return own_client


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_client):
    """The document the service itself serves; calls go to the same in-process app (no port)."""
    app = fuzz_client.app

    async def without_lifespan(scope, receive, send):
        """Schemathesis opens a test client per call; its lifespan would build (and at the end tear down) the
        service every time. The module's client already runs it."""
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return

    schema = schemathesis.openapi.from_asgi("/docs.json", without_lifespan)
    schema.config.generation.update(max_examples=FUZZ_EXAMPLES, database="none")
    return schema


def test_the_document_covers_every_endpoint(fuzz_schema):
    assert sorted((m.upper(), p) for p, ops in fuzz_schema.raw_schema["paths"].items() for m in ops) == \
        sorted(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_5xx_and_answers_match_the_document(fuzz_schema, method, path, mode):
    if method == "GET" and mode == GenerationMode.NEGATIVE:
        pytest.skip("no parameters or body to make invalid")
    operation = fuzz_schema[path][method]

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        case.call_and_validate(checks=CHECKS)

    fuzz()
