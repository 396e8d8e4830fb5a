"""Web signup on the public host: the form, its errors, and the handoff to the brand host."""

import uuid

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import User
from tenants.models import Brand

PUBLIC_HOST = "localhost"


def schemas() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace")
        return {row[0] for row in cursor.fetchall()}


def form(**overrides) -> dict:
    data = {
        "brand_name": "Harbor Supply",
        "slug": "harbor",
        "full_name": "Hana Harbor",
        "email": "hana@harbor.example",
        "password": "tide-pools-and-anchors",
        "signup_token": str(uuid.uuid4()),
    }
    data.update(overrides)
    return data


def test_public_home_and_signup_form_render(db):
    client = Client(HTTP_HOST=PUBLIC_HOST)
    assert client.get("/").status_code == 200
    page = client.get("/signup/")
    assert page.status_code == 200
    assert b'name="signup_token"' in page.content


def test_signup_provisions_and_signs_the_owner_in_on_the_brand_host(db):
    response = Client(HTTP_HOST=PUBLIC_HOST).post("/signup/", form())

    assert response.status_code == 302
    assert response["Location"].startswith("http://harbor.localhost:8000/accounts/welcome/")
    brand = Brand.objects.get(slug="harbor")
    assert "brand_harbor" in schemas()

    brand_client = Client(HTTP_HOST="harbor.localhost")
    landing = brand_client.get(response["Location"].split(":8000", 1)[1], follow=True)
    assert landing.status_code == 200
    assert landing.redirect_chain[-1][0] == "/"
    assert b"Harbor Supply" in landing.content
    assert b"Hana Harbor" in landing.content
    with schema_context(brand.schema_name):
        assert User.objects.get().role == "owner"


def test_handoff_link_works_once(db):
    response = Client(HTTP_HOST=PUBLIC_HOST).post("/signup/", form())
    path = response["Location"].split(":8000", 1)[1]
    assert Client(HTTP_HOST="harbor.localhost").get(path).headers["Location"] == "/"

    second = Client(HTTP_HOST="harbor.localhost").get(path)
    assert second.headers["Location"] == "/accounts/login/"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"slug": "alpha"}, "slug", "already taken"),
        ({"slug": "www"}, "slug", "reserved"),
        ({"slug": "mail"}, "slug", "reserved"),
        ({"slug": "Harbor!"}, "slug", "lowercase letters"),
        ({"slug": "h" * 31}, "slug", "at most 30"),
        ({"password": "password1"}, "password", "too common"),
        ({"password": "12345678901"}, "password", "entirely numeric"),
        ({"password": "short"}, "password", "too short"),
        ({"slug": " Alpha "}, "slug", "already taken"),  # trimmed and folded: "alpha"
        ({"email": "not-an-email"}, "email", "valid email"),
        ({"email": "h" * 250 + "@harbor.example"}, "email", "at most 254"),
        ({"brand_name": ""}, "brand_name", "required"),
    ],
)
def test_bad_signup_input_shows_inline_errors_and_creates_nothing(db, overrides, field, message):
    before_schemas, before_brands = schemas(), Brand.objects.count()

    response = Client(HTTP_HOST=PUBLIC_HOST).post("/signup/", form(**overrides))

    assert response.status_code == 422
    errors = response.context["form"].errors[field]
    assert any(message in error for error in errors), errors
    assert message.encode() in response.content  # shown inline on the page
    assert schemas() == before_schemas
    assert Brand.objects.count() == before_brands
    assert mail.outbox == []


def test_double_submit_provisions_once_and_sends_the_second_to_sign_in(db):
    data = form()
    client = Client(HTTP_HOST=PUBLIC_HOST)
    before = schemas()
    first = client.post("/signup/", data)
    after_first = schemas()
    second = client.post("/signup/", data)

    assert first.status_code == second.status_code == 302
    assert second["Location"] == "http://harbor.localhost:8000/accounts/login/"
    assert Brand.objects.filter(slug="harbor").count() == 1
    # The second submit created no schema of its own (cloned or taken from the pool).
    assert after_first - before == {"brand_harbor"}
    assert schemas() == after_first
    with schema_context("brand_harbor"):
        assert User.objects.count() == 1


def test_same_form_with_another_slug_still_provisions_once(db):
    # A double submit after editing the subdomain: the token, not the slug, decides.
    data = form()
    client = Client(HTTP_HOST=PUBLIC_HOST)
    client.post("/signup/", data)
    before = schemas()

    second = client.post("/signup/", {**data, "slug": "harbor-two"})

    assert second["Location"] == "http://harbor.localhost:8000/accounts/login/"
    assert schemas() == before
    assert not Brand.objects.filter(slug="harbor-two").exists()


def test_leftover_schema_for_the_slug_is_reported_taken_and_left_alone(db):
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "brand_harbor"')
    before_schemas, before_brands = schemas(), Brand.objects.count()

    response = Client(HTTP_HOST=PUBLIC_HOST).post("/signup/", form())

    assert response.status_code == 422
    assert response.context["form"].errors["slug"] == ["This subdomain is already taken."]
    assert (schemas(), Brand.objects.count()) == (before_schemas, before_brands)


def test_provisioning_failure_shows_a_form_error_and_creates_nothing(db):
    # The database refuses the Domain row (a trigger raising, injected for this test):
    # the Brand row and the cloned schema written before it must go too.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION public.keel_test_refuse() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER keel_test_refuse BEFORE INSERT ON public.tenants_domain "
            "FOR EACH ROW EXECUTE FUNCTION public.keel_test_refuse()"
        )
    before_schemas, before_brands = schemas(), Brand.objects.count()

    response = Client(HTTP_HOST=PUBLIC_HOST).post("/signup/", form())

    assert response.status_code == 422
    assert response.context["form"].non_field_errors() == [
        "We could not create your workspace just now. Nothing was saved; try again."
    ]
    assert b"Nothing was saved" in response.content
    assert (schemas(), Brand.objects.count()) == (before_schemas, before_brands)
    assert "brand_harbor" not in schemas()


def test_unknown_host_is_404_not_the_public_site(db):
    assert Client(HTTP_HOST="nobody.localhost").get("/").status_code == 404
    assert Client(HTTP_HOST="nobody.localhost").get("/signup/").status_code == 404
