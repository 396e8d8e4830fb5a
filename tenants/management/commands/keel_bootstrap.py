"""Bring a database to a runnable state: migrations, public tenant, template schema.

Idempotent; `make run` calls it on every start. `--demo` also provisions the `demo`
brand (sandbox connectors join it as they land) and prints its owner login.
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django_tenants.utils import schema_context

from sync.demo import connect_demo
from tenants.models import Brand
from tenants.services import (
    Owner,
    brand_url,
    ensure_public_tenant,
    ensure_template_schema,
    provision_brand,
    refill_pool,
)

DEMO_EMAIL = "owner@demo.example"
DEMO_PASSWORD = "keel-demo-password"


class Command(BaseCommand):
    help = "Migrate, ensure the public tenant and template schema, optionally a demo brand."

    def add_arguments(self, parser):
        parser.add_argument("--demo", action="store_true", help="Also create the demo brand.")
        parser.add_argument("--skip-migrate", action="store_true")
        parser.add_argument(
            "--pool", type=int, default=None, help="Pre-cloned schemas to keep (default: setting)"
        )

    def handle(
        self, *args, demo: bool, skip_migrate: bool, pool: int | None, verbosity: int, **options
    ):
        if not skip_migrate:
            call_command("migrate_schemas", shared=True, interactive=False, verbosity=verbosity)
        ensure_public_tenant()
        ensure_template_schema(verbosity=verbosity)
        if not skip_migrate:
            # Brands (and the template) created before this deploy catch up here.
            call_command("migrate_schemas", tenant=True, interactive=False, verbosity=verbosity)
        made = refill_pool(pool)
        if made and verbosity:
            self.stdout.write(f"Pre-cloned {made} schema(s) for fast signups.")
        if demo:
            brand = Brand.objects.filter(slug="demo").first()
            if brand is None:
                brand = provision_brand(
                    name="Demo Brand",
                    slug="demo",
                    owner=Owner(DEMO_EMAIL, "Demo Owner", DEMO_PASSWORD),
                )
                self.stdout.write("Created the demo brand.")
            # Sandbox channel, 3PL and carrier, so orders flow with no external account.
            with schema_context(brand.schema_name):
                for line in connect_demo():
                    self.stdout.write(line)
            self.stdout.write(
                f"Demo brand: {brand_url(brand)}  login {DEMO_EMAIL} / {DEMO_PASSWORD}"
            )
