"""A brand signs up in a real browser and lands on its own subdomain, signed in."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django_tenants.utils import schema_context
from playwright.sync_api import Page, expect

from accounts.models import User
from config.navigation import SECTIONS
from tenants.models import Brand, Domain
from tenants.services import schema_name_for
from tests.e2e.browser import LiveServer, chromium_page, track_failed_assets

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

BRAND_NAME = "E2E Outfitters"
FULL_NAME = "Erin Tester"
PASSWORD = "correct-horse-battery-staple"
OWNER_NAV = [s.label for s in SECTIONS]  # an owner sees every section


def schemas() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace")
        return {row[0] for row in cursor.fetchall()}


@pytest.fixture
def new_slug(drop_after_module: list[str]) -> str:
    """A slug no other run uses; the brand the server commits for it is dropped later."""
    slug = f"e2e-{secrets.token_hex(4)}"
    drop_after_module.append(slug)
    return slug


def fill_signup(page: Page, *, slug: str, email: str, password: str) -> None:
    page.get_by_label("Brand name").fill(BRAND_NAME)
    page.get_by_label("Subdomain").fill(slug)
    page.get_by_label("Your name").fill(FULL_NAME)
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password").fill(password)


def test_signup_lands_signed_in_on_the_brand_subdomain(
    live: LiveServer, new_slug: str, tmp_path: Path
):
    email = f"erin@{new_slug}.example"

    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        page.goto(f"{live.url}/signup/")
        fill_signup(page, slug=new_slug, email=email, password=PASSWORD)
        page.get_by_role("button", name="Create workspace").click()
        # signup -> <slug>.localhost/accounts/welcome/<token>/ -> dashboard
        page.wait_for_url(f"http://{live.brand_host(new_slug)}/")
        page.screenshot(path=tmp_path / "dashboard.png", full_page=True)

        assert urlsplit(page.url).netloc == live.brand_host(new_slug)
        expect(page.locator("main h1")).to_have_text(BRAND_NAME)
        expect(page.locator(".topbar .brand-name")).to_have_text(BRAND_NAME)
        expect(page.locator(".topbar .who")).to_have_text(f"{FULL_NAME} · Owner")
        expect(page.get_by_role("status")).to_have_text("Welcome to Keel, Erin.")
        nav = page.get_by_role("navigation", name="Sections").get_by_role("link")
        expect(nav).to_have_text(OWNER_NAV)
        # Sessions are host-only: the sign-in must not be valid on the public host or on
        # any sibling brand.
        session_cookies = [c for c in page.context.cookies() if c["name"] == "sessionid"]
        assert [c["domain"] for c in session_cookies] == [f"{new_slug}.localhost"]
        assert failed_assets == []

        # Phone width: the page reflows instead of scrolling sideways, and every section
        # stays reachable (the section strip scrolls on its own).
        page.set_viewport_size({"width": 375, "height": 740})
        page.reload()
        page.screenshot(path=tmp_path / "dashboard-phone.png", full_page=True)
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"page is {overflow}px wider than a 375px phone screen"
        expect(page.locator("main h1")).to_be_visible()
        team = page.get_by_role("navigation", name="Sections").get_by_role("link", name="Team")
        team.scroll_into_view_if_needed()
        expect(team).to_be_in_viewport()
        team.click()
        page.wait_for_url(f"http://{live.brand_host(new_slug)}/accounts/team/")
        expect(page.locator("main h1")).to_be_visible()

    assert (tmp_path / "dashboard.png").stat().st_size > 0
    brand = Brand.objects.get(slug=new_slug)
    assert (brand.name, brand.schema_name) == (BRAND_NAME, schema_name_for(new_slug))
    assert Domain.objects.get(tenant=brand).domain == f"{new_slug}.localhost"
    with schema_context(brand.schema_name):
        owner = User.objects.get()
        assert (owner.email, owner.full_name, owner.role) == (email, FULL_NAME, "owner")


def test_reserved_slug_and_weak_password_show_inline_errors_and_create_nothing(
    live: LiveServer,
):
    schemas_before, brands_before = schemas(), set(Brand.objects.values_list("slug"))

    with chromium_page() as page:
        page.goto(f"{live.url}/signup/")
        fill_signup(page, slug="www", email="erin@www.example", password="password")
        with page.expect_navigation() as navigation:
            page.get_by_role("button", name="Create workspace").click()

        assert navigation.value.status == 422
        assert urlsplit(page.url).netloc == f"localhost:{live.port}"
        expect(page.locator("#id_slug-errors li")).to_have_text(["This subdomain is reserved."])
        expect(page.locator("#id_password-errors li")).to_have_text(
            [
                "This password is too short. It must contain at least 10 characters.",
                "This password is too common.",
            ]
        )
        expect(page.locator(".errorlist")).to_have_count(2)
        # What the person typed survives the round trip, except the password.
        expect(page.get_by_label("Brand name")).to_have_value(BRAND_NAME)
        expect(page.get_by_label("Subdomain")).to_have_value("www")
        expect(page.get_by_label("Password")).to_have_value("")

    assert schemas() == schemas_before
    assert set(Brand.objects.values_list("slug")) == brands_before
