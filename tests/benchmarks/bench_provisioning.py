"""Provisioning benchmarks. Prints figures; asserts nothing.

    scripts/bench.sh [--smoke] [--runs N] [--brands N]      (make bench ARGS=...)

scripts/bench.sh starts throwaway PostgreSQL/Redis and runs `keel_bootstrap` first; this
script expects a bootstrapped database and must never be pointed at one that matters,
although it drops everything it creates.

(a) signup: the real signup view driven by django.test.Client, from POST to the 302 that
    sends the owner to the ready brand (template clone + rows + owner + handoff).
(a2) signup from the pool: the same POST when a pre-cloned schema is waiting (the refill
    that made it is not timed; workers do that between signups).
(b) migrate: the baseline without cloning, `migrate_new_schema` (CREATE SCHEMA + every
    tenant migration).
(b2) signup POST with plain migration: the same request as (a) with the schema step
    swapped for CREATE SCHEMA + migrate, the like-for-like baseline for (a) and (a2).
    Also shown: `clone_template_into` alone, the schema copy without the rest of signup,
    and the owner's password hash, a fixed cost of every signup whatever the schema path.
(c) `migrate_schemas --tenant` with nothing to apply, across many provisioned brands: the
    fixed cost every deploy pays per brand.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()
# With DEBUG off WhiteNoise warns that collectstatic never ran; nothing here serves assets.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from tenants.models import Brand  # noqa: E402
from tenants.services import (  # noqa: E402
    Owner,
    clone_template_into,
    migrate_new_schema,
    provision_brand,
    refill_pool,
)

PASSWORD = "correct-horse-battery-staple"
SIGNUP_PREFIX = "bench-signup-"
FLEET_PREFIX = "bench-fleet-"
CLONE_SCHEMA_PREFIX = "bench_clone_"
MIGRATE_SCHEMA_PREFIX = "bench_migrate_"
CLONE_TARGET_S = 1.5
SPEEDUP_TARGET = 5.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI size: few runs, 5 brands.")
    parser.add_argument("--runs", type=int, help="Runs of (a) and (b) (default 10, smoke 3).")
    parser.add_argument("--brands", type=int, help="Brands for (c) (default 50, smoke 5).")
    parser.add_argument("--out", type=Path, help="JSON result file (default .data/bench/…).")
    args = parser.parse_args(argv)
    args.runs = args.runs or (3 if args.smoke else 10)
    args.brands = args.brands or (5 if args.smoke else 50)
    return args


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def drop_schema(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def schemas_with_prefix(prefix: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", [prefix])
        return [row[0] for row in cursor.fetchall()]


def clean_up() -> None:
    connection.set_schema_to_public()
    for prefix in (SIGNUP_PREFIX, FLEET_PREFIX):
        for brand in Brand.objects.filter(slug__startswith=prefix):
            brand.delete(force_drop=True)
    for brand in Brand.objects.filter(kind="pool"):
        brand.delete(force_drop=True)
    for prefix in (CLONE_SCHEMA_PREFIX, MIGRATE_SCHEMA_PREFIX):
        for name in schemas_with_prefix(prefix):
            drop_schema(name)


def signup(client: Client, slug: str) -> None:
    response = client.post(
        "/signup/",
        {
            "brand_name": f"Bench {slug}",
            "slug": slug,
            "full_name": "Bench Owner",
            "email": f"owner@{slug}.example",
            "password": PASSWORD,
            # The view treats a repeated token as a double submit: each POST needs its own.
            "signup_token": str(uuid.uuid4()),
        },
    )
    location = response.headers.get("Location", "")
    if response.status_code != 302 or "/accounts/welcome/" not in location:
        raise RuntimeError(f"signup {slug!r} failed: {response.status_code} {location!r}")


def _migrate_instead_of_clone(schema_name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema_name}"')
    call_command(
        "migrate_schemas", schema_name=schema_name, tenant=True, interactive=False, verbosity=0
    )


def signup_with_migration(client: Client, slug: str) -> None:
    import tenants.services as provisioning

    # The counterfactual design, measured through the same view: only the schema step differs.
    original = provisioning.clone_template_into
    provisioning.clone_template_into = _migrate_instead_of_clone
    try:
        signup(client, slug)
    finally:
        provisioning.clone_template_into = original


def bench_signup_vs_migrate(runs: int) -> dict[str, list[float]]:
    client = Client(HTTP_HOST="localhost")
    # One unmeasured round: first-request imports, URL resolution, template loading and
    # the migration graph's first build are one-off process costs, not per-brand costs.
    signup(client, f"{SIGNUP_PREFIX}warmup")
    clone_template_into(f"{CLONE_SCHEMA_PREFIX}warmup")
    migrate_new_schema(f"{MIGRATE_SCHEMA_PREFIX}warmup")

    samples: dict[str, list[float]] = {
        "signup": [],
        "signup_pool": [],
        "clone_only": [],
        "migrate": [],
        "signup_migrate": [],
        "password_hash": [],
    }
    # Interleaved rather than one series after the other: both paths get slower as the
    # catalog grows, and interleaving gives them the same number of schemas around them.
    for i in range(runs):
        samples["signup"].append(timed(lambda i=i: signup(client, f"{SIGNUP_PREFIX}{i:02d}")))
        refill_pool(1)
        samples["signup_pool"].append(
            timed(lambda i=i: signup(client, f"{SIGNUP_PREFIX}pool-{i:02d}"))
        )
        samples["clone_only"].append(
            timed(lambda i=i: clone_template_into(f"{CLONE_SCHEMA_PREFIX}{i:02d}"))
        )
        samples["migrate"].append(
            timed(lambda i=i: migrate_new_schema(f"{MIGRATE_SCHEMA_PREFIX}{i:02d}"))
        )
        samples["signup_migrate"].append(
            timed(lambda i=i: signup_with_migration(client, f"{SIGNUP_PREFIX}mig-{i:02d}"))
        )
        samples["password_hash"].append(timed(lambda: make_password(PASSWORD)))
        connection.set_schema_to_public()
    return samples


def bench_migrate_schemas(brands: int) -> dict[str, float | int]:
    started = time.perf_counter()
    for i in range(brands):
        slug = f"{FLEET_PREFIX}{i:03d}"
        provision_brand(
            name=f"Fleet {i:03d}",
            slug=slug,
            owner=Owner(f"owner@{slug}.example", "Fleet", PASSWORD),
        )
    provision_s = time.perf_counter() - started
    # Every tenant row except public: the brands above plus the template (and nothing else,
    # since bench_signup_vs_migrate's brands are dropped before this runs).
    schemas = Brand.objects.exclude(schema_name="public").count()
    total = timed(
        lambda: call_command("migrate_schemas", tenant=True, interactive=False, verbosity=0)
    )
    connection.set_schema_to_public()
    return {
        "brands": brands,
        "schemas_migrated": schemas,
        "provision_total_s": provision_s,
        "migrate_schemas_total_s": total,
        "migrate_schemas_per_brand_s": total / brands,
        "migrate_schemas_per_schema_s": total / schemas,
    }


def server_facts() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW fsync")
        fsync = cursor.fetchone()[0]
    return {"postgresql": version, "fsync": fsync, "python": sys.version.split()[0]}


def report(result: dict) -> str:
    a, b = result["signup_s"], result["migrate_s"]
    c = result["migrate_schemas"]
    rows = [
        ("(a) signup POST -> ready brand (clone), median", f"{a['median']:.3f} s"),
        ("    min / max", f"{a['min']:.3f} / {a['max']:.3f} s"),
        (
            "    of which owner password hash, median",
            f"{result['password_hash_s']['median']:.3f} s",
        ),
        ("    clone_template_into alone, median", f"{result['clone_only_s']['median']:.3f} s"),
        (
            "(a2) signup POST -> ready brand (from pool), median",
            f"{result['signup_pool_s']['median']:.3f} s",
        ),
        ("(b) migrate_new_schema (baseline), median", f"{b['median']:.3f} s"),
        ("    min / max", f"{b['min']:.3f} / {b['max']:.3f} s"),
        (
            "(b2) signup POST -> ready brand (plain migration), median",
            f"{result['signup_migrate_s']['median']:.3f} s",
        ),
        (
            "ratio signup-migrate / signup-with-clone",
            f"{result['ratio']:.2f}x  (target >= {SPEEDUP_TARGET:.0f}x, "
            f"signup < {CLONE_TARGET_S} s)",
        ),
        ("ratio signup-migrate / signup-from-pool", f"{result['ratio_pool']:.2f}x"),
        ("ratio migrate / clone_template_into alone", f"{result['ratio_schema_only']:.2f}x"),
        (
            f"(c) migrate_schemas, {c['brands']} brands ({c['schemas_migrated']} schemas)",
            f"{c['migrate_schemas_total_s']:.2f} s total",
        ),
        ("    per brand", f"{c['migrate_schemas_per_brand_s']:.3f} s"),
        (
            f"    provisioning the {c['brands']} brands (provision_brand)",
            f"{c['provision_total_s']:.2f} s total",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    facts = result["environment"]
    lines = [
        f"Provisioning benchmark ({result['mode']}, {result['runs']} runs; PostgreSQL "
        f"{facts['postgresql']}, fsync={facts['fsync']})",
        "-" * (width + 24),
        *(f"{label.ljust(width)}  {value}" for label, value in rows),
    ]
    return "\n".join(lines)


def summary(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    clean_up()
    try:
        samples = bench_signup_vs_migrate(args.runs)
        # (c) counts tenants, so the brands and schemas of (a)/(b) go first.
        clean_up()
        fleet = bench_migrate_schemas(args.brands)
    finally:
        clean_up()

    result = {
        "benchmark": "provisioning",
        "mode": "smoke" if args.smoke else "full",
        "runs": args.runs,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": server_facts(),
        "signup_s": summary(samples["signup"]),
        "signup_pool_s": summary(samples["signup_pool"]),
        "clone_only_s": summary(samples["clone_only"]),
        "migrate_s": summary(samples["migrate"]),
        "password_hash_s": summary(samples["password_hash"]),
        "signup_migrate_s": summary(samples["signup_migrate"]),
        "migrate_schemas": fleet,
    }
    baseline = result["signup_migrate_s"]["median"]
    result["ratio"] = baseline / result["signup_s"]["median"]
    result["ratio_pool"] = baseline / result["signup_pool_s"]["median"]
    result["ratio_schema_only"] = result["migrate_s"]["median"] / result["clone_only_s"]["median"]
    print(report(result))

    out = (
        args.out or ROOT / ".data" / "bench" / f"provisioning-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
