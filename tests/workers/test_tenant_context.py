"""Tenant context through a real worker (RELIABILITY 18).

A BrandTask runs in the schema it was published from; one published without a brand
fails with TenantContextMissing and writes nothing; fan_out through the worker reaches
every brand once per window.
"""

from __future__ import annotations

import random
import uuid

from celery import Celery
from django.conf import settings
from django_tenants.utils import schema_context

from audit.models import ActorType
from tenants.models import Brand, BrandKind
from tests.workers.celery_tasks import (
    FANOUT_ACTION,
    RECORD,
    RECORD_FANOUT,
    flaky_record,
    record_schema,
)
from tests.workers.support import drained, failures, rows_by_schema, wait_for
from workers.tasks import fan_out

TASKS = 200


def test_brand_tasks_land_in_the_schema_they_were_published_for(worker, broker, committed):
    # given: 200 tasks interleaved at random over the two brands, plus one published
    # from the public schema and one with no `_schema_name` header at all
    action = f"test.worker.{uuid.uuid4().hex[:12]}"
    committed(action)
    alpha = Brand.objects.get(slug="alpha").schema_name
    beta = Brand.objects.get(slug="beta").schema_name
    template = Brand.objects.get(kind=BrandKind.TEMPLATE).schema_name
    rng = random.Random(18)
    plan = [rng.choice((alpha, beta)) for _ in range(TASKS)]
    headerless = Celery("headerless", broker=settings.CELERY_BROKER_URL, set_as_current=False)

    # when
    for i, schema in enumerate(plan):
        with schema_context(schema):
            record_schema.apply_async(args=(action, str(i), schema))
        if i == TASKS // 4:
            public_id = record_schema.apply_async(args=(action, "public", "public")).id
        if i == TASKS // 2:
            bare_id = headerless.send_task(
                RECORD, args=(action, "no-header", "none"), queue="default"
            ).id
    # Each task either writes a row (wherever it ran) or reports a failure.
    wait_for(
        lambda: sum(map(len, rows_by_schema(action).values())) + len(failures(broker)) >= TASKS + 2,
        timeout=30,
        what=f"{TASKS + 2} tasks to finish",
    )
    wait_for(lambda: drained(broker), timeout=10, what="queues to drain")

    # then: every row sits in the schema it was published for, none in public/template
    rows = rows_by_schema(action)
    assert sorted(int(r.changes["marker"]) for r in rows[alpha]) == [
        i for i, s in enumerate(plan) if s == alpha
    ]
    assert sorted(int(r.changes["marker"]) for r in rows[beta]) == [
        i for i, s in enumerate(plan) if s == beta
    ]
    mismatches = [
        (schema, r.changes)
        for schema, schema_rows in rows.items()
        for r in schema_rows
        if not (r.changes["expected"] == r.changes["seen"] == schema)
    ]
    assert mismatches == []
    assert rows["public"] == []
    assert rows[template] == []
    assert {(r.actor_type, r.actor_id) for r in rows[alpha] + rows[beta]} == {
        (ActorType.SYSTEM, RECORD)
    }
    # and: both brandless tasks were refused before their body ran
    refused = {f["task_id"]: f for f in failures(broker)}
    assert set(refused) == {public_id, bare_id}
    assert refused[public_id]["exception"] == "TenantContextMissing"
    assert "(got 'public')" in refused[public_id]["message"]
    assert refused[bare_id]["exception"] == "TenantContextMissing"
    assert "(got None)" in refused[bare_id]["message"]


def test_retried_brand_task_keeps_its_brand(worker, broker, committed):
    # given: a task whose first attempt fails with a retryable error
    action = f"test.retry.{uuid.uuid4().hex[:12]}"
    committed(action)
    beta = Brand.objects.get(slug="beta").schema_name

    # when: published for beta
    with schema_context(beta):
        flaky_record.apply_async(args=(action, "flaky"))
    wait_for(
        lambda: any(rows_by_schema(action).values()), timeout=15, what="the retried task's row"
    )
    wait_for(lambda: drained(broker), timeout=10, what="queues to drain")

    # then: the retry ran once, in beta, and nothing landed anywhere else
    rows = rows_by_schema(action)
    assert [(r.changes["seen"], r.changes["retries"]) for r in rows[beta]] == [(beta, 1)]
    assert {schema: len(r) for schema, r in rows.items() if r} == {beta: 1}
    assert failures(broker) == []


def test_fan_out_through_the_worker_reaches_every_brand_once_per_window(worker, broker, committed):
    # given: the real brands, and fan_out published from the public schema like beat does
    committed(FANOUT_ACTION)
    brands = sorted(Brand.objects.brands().values_list("schema_name", flat=True))
    assert len(brands) >= 2
    window = f"test-{uuid.uuid4().hex[:12]}"

    def rows_per_schema() -> dict[str, list[str]]:
        return {
            schema: [r.changes["seen"] for r in rows]
            for schema, rows in rows_by_schema(FANOUT_ACTION).items()
            if rows
        }

    # when: the same window is published twice (a redelivery or a second beat)
    fan_out.apply_async(args=(RECORD_FANOUT,), kwargs={"window": window})
    fan_out.apply_async(args=(RECORD_FANOUT,), kwargs={"window": window})
    wait_for(
        lambda: sum(map(len, rows_per_schema().values())) >= len(brands),
        timeout=15,
        what="one fanned-out row per brand",
    )
    wait_for(lambda: drained(broker), timeout=10, what="queues to drain")

    # then: each brand ran it once, in its own schema; public and template got nothing
    assert rows_per_schema() == {schema: [schema] for schema in brands}

    # when: the next window arrives
    fan_out.apply_async(args=(RECORD_FANOUT,), kwargs={"window": window + "-next"})
    wait_for(
        lambda: sum(map(len, rows_per_schema().values())) >= 2 * len(brands),
        timeout=15,
        what="a second row per brand",
    )
    wait_for(lambda: drained(broker), timeout=10, what="queues to drain")

    # then: it fans out again, once
    assert rows_per_schema() == {schema: [schema, schema] for schema in brands}
    assert failures(broker) == []
