"""Host, cache and media isolation cases tests/test_isolation.py does not cover
(RELIABILITY 20 c/d/e; a and b — a session cookie or an API key of A on B's host — are
covered route by route there).

(c) a `cache_page` view rendered on A's host is never served on B's; cached data keyed by
    ids that exist in both brands (import progress) stays per brand; the Redis keys carry
    the brand's schema.
(d) a file stored for A lives under A's prefix; its URL (and any path guess) answers 404 on
    B's host, and B's storage cannot reach it by path traversal.
(e) a host no brand owns — unknown slug, a template or pool schema's name, a brand's
    schema name instead of its slug — answers 404, never the public site; a host outside
    ALLOWED_HOSTS is 404 too.
"""

from __future__ import annotations

import itertools

import pytest
from django.core.cache import cache
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import HttpResponse
from django.test import Client
from django.urls import include, path
from django.views.decorators.cache import cache_page
from django_tenants.utils import schema_context

from catalog import imports
from catalog.models import ImportJob, ImportStatus
from tenants.models import Brand, BrandKind, Domain
from tests.conftest import brand_client

_renders = itertools.count(1)


@cache_page(300)
def cached_brand_page(request):
    # The render number shows whether a response came from the cache or was rendered anew.
    return HttpResponse(f"brand={request.tenant.slug} render={next(_renders)}")


# Keel's tenant URLconf plus one cached page (ROOT_URLCONF is swapped to this module).
urlpatterns = [
    path("cached-probe/", cached_brand_page),
    path("", include("config.urls_tenant")),
]


@pytest.fixture
def probe_urls(settings):
    settings.ROOT_URLCONF = __name__
    cache.clear()
    yield
    cache.clear()


def test_cached_view_rendered_for_a_is_not_served_to_b(brand_a, brand_b, probe_urls):
    alpha, beta = brand_client(brand_a), brand_client(brand_b)

    first = alpha.get("/cached-probe/").content
    again = alpha.get("/cached-probe/").content
    on_b = beta.get("/cached-probe/").content

    assert first.startswith(b"brand=alpha")
    assert again == first  # alpha's second request came from the cache
    assert on_b.startswith(b"brand=beta")
    assert b"alpha" not in on_b
    assert beta.get("/cached-probe/").content == on_b  # beta has its own cached copy
    keys = [key.decode() for key in cache._cache.get_client().keys("*cache_page*")]
    assert keys and all(key.split(":")[0] in ("brand_alpha", "brand_beta") for key in keys)
    assert {key.split(":")[0] for key in keys} == {"brand_alpha", "brand_beta"}


def test_cached_data_keyed_by_an_id_both_brands_have_stays_per_brand(brand_a, brand_b):
    cache.clear()
    job_id = 1  # the first import job of every brand has this id
    with schema_context(brand_a.schema_name):
        imports._reporter(job_id)("Writing SKUs", 40, 50)
        alpha_job = ImportJob(pk=job_id, status=ImportStatus.APPLYING, total_rows=50)
        assert imports.job_progress(alpha_job)["phase"] == "Writing SKUs"
    with schema_context(brand_b.schema_name):
        beta_job = ImportJob(pk=job_id, status=ImportStatus.APPLYING, total_rows=7)
        progress = imports.job_progress(beta_job)
    assert progress["phase"] == "Waiting for a worker"
    assert (progress["done"], progress["total"]) == (0, 7)
    cache.clear()


def test_file_stored_for_a_is_unreachable_from_b(brand_a, brand_b, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    secret = b"%PDF alpha-only label"
    with schema_context(brand_a.schema_name):
        name = default_storage.save("labels/label-1.pdf", ContentFile(secret))
        url = default_storage.url(name)
        stored_at = default_storage.path(name)
    assert f"/{brand_a.schema_name}/" in stored_at
    assert f"/{brand_a.schema_name}/" in url
    with open(stored_at, "rb") as handle:
        assert handle.read() == secret

    beta = brand_client(brand_b)
    for guess in (url, f"/media/{name}", f"/media/{brand_a.schema_name}/{name}"):
        response = beta.get(guess)
        assert response.status_code == 404, guess
        assert secret not in response.content
    with schema_context(brand_b.schema_name):
        assert not default_storage.exists(name)
        with pytest.raises(SuspiciousFileOperation):
            default_storage.open(f"../{brand_a.schema_name}/{name}")


@pytest.mark.parametrize(
    "host",
    [
        "gamma.localhost",  # no such brand
        "brand_alpha.localhost",  # the schema name is not a host
        "keel_template.localhost",
        "alpha.localhost.localhost",
    ],
)
def test_host_no_brand_owns_is_404_not_the_public_site(brand_a, host):
    public_home = Client(HTTP_HOST="localhost").get("/")
    response = Client(HTTP_HOST=host).get("/")

    assert response.status_code == 404
    assert response.content != public_home.content
    for path_ in ("/signup/", "/api/v1/users/", "/accounts/login/"):
        assert Client(HTTP_HOST=host).get(path_).status_code == 404, path_


def test_template_and_pool_schemas_have_no_host(brand_a):
    hidden = Brand.objects.filter(kind__in=[BrandKind.TEMPLATE, BrandKind.POOL])
    assert hidden.filter(kind=BrandKind.TEMPLATE).exists()
    assert not Domain.objects.filter(tenant__in=hidden).exists()
    for brand in hidden:
        response = Client(HTTP_HOST=f"{brand.schema_name}.localhost").get("/")
        assert response.status_code == 404


def test_host_outside_allowed_hosts_is_404(brand_a):
    # django-tenants answers a disallowed host with 404 before any view runs.
    for host in ("alpha.evil.example", "evil.example"):
        response = Client(HTTP_HOST=host).get("/accounts/login/")
        assert response.status_code == 404, host
        assert b"csrfmiddlewaretoken" not in response.content
