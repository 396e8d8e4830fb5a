"""Inviting, joining, changing roles, deactivating, signing in and resetting passwords."""

import re

from django.core import mail
from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import Invitation, User
from accounts.roles import Role, role_has
from audit.models import ActivityEntry
from config.navigation import SECTIONS
from tests.conftest import PASSWORD, brand_client, host_of, make_user


def link_in(message) -> str:
    return re.search(r"https?://\S+", message.body).group(0)


def test_invite_accept_and_land_signed_in(brand_a, owner_a, django_capture_on_commit_callbacks):
    client = brand_client(brand_a, owner_a)

    # The email goes out only once the invitation is committed.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/accounts/team/invite/", {"email": "Pat@Example.com", "role": "buyer"}
        )

    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["pat@example.com"]
    link = link_in(mail.outbox[0])
    assert link.startswith("http://alpha.localhost/accounts/invitations/accept/")
    path = link.split("alpha.localhost", 1)[1]

    newcomer = Client(HTTP_HOST=host_of(brand_a))
    assert b"Join Alpha" in newcomer.get(path).content
    weak = newcomer.post(path, {"full_name": "Pat Lee", "password": "password"})
    assert weak.status_code == 422
    assert b"too common" in weak.content

    joined = newcomer.post(path, {"full_name": "Pat Lee", "password": PASSWORD}, follow=True)

    assert joined.redirect_chain[-1][0] == "/"
    assert b"Pat Lee" in joined.content
    with schema_context(brand_a.schema_name):
        pat = User.objects.get(email="pat@example.com")
        assert pat.role == Role.BUYER
        assert Invitation.objects.get().accepted_user == pat
        assert list(ActivityEntry.objects.order_by("id").values_list("action", "actor_label"))[
            -2:
        ] == [("user.invited", "owner@alpha.example"), ("user.joined", "pat@example.com")]
    # The link works once.
    assert Client(HTTP_HOST=host_of(brand_a)).get(path).status_code == 404


