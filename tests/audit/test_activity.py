from django_tenants.utils import schema_context

from audit.context import SYSTEM, actor_for_user
from audit.models import ActivityEntry
from audit.services import record
from tests.conftest import brand_client


def test_activity_page_filters_by_actor_and_action(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        record(
            "user.invited",
            obj=owner_a,
            changes={"email": "a@example.com"},
            actor=actor_for_user(owner_a),
        )
        record("apikey.created", obj=owner_a, actor=SYSTEM)
    client = brand_client(brand_a, owner_a)

    everything = client.get("/activity/")
    system_only = client.get("/activity/?actor_type=system")
    invites = client.get("/activity/?action=user.")

    actions = lambda r: [e.action for e in r.context["page"]]  # noqa: E731
    assert set(actions(everything)) >= {"user.invited", "apikey.created", "brand.created"}
    assert set(actions(system_only)) == {"apikey.created", "brand.created"}
    assert actions(invites) == ["user.invited"]


def test_htmx_filter_returns_only_the_results_fragment(brand_a, owner_a):
    response = brand_client(brand_a, owner_a).get(
        "/activity/?action=brand.", HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="results">')
    assert "brand.created" in html


def test_every_web_write_lands_in_the_log_with_actor_and_request_id(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    response = client.post(
        "/accounts/settings/", {"name": "Alpha Co", "timezone": "UTC", "currency": "EUR"}
    )
    assert response.status_code == 302
    with schema_context(brand_a.schema_name):
        entry = ActivityEntry.objects.get(action="brand.updated")
    assert entry.actor_label == "owner@alpha.example"
    assert entry.changes == {"name": ["Alpha", "Alpha Co"], "currency": ["USD", "EUR"]}
    assert entry.request_id == response["X-Request-ID"]


def test_times_are_shown_in_the_brand_timezone(brand_a, owner_a):
    from datetime import UTC, datetime

    with schema_context(brand_a.schema_name):
        entry = record("user.invited", obj=owner_a)
        ActivityEntry.objects.filter(pk=entry.pk).update(
            created_at=datetime(2026, 1, 15, 23, 30, tzinfo=UTC)
        )
    brand_a.timezone = "Asia/Tokyo"
    brand_a.save(update_fields=["timezone"])

    html = brand_client(brand_a, owner_a).get("/activity/?action=user.invited").content.decode()

    assert "16 Jan 2026 08:30:00" in html  # 23:30 UTC is 08:30 next day in Tokyo
    assert "When (Asia/Tokyo)" in html
