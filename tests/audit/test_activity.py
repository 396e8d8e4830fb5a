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


def _seed_log(brand, owner) -> dict:
    """Entries by two people, a key and the system, on two kinds of object, on two days."""
    from datetime import UTC, datetime

    from accounts.roles import Role
    from accounts.services import create_api_key
    from audit.context import Actor
    from audit.models import ActorType
    from tests.conftest import make_user

    colleague = make_user(brand, role=Role.ADMIN, full_name="Cole League")
    with schema_context(brand.schema_name):
        issued = create_api_key(actor=owner, name="ERP", scope="write")
        key_actor = Actor(ActorType.API_KEY, str(issued.api_key.pk), "API key erp")
        entries = {
            "owner_invite": record("user.invited", obj=owner, actor=actor_for_user(owner)),
            "colleague_role": record(
                "user.role_changed", obj=colleague, actor=actor_for_user(colleague)
            ),
            "key_edit": record("brand.updated", obj=brand, actor=key_actor),
            "system_key": record("apikey.revoked", obj=issued.api_key, actor=SYSTEM),
        }
        # Spread over two days around midnight in the brand's timezone (UTC here).
        ActivityEntry.objects.filter(pk=entries["owner_invite"].pk).update(
            created_at=datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
        )
        ActivityEntry.objects.filter(
            pk__in=[e.pk for k, e in entries.items() if k != "owner_invite"]
        ).update(created_at=datetime(2026, 3, 2, 0, 1, tzinfo=UTC))
        # Other entries (signup, key creation) are older than both days.
        ActivityEntry.objects.exclude(pk__in=[e.pk for e in entries.values()]).update(
            created_at=datetime(2026, 2, 1, tzinfo=UTC)
        )
    return {"colleague": colleague, "key": issued.api_key, "entries": entries}


def test_activity_page_filters_by_person_object_and_dates(brand_a, owner_a):
    seeded = _seed_log(brand_a, owner_a)
    client = brand_client(brand_a, owner_a)
    actions = lambda r: sorted(e.action for e in r.context["page"])  # noqa: E731

    by_colleague = client.get(f"/activity/?actor=user:{seeded['colleague'].pk}")
    by_key = client.get(f"/activity/?actor=api_key:{seeded['key'].pk}")
    on_keys = client.get("/activity/?object_type=accounts.apikey")
    first_day = client.get("/activity/?since=2026-03-01&until=2026-03-01")
    from_second_day = client.get("/activity/?since=2026-03-02")
    combined = client.get("/activity/?actor_type=user&since=2026-03-02&until=2026-03-02")

    assert actions(by_colleague) == ["user.role_changed"]
    assert actions(by_key) == ["brand.updated"]
    assert actions(on_keys) == ["apikey.created", "apikey.revoked"]
    assert actions(first_day) == ["user.invited"]
    assert actions(from_second_day) == ["apikey.revoked", "brand.updated", "user.role_changed"]
    assert actions(combined) == ["user.role_changed"]
    # The "Who" choices name the people and keys that appear in the log.
    labels = dict(by_colleague.context["actors"])
    assert labels[f"user:{seeded['colleague'].pk}"] == seeded["colleague"].email
    assert labels[f"api_key:{seeded['key'].pk}"] == "API key erp"
    assert b'<option value="user:%d" selected>' % seeded["colleague"].pk in by_colleague.content


def test_activity_api_filters(brand_a, owner_a):
    seeded = _seed_log(brand_a, owner_a)
    client = brand_client(brand_a, owner_a)

    def actions(query: str) -> list[str]:
        response = client.get(f"/api/v1/activity/?{query}")
        assert response.status_code == 200, response.content
        return sorted(e["action"] for e in response.json()["results"])

    assert actions("actor_type=api_key") == ["brand.updated"]
    assert actions(f"actor_type=user&actor_id={seeded['colleague'].pk}") == ["user.role_changed"]
    assert actions("action=apikey.") == ["apikey.created", "apikey.revoked"]
    assert actions(f"object_type=accounts.apikey&object_id={seeded['key'].pk}") == [
        "apikey.created",
        "apikey.revoked",
    ]
    assert actions("since=2026-03-01T00:00:00Z&until=2026-03-02T00:00:00Z") == ["user.invited"]


def test_activity_api_refuses_malformed_filters_instead_of_ignoring_them(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    for query, field in (
        ("actor_type=robot", "actor_type"),
        ("since=yesterday", "since"),
        ("until=", "until"),
        ("action=", "action"),
    ):
        response = client.get(f"/api/v1/activity/?{query}")
        assert response.status_code == 400, query
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert field in error["fields"], query


def test_activity_is_for_admins_only(brand_a):
    from accounts.roles import Role
    from tests.conftest import make_user

    for role in (Role.BUYER, Role.WAREHOUSE, Role.VIEWER):
        client = brand_client(brand_a, make_user(brand_a, role=role))
        assert client.get("/activity/").status_code == 403
        assert client.get("/api/v1/activity/").status_code == 403