def test_htmx_invite_returns_the_fragment_with_inline_errors(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    response = client.post(
        "/accounts/team/invite/", {"email": "nope", "role": "viewer"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section class="card" id="invite">')
    assert "Enter a valid email address." in html
    assert "<html" not in html
    assert mail.outbox == []


def test_inviting_someone_already_on_the_team_is_a_field_error(brand_a, owner_a):
    response = brand_client(brand_a, owner_a).post(
        "/accounts/team/invite/", {"email": "owner@alpha.example", "role": "viewer"}
    )
    assert response.status_code == 422
    assert response.context["invite_form"].errors["email"] == [
        "This person is already on the team."
    ]


def test_reinviting_replaces_the_open_invitation(
    brand_a, owner_a, django_capture_on_commit_callbacks
):
    client = brand_client(brand_a, owner_a)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/team/invite/", {"email": "sam@example.com", "role": "viewer"})
        client.post("/accounts/team/invite/", {"email": "sam@example.com", "role": "admin"})
    with schema_context(brand_a.schema_name):
        assert list(Invitation.objects.pending().values_list("role", flat=True)) == ["admin"]
    old_link = link_in(mail.outbox[0]).split("alpha.localhost", 1)[1]
    assert Client(HTTP_HOST=host_of(brand_a)).get(old_link).status_code == 404


def test_change_role_via_htmx_returns_the_updated_row(brand_a, owner_a):
    target = make_user(brand_a, role=Role.VIEWER, full_name="Val Viewer")
    response = brand_client(brand_a, owner_a).post(
        f"/accounts/team/{target.pk}/",
        {"action": "role", "role": "warehouse"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert html.lstrip().startswith(f'<tr id="member-{target.pk}">')
    assert "Warehouse" in html
    with schema_context(brand_a.schema_name):
        target.refresh_from_db()
        assert target.role == Role.WAREHOUSE
        entry = ActivityEntry.objects.get(action="user.role_changed")
        assert entry.changes == {"role": ["viewer", "warehouse"]}


def test_deactivation_ends_the_person_s_sessions_immediately(brand_a, owner_a):
    target = make_user(brand_a, role=Role.OPS_MANAGER)
    their_client = brand_client(brand_a, target)
    assert their_client.get("/").status_code == 200

    brand_client(brand_a, owner_a).post(f"/accounts/team/{target.pk}/", {"action": "deactivate"})

    assert their_client.get("/").status_code == 302
    login = Client(HTTP_HOST=host_of(brand_a)).post(
        "/accounts/login/", {"username": target.email, "password": PASSWORD}
    )
    assert login.status_code == 200  # the form again, not a redirect into the app


def test_login_and_logout(brand_a, owner_a):
    client = Client(HTTP_HOST=host_of(brand_a))
    assert client.get("/").headers["Location"] == "/accounts/login/?next=/"
    bad = client.post("/accounts/login/", {"username": "owner@alpha.example", "password": "x"})
    assert b"Please enter a correct" in bad.content
    ok = client.post("/accounts/login/", {"username": "OWNER@alpha.example", "password": PASSWORD})
    assert ok.headers["Location"] == "/"
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_password_reset_by_email(brand_a, owner_a):
    client = Client(HTTP_HOST=host_of(brand_a))
    client.post("/accounts/password-reset/", {"email": "owner@alpha.example"})
    assert len(mail.outbox) == 1
    link = link_in(mail.outbox[0]).split("alpha.localhost", 1)[1]

    form_page = client.get(link, follow=True)
    set_path = form_page.redirect_chain[-1][0]
    done = client.post(
        set_path,
        {"new_password1": "a-brand-new-passphrase", "new_password2": "a-brand-new-passphrase"},
    )
    assert done.headers["Location"] == "/accounts/password-reset/done/"
    with schema_context(brand_a.schema_name):
        owner_a.refresh_from_db()
        assert owner_a.check_password("a-brand-new-passphrase")


def test_password_reset_for_another_brand_s_email_sends_nothing(brand_a):
    Client(HTTP_HOST=host_of(brand_a)).post(
        "/accounts/password-reset/", {"email": "owner@beta.example"}
    )
    assert mail.outbox == []


def test_dashboard_shows_real_counts(brand_a, owner_a):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.services import create_api_key, invite_user, revoke_api_key

    make_user(brand_a, role=Role.BUYER)
    make_user(brand_a, role=Role.VIEWER, is_active=False)
    with schema_context(brand_a.schema_name):
        create_api_key(actor=owner_a, name="kept", scope="read")
        revoke_api_key(
            actor=owner_a, api_key=create_api_key(actor=owner_a, name="gone", scope="read").api_key
        )
        invite_user(actor=owner_a, email="soon@example.com", role="viewer", accept_url_for=str)
        # An entry older than a week is not "recent activity".
        old = ActivityEntry.objects.order_by("id").first()
        ActivityEntry.objects.filter(pk=old.pk).update(
            created_at=timezone.now() - timedelta(days=8)
        )
        recent = ActivityEntry.objects.filter(
            created_at__gte=timezone.now() - timedelta(days=7)
        ).count()
    response = brand_client(brand_a, owner_a).get("/")
    tiles = {t["label"]: t["value"] for t in response.context["tiles"]}
    assert tiles["Active teammates"] == 2
    assert tiles["Active API keys"] == 1
    assert tiles["Pending invitations"] == 1
    assert recent == 4  # two keys created, one revoked, one invitation
    assert tiles["Activity, last 7 days"] == recent
    labels = [s["label"] for s in response.context["nav_sections"]]
    assert labels == [s.label for s in SECTIONS]  # an owner sees every section


def test_viewer_navigation_hides_what_they_cannot_open(brand_a):
    viewer = make_user(brand_a, role=Role.VIEWER)
    response = brand_client(brand_a, viewer).get("/")
    labels = [s["label"] for s in response.context["nav_sections"]]
    assert labels == [s.label for s in SECTIONS if role_has(Role.VIEWER, s.permission)]
    assert {"Team", "Settings", "Dashboard"} <= set(labels)
    assert not {"API keys", "Activity", "Workers", "Imports"} & set(labels)


def test_expired_or_revoked_invitation_cannot_be_accepted(brand_a, owner_a):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.services import invite_user

    with schema_context(brand_a.schema_name):
        expired = invite_user(
            actor=owner_a, email="late@example.com", role=Role.VIEWER, accept_url_for=str
        )
        Invitation.objects.filter(pk=expired.invitation.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        revoked = invite_user(
            actor=owner_a, email="gone@example.com", role=Role.VIEWER, accept_url_for=str
        )
    owner_client = brand_client(brand_a, owner_a)
    revoke = owner_client.post(f"/accounts/invitations/{revoked.invitation.pk}/revoke/")
    assert revoke.status_code == 302
    newcomer = Client(HTTP_HOST=host_of(brand_a))

    for issued in (expired, revoked):
        path = f"/accounts/invitations/accept/{issued.token}/"
        page = newcomer.get(path)
        assert page.status_code == 404
        assert b"Invitation not valid" in page.content
        joined = newcomer.post(path, {"full_name": "Too Late", "password": PASSWORD})
        assert joined.status_code == 404
    with schema_context(brand_a.schema_name):
        assert not User.objects.filter(email__in=["late@example.com", "gone@example.com"]).exists()


def test_invitation_through_the_api_can_be_accepted_in_the_browser(
    brand_a, owner_a, django_capture_on_commit_callbacks
):
    client = brand_client(brand_a, owner_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/invitations/",
            {"email": "api@example.com", "role": "warehouse"},
            content_type="application/json",
        )
    assert response.status_code == 201
    path = link_in(mail.outbox[0]).split("alpha.localhost", 1)[1]

    joined = Client(HTTP_HOST=host_of(brand_a)).post(
        path, {"full_name": "Api Person", "password": PASSWORD}
    )

    assert joined.headers["Location"] == "/"
    with schema_context(brand_a.schema_name):
        assert User.objects.get(email="api@example.com").role == Role.WAREHOUSE


def test_deactivated_person_cannot_use_the_api_with_their_session_and_can_be_reactivated(
    brand_a, owner_a
):
    target = make_user(brand_a, role=Role.ADMIN)
    theirs = brand_client(brand_a, target)
    assert theirs.get("/api/v1/users/").status_code == 200
    owner = brand_client(brand_a, owner_a)

    owner.patch(
        f"/api/v1/users/{target.pk}/", {"is_active": False}, content_type="application/json"
    )

    assert theirs.get("/api/v1/users/").status_code in (401, 403)
    assert theirs.get("/accounts/team/").status_code == 302
    back = owner.post(f"/accounts/team/{target.pk}/", {"action": "reactivate"})
    assert back.status_code == 302
    credentials = {"username": target.email, "password": PASSWORD}
    relogin = Client(HTTP_HOST=host_of(brand_a)).post("/accounts/login/", credentials)
    assert relogin.headers["Location"] == "/"
    with schema_context(brand_a.schema_name):
        actions = list(
            ActivityEntry.objects.filter(object_id=str(target.pk))
            .order_by("id")
            .values_list("action", flat=True)
        )
    assert actions[-2:] == ["user.deactivated", "user.reactivated"]


def test_an_address_longer_than_the_column_is_a_field_error_everywhere(brand_a, owner_a):
    import pytest
    from django.core.exceptions import ValidationError

    from accounts.services import invite_user

    email = "h" * 250 + "@x.example"
    client = brand_client(brand_a, owner_a)

    page = client.post("/accounts/team/invite/", {"email": email, "role": "viewer"})
    api = client.post(
        "/api/v1/invitations/", {"email": email, "role": "viewer"}, content_type="application/json"
    )

    assert page.status_code == 422
    assert "email" in page.context["invite_form"].errors
    assert api.status_code == 400
    assert api.json()["error"]["fields"]["email"][0]["code"] == "max_length"
    with schema_context(brand_a.schema_name):
        with pytest.raises(ValidationError) as excinfo:
            invite_user(actor=owner_a, email=email, role=Role.VIEWER, accept_url_for=str)
        assert "email" in excinfo.value.error_dict
        assert Invitation.objects.count() == 0
    assert mail.outbox == []
