"""Brand isolation across every route: sessions, API keys, object ids, cache, files.

Routes are enumerated from the tenant URLconf and the OpenAPI schema, so a new page or
endpoint is covered the day it is added.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_tenants.utils import schema_context
from drf_spectacular.generators import SchemaGenerator

from accounts.models import ApiKey, Invitation, User
from accounts.roles import Role
from accounts.services import create_api_key, invite_user
from tests.conftest import brand_client, host_of, make_user

# Pages anyone may open without signing in; they must still show no brand data.
ANONYMOUS_PAGES = {
    "accounts:login",
    "accounts:logout",
    "accounts:handoff",
    "accounts:password_reset",
    "accounts:password_reset_done",
    "accounts:password_reset_confirm",
    "accounts:password_reset_complete",
    "accounts:accept_invitation",
    "api_schema",
    "api_docs",
}


def tenant_routes() -> list[tuple[str, str, list[str]]]:
    """(name, regex-ish path, converter names) for every named tenant URL."""
    out: list[tuple[str, str, list[str]]] = []

    def walk(patterns, prefix: str, namespace: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
                walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern) and p.name:
                route = prefix + str(p.pattern)
                out.append((namespace + p.name, route, list(p.pattern.converters)))

    walk(get_resolver("config.urls_tenant").url_patterns, "", "")
    return out


def fill(route: str, object_id: int) -> str:
    route = route.replace("^", "").replace("$", "").replace("\\Z", "")
    # Regex groups (DRF routers) first, then path converters.
    route = re.sub(r"\(\?P<(pk|id)>[^)]*\)", str(object_id), route)
    route = re.sub(r"\(\?P<format>[^)]*\)", "json", route)

    # Any other group: a value its own regex accepts (ids as digits, codes as text, or
    # one of a fixed list of words).
    def accepted(match: re.Match) -> str:
        pattern = match.group(1)
        words = pattern.replace("(?:", "").replace(")", "").split("|")
        for value in (str(object_id), "abc123", *words):
            if re.fullmatch(pattern, value):
                return value
        return "abc123"

    # A group's regex may hold one level of non-capturing group, e.g. (?:hero|tail).
    route = re.sub(r"\(\?P<\w+>((?:\(\?:[^()]*\)|[^()])*)\)", accepted, route)
    route = re.sub(r"<int:\w+>", str(object_id), route)
    route = re.sub(r"<(str:)?\w+>", "abc123", route)
    return "/" + route.replace("\\.", ".").replace("/?", "/")


@pytest.fixture
def two_brands(brand_a, brand_b, owner_a, owner_b):
    """Identical object graphs in both brands; B's ids do not exist in A."""
    graph = {}
    for brand, owner in ((brand_a, owner_a), (brand_b, owner_b)):
        if brand is brand_b:
            _jump_sequences(brand_b)  # B's ids must not exist in A
        member = make_user(brand, role=Role.BUYER, full_name=f"Member of {brand.name}")
        with schema_context(brand.schema_name):
            key = create_api_key(actor=owner, name=f"{brand.name} partner", scope="write")
            invite = invite_user(
                actor=owner,
                email=f"newbie@{brand.slug}.example",
                role=Role.VIEWER,
                accept_url_for=lambda t: t,
            ).invitation
        graph[brand.slug] = {"owner": owner, "member": member, "key": key, "invite": invite}
    with schema_context(brand_a.schema_name):
        for obj in (graph["beta"]["member"], graph["beta"]["key"].api_key):
            assert not type(obj).objects.filter(pk=obj.pk).exists()
    return graph


def _jump_sequences(brand) -> None:
    with connection.cursor() as cursor:
        for table in ("accounts_user", "accounts_apikey", "accounts_invitation"):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                "(SELECT last_value FROM pg_sequences WHERE schemaname = 'brand_alpha' "
                "AND sequencename = %s) + 1000)",
                [f'"{brand.schema_name}".{table}', f"{table}_id_seq"],
            )


