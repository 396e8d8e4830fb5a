"""Schema fuzzing (RELIABILITY 24c): schemathesis over the OpenAPI document brand alpha serves.

Every operation of the OpenAPI document is called in-process through the Django WSGI
application, on alpha's host, with the owner's write-scoped API key. The document is
generated at collection time (schemathesis parametrizes one test per operation from it);
a test proves it is exactly what alpha's host serves at `/api/schema/`. Request bodies are
sent as JSON. Schemathesis generates valid (positive) and invalid (negative) inputs, plus
its deterministic coverage cases (boundaries, empty values, wrong types); each response
must pass:

- `not_a_server_error`: never a 5xx;
- `response_schema_conformance`: a documented status returns a body matching the schema;
- `negative_data_rejection`: input that violates the schema is refused (4xx), never acted on.

A second test drives the API as a state machine: links between operations (an id created
by one POST feeds the GET/PATCH/actions of the same resource) are inferred by schemathesis
from the schema, so objects created by the fuzzer are then read, changed and acted on.

Examples per operation come from KEEL_FUZZ_EXAMPLES (default 10, fast enough for CI).
The catalog asks for at least 100 before a release:

    KEEL_FUZZ_EXAMPLES=100 .venv/bin/python -m pytest tests/api/test_fuzz_schema.py -q

Each operation runs in its own rolled-back transaction, so the examples of one operation
see each other's writes and nothing leaks to other tests.
"""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.urls import Resolver404, resolve
from django_tenants.utils import schema_context
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
)

from accounts.services import create_api_key
from tests.conftest import brand_client, host_of

EXAMPLES = int(os.environ.get("KEEL_FUZZ_EXAMPLES", "10"))
STATEFUL_EXAMPLES = int(os.environ.get("KEEL_FUZZ_STATEFUL_EXAMPLES", "10"))
STATEFUL_STEPS = int(os.environ.get("KEEL_FUZZ_STATEFUL_STEPS", "10"))

# Apps whose operations are left out of the run (the only place to say so). Empty: every
# operation of the brand API is fuzzed.
NOT_YET_FUZZED_APPS: tuple[str, ...] = ()

CHECKS = [not_a_server_error, response_schema_conformance, negative_data_rejection]


def example_of(schema: dict) -> str:
    if "enum" in schema:
        return str(schema["enum"][0])
    pattern = schema.get("pattern", "").replace("(?:", "(")
    if re.fullmatch(r"[\^$()a-z_|]+", pattern):  # a lookup_value_regex "hero|supporting|…"
        return re.sub(r"[\^$()]", "", pattern).split("|")[0]
    return "1"


def app_of(path: str, item: dict) -> str:
    """The Django app whose view serves an OpenAPI path ("" if none does)."""
    examples = {
        parameter["name"]: example_of(parameter["schema"])
        for operation in item.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    concrete = re.sub(r"\{(\w+)\}", lambda m: examples.get(m.group(1), "1"), path)
    try:
        match = resolve(concrete, urlconf="config.urls_tenant")
    except Resolver404:
        return ""
    view = getattr(match.func, "cls", None) or match.func
    return view.__module__.split(".")[0]


def fuzzed_document(document: dict) -> dict:
    document = copy.deepcopy(document)
    document["paths"] = {
        path: item
        for path, item in document["paths"].items()
        if app_of(path, item) not in NOT_YET_FUZZED_APPS
    }
    for item in document["paths"].values():
        for operation in item.values():
            content = operation.get("requestBody", {}).get("content", {})
            # Bodies are fuzzed as JSON, the API's documented format. DRF also parses form
            # bodies (its default parsers), where an empty optional field means "not given"
            # (HTML form semantics) rather than "" — reported to the lead (JSON-only
            # parsers); and Werkzeug's multipart encoder drops empty fields altogether.
            if "application/json" in content:  # (an upload-only operation keeps its form)
                for media_type in list(content):
                    if media_type != "application/json":
                        del content[media_type]
    return document


@pytest.fixture
def _keep_test_connection():
    # Django's test client detaches these too: closing "old" connections between requests
    # would close the test's own connection in the middle of its rolled-back transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def alpha_api(brand_a, owner_a, settings, _keep_test_connection):
    """(base URL, headers) for the owner's write key on alpha's host, throttling relaxed."""
    # The fuzzer sends far more than a person would; the throttle has its own tests.
    settings.API_RATE_LIMIT = "1000000/min"
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="Fuzzer", scope="write")
    return f"http://{host_of(brand_a)}", {"Authorization": f"Api-Key {issued.secret}"}


def generated_document() -> dict:
    # Built without a request, at collection time (schemathesis parametrizes from it); the
    # test below proves it is the document alpha's host serves at /api/schema/.
    generator = SchemaGenerator(urlconf="config.urls_tenant")
    return json.loads(json.dumps(generator.get_schema(request=None, public=True), default=str))


DOCUMENT = generated_document()
schema = schemathesis.openapi.from_dict(fuzzed_document(DOCUMENT))
schema.app = WSGIHandler()


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_survives_fuzzing(case, alpha_api):
    base_url, headers = alpha_api
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)


def test_stateful_workflows_over_inferred_links(alpha_api):
    """Objects the fuzzer creates are then read, changed and acted on through their ids."""
    base_url, headers = alpha_api
    steps: list[str] = []

    class KeelWorkflow(schema.as_state_machine()):
        # Every scenario starts from the same data: hypothesis replays scenarios (to shrink
        # a failure) and must see the same responses each time.
        def setup(self):
            self._savepoint = transaction.savepoint()

        def teardown(self):
            transaction.savepoint_rollback(self._savepoint)

        def after_call(self, response, case):
            steps.append(f"{case.method} {case.path}")

        def get_call_kwargs(self, case):
            return {"base_url": base_url, "headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    KeelWorkflow.run(
        settings=hypothesis_settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
    )
    # Links are on: schemathesis inferred transitions (e.g. POST /products/ → GET, PATCH
    # /products/{id}/) and the scenarios ran through them.
    assert schema.statistic.transitions.total >= 100
    assert len(steps) >= STATEFUL_EXAMPLES


def test_fuzzed_document_is_the_one_the_brand_host_serves(brand_a):
    served = brand_client(brand_a).get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert served.status_code == 200
    document = served.json()
    assert document["paths"] == DOCUMENT["paths"]
    assert document["components"] == DOCUMENT["components"]


def test_excluded_apps_are_only_the_unfinished_ones():
    """Guards the exclusion list: it hides exactly the listed apps' paths, nothing else."""
    full = DOCUMENT
    fuzzed = set(fuzzed_document(full)["paths"])
    hidden = set(full["paths"]) - fuzzed
    apps = {path: app_of(path, item) for path, item in full["paths"].items()}
    assert all(apps.values()), "a schema path no view serves"
    assert {apps[path] for path in hidden} <= set(NOT_YET_FUZZED_APPS)
    assert {"/api/v1/orders/", "/api/v1/skus/", "/api/v1/webhook-endpoints/"} <= fuzzed
