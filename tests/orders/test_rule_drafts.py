"""Drafts are edited in place until published: rules added, changed, reordered and removed
on the same version, simulated in between; published versions never change."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.roles import Role
from audit.models import ActivityEntry
from orders.models import Rule, RuleSet
from orders.services import (
    draft_rule_set,
    ingest_order,
    publish_rule_set,
    simulate,
    update_draft_rule_set,
)
from tests.conftest import brand_client, make_user
from tests.orders.conftest import TYPICAL_RULES, order_input, publish_typical_rules
from tests.orders.test_views import TYPICAL_AS_TYPED, rules_post

pytestmark = pytest.mark.usefixtures("in_alpha")

MOUNTAIN = {
    "name": "Mountain",
    "conditions": {"state_in": ["CO", "UT"]},
    "actions": {"ship_from": "TX"},
}


def stored(rule_set: RuleSet) -> list[tuple]:
    return list(
        Rule.objects.filter(rule_set=rule_set)
        .order_by("position")
        .values_list("position", "name", "conditions", "actions", "is_active")
    )


@pytest.fixture
def ops(brand_a):
    return brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))


# --- Service ------------------------------------------------------------------------------


def test_a_draft_is_changed_in_place_and_the_change_is_logged(network, owner_a):
    draft = draft_rule_set(actor=owner_a, rules=TYPICAL_RULES[:2], note="first go")

    # Reordered, one changed, one added; the same version afterwards.
    wholesale, expedited = TYPICAL_RULES[1], TYPICAL_RULES[0]
    faster = {**expedited, "actions": {"ship_from": "PA"}}
    update_draft_rule_set(draft, actor=owner_a, rules=[wholesale, faster, MOUNTAIN], note="v2")

    draft.refresh_from_db()
    assert (draft.version, draft.status, draft.note) == (1, "draft", "v2")
    assert RuleSet.objects.count() == 1
    assert stored(draft) == [
        (1, "Wholesale from the PA 3PL", wholesale["conditions"], wholesale["actions"], True),
        (2, "Expedited ships in-house", expedited["conditions"], {"ship_from": "PA"}, True),
        (3, "Mountain", MOUNTAIN["conditions"], MOUNTAIN["actions"], True),
    ]
    entry = ActivityEntry.objects.get(action="rules.draft_edited")
    assert entry.changes == {
        "rules": [
            ["Expedited ships in-house", "Wholesale from the PA 3PL"],
            ["Wholesale from the PA 3PL", "Expedited ships in-house", "Mountain"],
        ],
        "note": ["first go", "v2"],
    }


def test_saving_a_draft_unchanged_logs_nothing(network, owner_a):
    draft = draft_rule_set(actor=owner_a, rules=TYPICAL_RULES, note="same")

    update_draft_rule_set(draft, actor=owner_a, rules=TYPICAL_RULES, note="same")

    assert not ActivityEntry.objects.filter(action="rules.draft_edited").exists()
    assert [name for _, name, *_ in stored(draft)] == [r["name"] for r in TYPICAL_RULES]


def test_invalid_rules_leave_the_draft_as_it_was(network, owner_a):
    draft = draft_rule_set(actor=owner_a, rules=TYPICAL_RULES)
    before = stored(draft)
    bad = {"name": "Nowhere", "conditions": {}, "actions": {"ship_from": "MOON"}}

    with pytest.raises(ValidationError) as excinfo:
        update_draft_rule_set(draft, actor=owner_a, rules=[*TYPICAL_RULES, bad])

    assert excinfo.value.message_dict == {"rule 7": ["Unknown warehouse 'MOON'."]}
    assert stored(draft) == before
    assert not ActivityEntry.objects.filter(action="rules.draft_edited").exists()


def test_published_and_archived_versions_never_change(network, owner_a):
    first = publish_typical_rules()
    second = publish_rule_set(draft_rule_set(actor=owner_a, rules=[MOUNTAIN]))
    first.refresh_from_db()

    for rule_set in (first, second):
        before = stored(rule_set)
        with pytest.raises(ValidationError) as excinfo:
            update_draft_rule_set(rule_set, actor=owner_a, rules=[MOUNTAIN, *TYPICAL_RULES])
        assert excinfo.value.code == "not_draft"
        assert stored(rule_set) == before
    assert dict(RuleSet.objects.values_list("version", "status")) == {
        1: "archived",
        2: "published",
    }


def test_simulation_follows_the_edited_draft(network, owner_a):
    publish_typical_rules()
    colorado = ingest_order(order_input(state="CO", external_id="CO-1")).order
    ingest_order(order_input(state="CA", external_id="CA-1"))
    draft = draft_rule_set(actor=owner_a, rules=TYPICAL_RULES)
    assert [row for row in simulate(draft, last=10) if row.changed] == []

    update_draft_rule_set(draft, actor=owner_a, rules=[*TYPICAL_RULES, MOUNTAIN])

    changed = [row for row in simulate(draft, last=10) if row.changed]
    assert [(row.order_id, row.proposed) for row in changed] == [(colorado.pk, "rules: TX")]
    assert changed[0].explanation == "Rule “Mountain” ships everything from TX."


# --- Pages --------------------------------------------------------------------------------


def test_draft_page_offers_edit_and_published_page_only_a_copy(network, owner_a, ops):
    publish_typical_rules()
    draft_rule_set(actor=owner_a, rules=TYPICAL_RULES)

    draft_page = ops.get("/orders/rules/2/").content.decode()
    published_page = ops.get("/orders/rules/1/").content.decode()

    assert 'href="/orders/rules/2/edit/">Edit draft</a>' in draft_page
    assert 'href="/orders/rules/new/?from=2">Copy to a new draft</a>' in draft_page
    assert "/orders/rules/1/edit/" not in published_page
    assert 'href="/orders/rules/new/?from=1">Copy to a new draft</a>' in published_page


def test_editor_opens_a_draft_with_its_rules_and_posts_back_to_it(network, owner_a, ops):
    draft_rule_set(actor=owner_a, rules=TYPICAL_RULES, note="Typical")

    response = ops.get("/orders/rules/1/edit/")

    assert response.status_code == 200
    assert [row["name"] for row in response.context["formset"].initial] == [
        r["name"] for r in TYPICAL_RULES
    ]
    assert response.context["note"] == "Typical"
    body = response.content.decode()
    assert "Edit draft v1" in body
    assert 'hx-post="/orders/rules/1/edit/"' in body


def test_moving_adding_and_removing_rows_of_a_draft_saves_nothing_until_save(network, owner_a, ops):
    draft = draft_rule_set(actor=owner_a, rules=TYPICAL_RULES[:2])
    before = stored(draft)
    rows = TYPICAL_AS_TYPED[:2]
    url = "/orders/rules/1/edit/"

    moved = ops.post(url, rules_post(rows, op="down-0"), HTTP_HX_REQUEST="true")
    added = ops.post(url, rules_post(rows, op="add"))
    removed = ops.post(url, rules_post(rows, op="remove-1"))

    assert [r["name"] for r in moved.context["formset"].initial] == [
        "Wholesale from the PA 3PL",
        "Expedited ships in-house",
    ]
    assert 'hx-post="/orders/rules/1/edit/"' in moved.content.decode()
    assert [r["name"] for r in added.context["formset"].initial][-1] == ""
    assert [r["name"] for r in removed.context["formset"].initial] == ["Expedited ships in-house"]
    assert stored(draft) == before


def test_saving_the_editor_rewrites_the_same_draft(network, owner_a, ops):
    publish_typical_rules()
    draft_rule_set(actor=owner_a, rules=TYPICAL_RULES, note="Copy")
    # Reordered (north east first), one edited (West coast adds Utah), one removed
    # (subscriptions), one added.
    rows = [
        TYPICAL_AS_TYPED[5],
        *TYPICAL_AS_TYPED[:2],
        {**TYPICAL_AS_TYPED[3], "states": "CA, NV, AZ, OR, WA, UT"},
        TYPICAL_AS_TYPED[4],
        {"name": "Mountain", "states": "CO", "ship_from": "TX"},
    ]

    saved = ops.post("/orders/rules/2/edit/", rules_post(rows, note="Mountain and Utah"))

    assert saved.status_code == 302 and saved["Location"] == "/orders/rules/2/"
    assert dict(RuleSet.objects.values_list("version", "status")) == {
        1: "published",
        2: "draft",
    }
    draft = RuleSet.objects.get(version=2)
    assert draft.note == "Mountain and Utah"
    assert [(pos, name, cond) for pos, name, cond, _, _ in stored(draft)] == [
        (1, "North east", {"state_in": ["NY", "NJ", "PA", "MA"]}),
        (2, "Expedited ships in-house", {"service_level_in": ["expedited"]}),
        (3, "Wholesale from the PA 3PL", {"order_type_in": ["wholesale"]}),
        (4, "West coast", {"state_in": ["CA", "NV", "AZ", "OR", "WA", "UT"]}),
        (5, "South central", {"state_in": ["TX", "OK", "AR", "LA"]}),
        (6, "Mountain", {"state_in": ["CO"]}),
    ]
    # The published version routed orders and is untouched.
    assert [name for _, name, *_ in stored(RuleSet.objects.get(version=1))] == [
        r["name"] for r in TYPICAL_RULES
    ]


def test_an_invalid_edit_shows_the_error_on_its_row_and_keeps_the_draft(network, owner_a, ops):
    draft = draft_rule_set(actor=owner_a, rules=TYPICAL_RULES[:1])
    before = stored(draft)
    rows = [TYPICAL_AS_TYPED[0], {"name": "No action", "states": "TX"}]

    response = ops.post("/orders/rules/1/edit/", rules_post(rows))

    assert response.status_code == 422
    forms = response.context["formset"].forms
    assert [f.non_field_errors() for f in forms] == [[], ["A rule needs at least one action."]]
    assert stored(draft) == before


def test_a_version_published_meanwhile_is_not_edited(network, owner_a, ops):
    draft = draft_rule_set(actor=owner_a, rules=TYPICAL_RULES)
    opened = ops.get("/orders/rules/1/edit/")
    assert opened.status_code == 200
    publish_rule_set(draft)  # someone else publishes while the editor is open
    before = stored(draft)

    saved = ops.post("/orders/rules/1/edit/", rules_post(TYPICAL_AS_TYPED[:2]))
    reopened = ops.get("/orders/rules/1/edit/")

    assert saved.status_code == 422
    assert "only a draft can be edited" in saved.content.decode()
    assert stored(draft) == before
    assert reopened.status_code == 302
    assert reopened["Location"] == "/orders/rules/new/?from=1"


def test_a_viewer_cannot_edit_a_draft(network, owner_a, brand_a):
    draft = draft_rule_set(actor=owner_a, rules=TYPICAL_RULES)
    before = stored(draft)
    viewer = brand_client(brand_a, make_user(brand_a, role=Role.VIEWER))

    opened = viewer.get("/orders/rules/1/edit/")
    saved = viewer.post("/orders/rules/1/edit/", rules_post(TYPICAL_AS_TYPED[:1]))

    assert (opened.status_code, saved.status_code) == (403, 403)
    assert stored(draft) == before