def snapshot(brand) -> list:
    with schema_context(brand.schema_name):
        return [
            list(User.objects.order_by("pk").values_list("pk", "email", "role", "is_active")),
            list(ApiKey.objects.order_by("pk").values_list("pk", "revoked_at", "scope")),
            list(Invitation.objects.order_by("pk").values_list("pk", "revoked_at")),
        ]


def b_markers(graph) -> list[bytes]:
    beta = graph["beta"]
    return [
        b"owner@beta.example",
        beta["member"].full_name.encode(),
        beta["key"].api_key.prefix.encode(),
        b"newbie@beta.example",
    ]


def test_a_session_on_b_host_gets_no_data_on_any_route(brand_a, brand_b, two_brands):
    client = brand_client(brand_a, two_brands["alpha"]["owner"])
    cookie = client.cookies
    on_b = Client(HTTP_HOST=host_of(brand_b))
    on_b.cookies = cookie
    before = snapshot(brand_b)
    routes = tenant_routes()
    assert len(routes) >= 20

    for name, route, _ in routes:
        path = fill(route, two_brands["beta"]["member"].pk)
        for method in ("get", "post"):
            response = getattr(on_b, method)(path)
            body = response.content
            if name in ANONYMOUS_PAGES:
                assert response.status_code in (200, 302, 400, 404, 405, 422), (name, method)
            elif path.startswith("/api/"):
                assert response.status_code in (401, 403, 405), (name, method, response.status_code)
            else:
                # Either sent to sign in, or refused outright (CSRF on a foreign POST).
                assert response.status_code in (302, 403), (name, method, response.status_code)
                if response.status_code == 302:
                    assert response["Location"].startswith("/accounts/login/"), (name, method)
            for marker in b_markers(two_brands):
                assert marker not in body, (name, method, marker)
    assert snapshot(brand_b) == before


def test_a_api_key_on_b_host_is_401_everywhere(brand_a, brand_b, two_brands):
    on_b = Client(HTTP_HOST=host_of(brand_b))
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {two_brands['alpha']['key'].secret}"}
    before = snapshot(brand_b)

    for name, route, _ in tenant_routes():
        path = fill(route, two_brands["beta"]["member"].pk)
        if not path.startswith("/api/v1/"):
            continue
        for method in ("get", "post", "patch", "delete"):
            response = getattr(on_b, method)(path, {}, content_type="application/json", **auth)
            assert response.status_code == 401, (name, method, response.status_code)
    assert snapshot(brand_b) == before


def api_operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator(urlconf="config.urls_tenant").get_schema(request=None, public=True)
    return [
        (path, method)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "put", "patch", "delete", "post"}
    ]


@pytest.mark.parametrize("principal", ["session", "api_key"])
def test_b_object_ids_on_a_host_answer_404_like_missing_ids(
    brand_a, brand_b, two_brands, principal
):
    alpha = two_brands["alpha"]
    if principal == "session":
        client, auth = brand_client(brand_a, alpha["owner"]), {}
    else:
        client, auth = (
            brand_client(brand_a),
            {"HTTP_AUTHORIZATION": f"Api-Key {alpha['key'].secret}"},
        )
    foreign_ids = {
        "users": two_brands["beta"]["member"].pk,
        "api-keys": two_brands["beta"]["key"].api_key.pk,
    }
    before = snapshot(brand_b)
    checked = 0

    for path, method in api_operations():
        if "{id}" not in path:
            continue
        resource = path.split("/")[3]
        foreign = path.replace("{id}", str(foreign_ids.get(resource, 987654)))
        missing = path.replace("{id}", "987654")
        send = getattr(client, method)
        foreign_response = send(foreign, {}, content_type="application/json", **auth)
        missing_response = send(missing, {}, content_type="application/json", **auth)
        # Never 403 for a foreign id where a missing id gets 404: that would confirm it exists.
        assert foreign_response.status_code == missing_response.status_code, (path, method)
        if principal == "session":
            assert foreign_response.status_code == 404, (path, method)
        for marker in b_markers(two_brands):
            assert marker not in foreign_response.content
        checked += 1

    assert checked >= 5
    assert snapshot(brand_b) == before


