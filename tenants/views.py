"""Public site: landing page and brand signup."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django_tenants.utils import schema_context

from accounts.models import User
from accounts.services import create_handoff
from tenants.forms import SignupForm
from tenants.models import Brand
from tenants.services import Owner, ProvisioningError, brand_url, provision_brand


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/home.html")


def signup(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        form = SignupForm(base_domain=settings.BASE_DOMAIN)
        return render(request, "tenants/signup.html", {"form": form})

    form = SignupForm(request.POST, base_domain=settings.BASE_DOMAIN)
    token = request.POST.get("signup_token")
    # A second submit of the same form (double click, reload) finds the brand the first
    # one created instead of failing on "subdomain taken".
    existing = _brand_for_token(token)
    if existing is not None:
        return redirect(brand_url(existing, "/accounts/login/"))
    if form.is_valid():
        data = form.cleaned_data
        try:
            brand = provision_brand(
                name=data["brand_name"],
                slug=data["slug"],
                owner=Owner(data["email"], data["full_name"], data["password"]),
                signup_token=data["signup_token"],
            )
        except ValidationError as exc:
            existing = _brand_for_token(token)
            if existing is not None:
                return redirect(brand_url(existing, "/accounts/login/"))
            form.add_error("slug", exc)
        except ProvisioningError:
            form.add_error(
                None, "We could not create your workspace just now. Nothing was saved; try again."
            )
        else:
            with schema_context(brand.schema_name):
                owner = User.objects.get(email__iexact=data["email"])
                handoff = create_handoff(owner)
            connection.set_schema_to_public()
            return redirect(brand_url(brand, f"/accounts/welcome/{handoff}/"))
    return render(request, "tenants/signup.html", {"form": form}, status=422)


def _brand_for_token(token: str | None) -> Brand | None:
    if not token:
        return None
    try:
        return Brand.objects.filter(signup_token=token).first()
    except ValidationError:
        return None
