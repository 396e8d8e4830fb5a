"""CSRF in a real browser (RELIABILITY 24d): the htmx requests a page sends carry the
X-CSRFToken header from `<body hx-headers>`, and the server accepts them; the same htmx
request without any token (no header, and no hidden form field either: htmx posts a
form's fields, so forms also carry `csrfmiddlewaretoken`) is refused with 403 and
changes nothing.

The server is another process, so the Owner who signs in is committed by `owner` and
removed afterwards with the invitations and activity entries the module caused. The
database is touched only outside the browser block (Playwright's event loop makes Django
refuse ORM calls inside it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db.models import Max
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from accounts.models import Invitation, User
from accounts.roles import Role
from audit.models import ActivityEntry
from tests.e2e.browser import LiveServer, chromium_page, track_failed_assets
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

PASSWORD = "correct-horse-battery-staple"
OWNER = "csrf.e2e@alpha.example"
SCHEMA = "brand_alpha"
INVITED = ("with-token@alpha.example", "without-token@alpha.example")


@pytest.fixture(scope="module")
def owner(django_db_setup, django_db_blocker) -> Iterator[str]:
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        person = UserFactory(email=OWNER, full_name="Cora Csrf", role=Role.OWNER)
        # The server checks passwords with the production hasher, not the tests' fast one.
        hasher = PBKDF2PasswordHasher()
        person.password = hasher.encode(PASSWORD, hasher.salt())
        person.save(update_fields=["password"])
    try:
        yield OWNER
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            Invitation.objects.filter(email__in=INVITED).delete()
            User.objects.filter(email=OWNER).delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()


def test_htmx_requests_carry_the_token_and_fail_without_it(live: LiveServer, owner: str):
    base = f"http://{live.brand_host('alpha')}"

    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        page.goto(f"{base}/accounts/login/")
        page.get_by_label("Email").fill(owner)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/accounts/team/")
        invite = page.locator("#invite")

        # with the shell's hx-headers: the token goes along and the invitation is sent
        invite.get_by_label("Email").fill(INVITED[0])
        with page.expect_response(f"{base}/accounts/team/invite/") as sent:
            invite.get_by_role("button", name="Send invitation").click()
        request = sent.value.request
        token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']")
        assert request.headers.get("hx-request") == "true"
        assert token and request.headers.get("x-csrftoken") == token
        assert sent.value.status == 200
        expect(page.locator("#invite")).to_contain_text(f"Invitation sent to {INVITED[0]}")

        assert failed_assets == []  # (the refusal below is a failed XHR on purpose)

        # the same htmx request once the page sends no token at all (neither the shell's
        # header nor the form's hidden csrfmiddlewaretoken field): refused
        page.evaluate(
            "document.body.removeAttribute('hx-headers');"
            "document.querySelectorAll('input[name=csrfmiddlewaretoken]')"
            ".forEach((field) => field.remove());"
        )
        invite = page.locator("#invite")
        invite.get_by_label("Email").fill(INVITED[1])
        with page.expect_response(f"{base}/accounts/team/invite/") as refused:
            invite.get_by_role("button", name="Send invitation").click()
        assert "x-csrftoken" not in refused.value.request.headers
        assert "csrfmiddlewaretoken" not in (refused.value.request.post_data or "")
        assert refused.value.status == 403

    with schema_context(SCHEMA):
        emails = set(Invitation.objects.values_list("email", flat=True))
        assert INVITED[0] in emails
        assert INVITED[1] not in emails