def test_b_ids_in_a_pages_answer_404(brand_a, brand_b, two_brands):
    client = brand_client(brand_a, two_brands["alpha"]["owner"])
    beta = two_brands["beta"]
    before = snapshot(brand_b)

    assert (
        client.post(f"/accounts/team/{beta['member'].pk}/", {"action": "deactivate"}).status_code
        == 404
    )
    assert client.post(f"/accounts/api-keys/{beta['key'].api_key.pk}/revoke/").status_code == 404
    assert (
        client.post(f"/accounts/invitations/{beta['invite'].pk + 100}/revoke/").status_code == 404
    )
    assert snapshot(brand_b) == before


# Values for a route's text parameters that reach the object lookup (an unknown action
# may be refused before it). A parameter not listed here is tried with a made-up word.
TEXT_PARAM_VALUES: dict[tuple[str, str], list[str]] = {
    ("purchasing:po_action", "action"): ["submit", "cancel", "reschedule", "close", "resend"],
    ("sync:action", "action"): ["test", "pause", "resume", "sync"],
    ("replenishment:recommendation_action", "action"): [
        "create-po",
        "pull-forward",
        "slow-down",
        "dismiss",
    ],
    ("replenishment:transfer_action", "action"): ["accept", "dismiss"],
    ("shipping:action", "action"): [
        "rate",
        "choose",
        "buy",
        "void",
        "quote_freight",
        "book",
        "pod",
        "rating",
    ],
    ("shipping:freight_document", "kind"): ["bol", "pod"],
    ("shipping:exception_action", "action"): ["acknowledge", "resolve", "assign", "reship"],
}
ID_CONVERTERS = ("IntConverter", "UUIDConverter")


def object_routes() -> list[tuple[str, str, dict]]:
    """Every page route of the tenant URLconf that names an object by id, named or not
    (unnamed vendor endpoints such as channel webhooks included). The API is covered
    operation by operation in test_b_object_ids_on_a_host_answer_404_like_missing_ids."""
    out: list[tuple[str, str, dict]] = []

    def walk(patterns, prefix: str, namespace: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
                walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern):
                route = prefix + str(p.pattern)
                converters = p.pattern.converters
                has_id = any(type(c).__name__ in ID_CONVERTERS for c in converters.values())
                if has_id and not route.startswith("api/"):
                    out.append((namespace + (p.name or route), route, converters))

    walk(get_resolver("config.urls_tenant").url_patterns, "", "")
    return out


def object_paths(name: str, route: str, converters: dict, object_id: int) -> list[str]:
    """The route filled with `object_id` for every id (a fresh UUID for tokens), once per
    useful value of its text parameters."""
    paths = [route]
    for param, converter in converters.items():
        kind = type(converter).__name__
        if kind == "IntConverter":
            values = [str(object_id)]
        elif kind == "UUIDConverter":
            values = [str(uuid.uuid4())]
        else:
            values = TEXT_PARAM_VALUES.get((name, param), ["abc123"])
        token = re.compile(rf"<(?:\w+:)?{param}>")
        paths = [token.sub(value, p, count=1) for p in paths for value in values]
    return ["/" + p for p in paths]


# Objects the two_brands graph creates in both brands, with B's ids made absent from A.
FOREIGN_OBJECT_ROUTES = {
    "accounts:member": ("member", lambda obj: obj.pk),
    "accounts:revoke_api_key": ("key", lambda issued: issued.api_key.pk),
    "accounts:revoke_invitation": ("invite", lambda obj: obj.pk),
}
MISSING_ID = 987654


def test_every_object_page_answers_404_for_b_ids_on_a_host(brand_a, brand_b, two_brands):
    """A's owner (every permission) asks A's host for B's objects through every page that
    takes an id: the answer is 404, exactly as for an id that exists nowhere, never 403 or
    a page. For routes whose objects the graph has in B, B's real ids are used; elsewhere
    an id absent from A stands in for one (lookups only see A's schema either way)."""
    client = brand_client(brand_a, two_brands["alpha"]["owner"])
    before = snapshot(brand_b)
    routes = object_routes()
    assert len(routes) >= 10
    assert any(route.startswith("hooks/") for _, route, _ in routes)  # unnamed too
    checked = set()

    for name, route, converters in routes:
        foreign_id = MISSING_ID
        if name in FOREIGN_OBJECT_ROUTES:
            key, pick = FOREIGN_OBJECT_ROUTES[name]
            foreign_id = pick(two_brands["beta"][key])
        for foreign, missing in zip(
            object_paths(name, route, converters, foreign_id),
            object_paths(name, route, converters, MISSING_ID),
            strict=True,
        ):
            assert "<" not in foreign, foreign  # every parameter was filled
            for method in ("get", "post"):
                got = getattr(client, method)(foreign)
                # 405: the route takes the other method, decided before any lookup.
                assert got.status_code in (404, 405), (name, method, foreign, got.status_code)
                expected = getattr(client, method)(missing).status_code
                assert got.status_code == expected, (name, method, foreign)
                for marker in b_markers(two_brands):
                    assert marker not in got.content, (name, method, marker)
            checked.add(name)

    assert checked == {name for name, _, _ in routes}
    assert snapshot(brand_b) == before


def test_list_endpoints_never_include_other_brand_rows(brand_a, two_brands):
    client = brand_client(brand_a, two_brands["alpha"]["owner"])
    for path in ("/api/v1/users/", "/api/v1/api-keys/", "/api/v1/activity/"):
        body = client.get(path).content
        for marker in b_markers(two_brands):
            assert marker not in body, (path, marker)


def public_paths() -> list[str]:
    """Every parameterless route of the public URLconf (site, signup, staff admin)."""
    out: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif not p.pattern.converters and "(?P<" not in route:
                out.append("/" + route.replace("^", "").replace("$", ""))

    walk(get_resolver("config.urls_public").url_patterns, "")
    return out


def test_public_pages_expose_no_brand_data(two_brands, brand_a):
    public = Client(HTTP_HOST="localhost")
    public.cookies = brand_client(brand_a, two_brands["alpha"]["owner"]).cookies
    paths = public_paths()
    assert {"/", "/signup/", "/admin/", "/admin/login/"} <= set(paths)
    for path in paths:
        response = public.get(path)
        assert response.status_code in (200, 302, 405), path
        for slug in ("alpha", "beta"):
            for marker in (f"owner@{slug}.example".encode(), f"newbie@{slug}.example".encode()):
                assert marker not in response.content
    # A brand session is not a staff session on the public host.
    assert public.get("/admin/").status_code == 302
    assert public.get("/api/v1/users/").status_code == 404


def test_cache_keys_are_brand_scoped(brand_a, brand_b):
    with schema_context(brand_a.schema_name):
        cache.set("dashboard:counts", "alpha-value")
    with schema_context(brand_b.schema_name):
        assert cache.get("dashboard:counts") is None
        cache.set("dashboard:counts", "beta-value")
    with schema_context(brand_a.schema_name):
        assert cache.get("dashboard:counts") == "alpha-value"
        cache.delete("dashboard:counts")
    with schema_context(brand_b.schema_name):
        assert cache.get("dashboard:counts") == "beta-value"
        cache.delete("dashboard:counts")


def test_stored_files_are_brand_scoped(brand_a, brand_b, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    with schema_context(brand_a.schema_name):
        name = default_storage.save("labels/label-1.pdf", ContentFile(b"%PDF alpha"))
        path = default_storage.path(name)
        assert f"/{brand_a.schema_name}/" in path
    with schema_context(brand_b.schema_name):
        assert not default_storage.exists(name)
        default_storage.save("labels/label-1.pdf", ContentFile(b"%PDF beta"))
    with schema_context(brand_a.schema_name):
        assert default_storage.open(name).read() == b"%PDF alpha"
