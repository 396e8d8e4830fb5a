"""Brand provisioning: validate a slug, clone the template schema, create domain and owner.

Provisioning never runs migrations in the request. The template schema (a Brand row of
kind "template") is migrated by `migrate_schemas` like any tenant; a new brand is a copy
of it made by `clone_template_into`, rows included, so its `django_migrations` rows come
along and the fake-migrate pass django-tenants would run afterwards is unnecessary.

Cloning costs a few hundred milliseconds and grows with the number of tables, so a small
pool of clones is made ahead of time (Brand rows of kind "pool", topped up by
`refill_pool`); signup takes one with SKIP LOCKED and renames its schema (~1 ms). When the
pool is empty, signup clones on the spot.

Everything happens in one transaction. PostgreSQL DDL is transactional, so a failure
anywhere (slug race, clone error, owner creation) rolls back the schema, the Brand and
Domain rows and the owner together.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils.timezone import now
from django_tenants.utils import schema_context, schema_exists

from audit.services import SYSTEM, record
from tenants.models import Brand, BrandKind, Domain

SLUG_MIN, SLUG_MAX = 3, 30
SLUG_RE = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
# Names a brand may not take: our own hosts, and words that would confuse customers.
RESERVED_SLUGS = frozenset(
    [
        "www",
        "api",
        "admin",
        "app",
        "apps",
        "public",
        "static",
        "media",
        "mail",
        "email",
        "smtp",
        "imap",
        "pop",
        "ftp",
        "ssh",
        "help",
        "support",
        "status",
        "docs",
        "blog",
        "about",
        "pricing",
        "signup",
        "login",
        "logout",
        "register",
        "account",
        "accounts",
        "auth",
        "oauth",
        "sso",
        "billing",
        "dashboard",
        "console",
        "root",
        "system",
        "keel",
        "template",
        "test",
        "staging",
        "dev",
        "demo-internal",
        "internal",
        "cdn",
        "assets",
        "files",
        "webhook",
        "webhooks",
        "hooks",
        "ns",
        "ns1",
        "ns2",
        "mx",
    ]
)
PUBLIC_SCHEMA = "public"


class ProvisioningError(Exception):
    """Provisioning failed; nothing was created."""


@dataclass(frozen=True)
class Owner:
    email: str
    full_name: str
    password: str


def validate_slug(slug: str) -> None:
    """Raise ValidationError (with a code) unless `slug` may name a new brand."""
    if len(slug) < SLUG_MIN:
        raise ValidationError(
            "Use at least %(n)d characters.", code="too_short", params={"n": SLUG_MIN}
        )
    if len(slug) > SLUG_MAX:
        raise ValidationError(
            "Use at most %(n)d characters.", code="too_long", params={"n": SLUG_MAX}
        )
    if not SLUG_RE.match(slug):
        raise ValidationError(
            "Use lowercase letters, digits and single hyphens; start with a letter and "
            "end with a letter or digit.",
            code="invalid_characters",
        )
    if slug in RESERVED_SLUGS:
        raise ValidationError("This subdomain is reserved.", code="reserved")
    if Brand.objects.filter(slug=slug).exists():
        raise ValidationError("This subdomain is already taken.", code="taken")
    # A schema with the brand's name but no Brand row (e.g. a brand removed with a queryset
    # delete, which skips the schema drop) must never be adopted by a new signup: it may
    # hold the old brand's people and data.
    if schema_exists(schema_name_for(slug), case_sensitive=False):
        raise ValidationError("This subdomain is already taken.", code="taken")


def schema_name_for(slug: str) -> str:
    # Slugs never contain "_", so mapping "-" to "_" cannot make two slugs collide.
    return "brand_" + slug.replace("-", "_")


def domain_for(slug: str) -> str:
    return f"{slug}.{settings.BASE_DOMAIN}"


def host_url(host: str, path: str = "/") -> str:
    port = f":{settings.PUBLIC_PORT}" if settings.PUBLIC_PORT else ""
    return f"{settings.SITE_SCHEME}://{host}{port}{path}"


def brand_url(brand: Brand, path: str = "/") -> str:
    return host_url(domain_for(brand.slug), path)


def ensure_public_tenant() -> Brand:
    """The public tenant and its domain (BASE_DOMAIN). Idempotent."""
    public, _ = Brand.objects.get_or_create(
        schema_name=PUBLIC_SCHEMA,
        defaults={"kind": BrandKind.PUBLIC, "name": "Keel", "slug": "public"},
    )
    Domain.objects.get_or_create(
        domain=settings.BASE_DOMAIN, defaults={"tenant": public, "is_primary": True}
    )
    return public


def ensure_template_schema(verbosity: int = 0) -> Brand:
    """Create the template schema if missing and bring it to the latest migrations."""
    template_name = settings.TENANT_BASE_SCHEMA
    template, _ = Brand.objects.get_or_create(
        schema_name=template_name,
        defaults={"kind": BrandKind.TEMPLATE, "name": "Template", "slug": "template"},
    )
    if not schema_exists(template_name):
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{template_name}"')
    call_command(
        "migrate_schemas",
        schema_name=template_name,
        tenant=True,
        interactive=False,
        verbosity=verbosity,
    )
    connection.set_schema_to_public()
    return template


# --- Cloning the template ------------------------------------------------------------------
#
# The copy is a script generated in Python from one read of the template's catalog and sent
# as one multi-statement query. django-tenants' PL/pgSQL `clone_schema`, used before, ran
# similar DDL but looked every table, column, sequence and index up with queries of its own
# (many through the information_schema views) and created indexes through LIKE …
# INCLUDING ALL before renaming them; with fsync off this copy takes about a third of its
# time. What is left is mostly PostgreSQL's own cost of creating ~650 relations (each
# btree index is fsynced as it is built, so disk latency shows directly).
#
# Tables come from CREATE TABLE … (LIKE template.t INCLUDING ALL EXCLUDING INDEXES
# EXCLUDING DEFAULTS EXCLUDING IDENTITY): columns, NOT NULL, CHECK constraints (as stored
# expression trees, under their own names), generated columns, comments and storage. The
# rest is added under the template's names, because migrations drop and rename indexes and
# constraints by name (LIKE would name them by PostgreSQL's default rules): identity with
# the template's sequence name and options; primary keys, unique and exclusion
# constraints; other indexes; defaults; foreign keys; triggers.
#
# Their definitions are read with search_path = template, public, so PostgreSQL prints the
# template's own objects unqualified (and qualifies anything else, e.g. a public table the
# template shadows); the script runs with search_path = new schema, public, so the same
# text resolves into the new schema and nothing in the clone points back at the template.
# Index expressions and predicates are thus re-read from their printed form, as pg_dump
# and pg_restore do: PostgreSQL may print the re-read form differently (e.g.
# `ARRAY['a'::varchar]::text[]` comes back as `ARRAY['a'::varchar::text]`), which is the
# same predicate once constants are folded.

_CLONE_SEARCH_PATH_GUC = "keel.clone_search_path"

# One json document describing everything the script needs. `want.oid` is NULL when the
# template schema is missing, and every list is then empty.
_TEMPLATE_CATALOG_SQL = """
WITH want AS (
  SELECT n.oid, {template}::name AS template
    FROM (SELECT) one LEFT JOIN pg_namespace n ON n.nspname = {template}
),
-- Every object created in a schema depends on it (indexes, TOAST tables and row types do
-- through their table), so pg_depend's index finds them without scanning pg_class and
-- pg_attribute, which hold every brand's tables. Everything below starts from these.
members AS MATERIALIZED (
  SELECT d.classid, d.objid FROM want
    JOIN pg_depend d ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = want.oid
),
rels AS MATERIALIZED (
  SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions, c.relacl,
         c.relrowsecurity
    FROM members m JOIN pg_class c ON c.oid = m.objid
   WHERE m.classid = 'pg_class'::regclass
),
tabs AS MATERIALIZED (SELECT * FROM rels WHERE relkind = 'r'),
seqs AS MATERIALIZED (
  SELECT s.oid, s.relname, q.*, pg_sequence_last_value(s.oid)::text AS last_value,
         ident.refobjid AS ident_table, ident.refobjsubid AS ident_column
    FROM rels s
    JOIN pg_sequence q ON q.seqrelid = s.oid
    LEFT JOIN pg_depend ident ON ident.classid = 'pg_class'::regclass
         AND ident.objid = s.oid AND ident.refclassid = 'pg_class'::regclass
         AND ident.deptype = 'i'
   WHERE s.relkind = 'S'
)
SELECT json_build_object(
  'template_exists', (SELECT oid IS NOT NULL FROM want),
  'target_exists', EXISTS (SELECT FROM pg_namespace WHERE nspname = {target}),
  -- Objects the script does not know how to copy: refusing beats a partial copy.
  'unsupported', ARRAY(
    SELECT pg_describe_object(m.classid, m.objid, 0) FROM members m
     WHERE m.classid <> 'pg_class'::regclass
    UNION ALL SELECT pg_describe_object('pg_class'::regclass, r.oid, 0) FROM rels r
     WHERE r.relkind NOT IN ('r', 'S')
    UNION ALL SELECT 'policy ' || p.polname FROM tabs t JOIN pg_policy p ON p.polrelid = t.oid
    UNION ALL SELECT 'rule ' || r.rulename FROM tabs t JOIN pg_rewrite r ON r.ev_class = t.oid
    UNION ALL SELECT 'inheritance of ' || t.relname FROM tabs t
      JOIN pg_inherits i ON i.inhrelid = t.oid OR i.inhparent = t.oid
    UNION ALL SELECT 'row security or grants on ' || r.relname FROM rels r
     WHERE r.relrowsecurity OR r.relacl IS NOT NULL OR EXISTS (
       SELECT FROM pg_attribute a WHERE a.attrelid = r.oid AND a.attacl IS NOT NULL)
    -- LIKE copies the comments of tables, columns and CHECKs; no others are recreated.
    UNION ALL SELECT 'comment on ' || pg_describe_object(d.classoid, d.objoid, d.objsubid)
      FROM (SELECT x.indexrelid AS oid, 'pg_class'::regclass AS class FROM tabs t
              JOIN pg_index x ON x.indrelid = t.oid
            UNION ALL SELECT co.oid, 'pg_constraint'::regclass FROM tabs t
              JOIN pg_constraint co ON co.conrelid = t.oid AND co.contype <> 'c'
            UNION ALL SELECT tg.oid, 'pg_trigger'::regclass FROM tabs t
              JOIN pg_trigger tg ON tg.tgrelid = t.oid
            UNION ALL SELECT s.oid, 'pg_class'::regclass FROM seqs s) o
      JOIN pg_description d ON d.objoid = o.oid AND d.classoid = o.class
  ),
  'tables', (
    SELECT coalesce(json_agg(json_build_array(
             t.relname,
             t.relpersistence = 'u',
             t.reloptions,
             obj_description(t.oid, 'pg_class'),
             -- A table that never held a row has no pages: no INSERT needed for it.
             pg_relation_size(t.oid) > 0,
             ARRAY(SELECT a.attname FROM pg_attribute a
                   WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attgenerated = '' ORDER BY a.attnum),
             EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = t.oid
                     AND a.attnum > 0 AND a.attidentity <> '')
           ) ORDER BY t.relname), '[]')
      FROM tabs t
  ),
  'identities', (
    SELECT coalesce(json_agg(json_build_array(
             t.relname, a.attname, a.attidentity, s.relname, format_type(s.seqtypid, NULL),
             s.seqstart::text, s.seqincrement::text, s.seqmin::text, s.seqmax::text,
             s.seqcache::text, s.seqcycle, s.last_value
           ) ORDER BY t.relname, a.attnum), '[]')
      FROM seqs s
      JOIN tabs t ON t.oid = s.ident_table
      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = s.ident_column
  ),
  -- Sequences that are not identity columns' (a serial column's, or standalone).
  'sequences', (
    SELECT coalesce(json_agg(json_build_array(
             s.relname, format_type(s.seqtypid, NULL), s.seqstart::text,
             s.seqincrement::text, s.seqmin::text, s.seqmax::text, s.seqcache::text,
             s.seqcycle, s.last_value, owner.relname, owner.attname
           ) ORDER BY s.relname), '[]')
      FROM seqs s
      LEFT JOIN LATERAL (
        SELECT c.relname, a.attname FROM pg_depend d
          JOIN pg_class c ON c.oid = d.refobjid
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid
           AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
      ) owner ON true
     WHERE s.ident_table IS NULL
  ),
  'defaults', (
    SELECT coalesce(json_agg(json_build_array(
             t.relname, a.attname, pg_get_expr(d.adbin, d.adrelid)
           ) ORDER BY t.relname, a.attnum), '[]')
      FROM tabs t
      JOIN pg_attrdef d ON d.adrelid = t.oid
      JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
     WHERE a.attgenerated = ''
  ),
  -- Primary keys, unique and exclusion constraints (with the indexes they own), then
  -- foreign keys, which need their target's key first.
  'constraints', (
    SELECT coalesce(json_agg(json_build_array(
             t.relname, co.conname, co.contype, pg_get_constraintdef(co.oid)
           ) ORDER BY co.contype = 'f', t.relname, co.conname), '[]')
      FROM tabs t JOIN pg_constraint co ON co.conrelid = t.oid
     WHERE co.contype IN ('p', 'u', 'x', 'f')
  ),
  -- Indexes that back no constraint; the table name is made relative like everything else.
  'indexes', (
    SELECT coalesce(json_agg(replace(
             pg_get_indexdef(x.indexrelid),
             ' ON ' || quote_ident(w.template) || '.' || quote_ident(t.relname) || ' USING ',
             ' ON ' || quote_ident(t.relname) || ' USING ')
           ORDER BY x.indexrelid), '[]')
      FROM want w, tabs t
      JOIN pg_index x ON x.indrelid = t.oid
     WHERE NOT EXISTS (SELECT FROM pg_constraint co WHERE co.conrelid = x.indrelid
                       AND co.conindid = x.indexrelid AND co.contype IN ('p', 'u', 'x'))
  ),
  'triggers', (
    SELECT coalesce(json_agg(json_build_array(
             t.relname, tg.tgname, pg_get_triggerdef(tg.oid, true), tg.tgenabled
           ) ORDER BY t.relname, tg.tgname), '[]')
      FROM tabs t JOIN pg_trigger tg ON tg.tgrelid = t.oid
     WHERE NOT tg.tgisinternal
  )
)
"""

_TRIGGER_STATES = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    # standard_conforming_strings is on (the default since PostgreSQL 9.1).
    return "'" + value.replace("'", "''") + "'"


def _sequence_options(type_, start, inc, min_, max_, cache, cycle) -> str:
    # An identity sequence takes its column's type: its caller passes type_=None.
    return (
        (f"AS {type_} " if type_ else "")
        + f"START WITH {start} INCREMENT BY {inc} MINVALUE {min_} MAXVALUE {max_} "
        f"CACHE {cache} {'' if cycle else 'NO '}CYCLE"
    )


def _read_template_catalog(cursor, template: str, target: str) -> dict:
    """The template's catalog as `_TEMPLATE_CATALOG_SQL` describes it, in one round trip."""
    guc = _literal(_CLONE_SEARCH_PATH_GUC)
    cursor.execute(
        ";\n".join(
            [
                f"SELECT set_config({guc}, current_setting('search_path'), true)",
                "SELECT set_config('search_path', "
                f"{_literal(_ident(template) + ', public')}, true)",
                _TEMPLATE_CATALOG_SQL.format(template=_literal(template), target=_literal(target)),
                f"SELECT set_config('search_path', current_setting({guc}), true)",
            ]
        )
    )
    cursor.nextset()
    cursor.nextset()
    (catalog,) = cursor.fetchone()
    return json.loads(catalog) if isinstance(catalog, str) else catalog


def _clone_script(template: str, target: str, catalog: dict) -> str:
    """One SQL script creating `target` as a copy of `template` (structure and rows)."""
    src, dst = _ident(template), _ident(target)
    guc = _literal(_CLONE_SEARCH_PATH_GUC)

    def table(name: str) -> str:
        return f"{dst}.{_ident(name)}"

    def alter_each(items: list[tuple[str, str]]) -> list[str]:
        # One ALTER TABLE per table with all its clauses rather than one per clause.
        grouped: dict[str, list[str]] = {}
        for name, clause in items:
            grouped.setdefault(name, []).append(clause)
        return [f"ALTER TABLE {table(name)} {', '.join(c)}" for name, c in grouped.items()]

    sql = [
        f"SELECT set_config({guc}, current_setting('search_path'), true)",
        f"SET LOCAL search_path = {dst}, public",
        f"CREATE SCHEMA {dst}",
    ]
    for name, type_, start, inc, min_, max_, cache, cycle, *_ in catalog["sequences"]:
        options = _sequence_options(type_, start, inc, min_, max_, cache, cycle)
        sql.append(f"CREATE SEQUENCE {table(name)} {options}")
    for name, unlogged, options, comment, *_ in catalog["tables"]:
        sql.append(
            f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {table(name)} (LIKE "
            f"{src}.{_ident(name)} INCLUDING ALL EXCLUDING INDEXES EXCLUDING DEFAULTS "
            "EXCLUDING IDENTITY)" + (f" WITH ({', '.join(options)})" if options else "")
        )
        if comment is not None:
            sql.append(f"COMMENT ON TABLE {table(name)} IS {_literal(comment)}")
    keys = [c for c in catalog["constraints"] if c[2] != "f"]
    foreign_keys = [c for c in catalog["constraints"] if c[2] == "f"]
    sql += alter_each(
        [
            (
                t,
                f"ALTER COLUMN {_ident(col)} ADD GENERATED "
                f"{'ALWAYS' if kind == 'a' else 'BY DEFAULT'} AS IDENTITY "
                f"(SEQUENCE NAME {table(seq)} {_sequence_options(None, *options)})",
            )
            for t, col, kind, seq, _, *options, _ in catalog["identities"]
        ]
        + [
            (t, f"ALTER COLUMN {_ident(col)} SET DEFAULT {expr}")
            for t, col, expr in catalog["defaults"]
        ]
        + [(t, f"ADD CONSTRAINT {_ident(name)} {definition}") for t, name, _, definition in keys]
    )
    for name, *_, owner_table, owner_column in catalog["sequences"]:
        if owner_table is not None:
            sql.append(
                f"ALTER SEQUENCE {table(name)} OWNED BY {table(owner_table)}.{_ident(owner_column)}"
            )
    sql += catalog["indexes"]
    for name, _, _, _, may_have_rows, columns, has_identity in catalog["tables"]:
        if may_have_rows:
            cols = ", ".join(_ident(c) for c in columns)
            overriding = " OVERRIDING SYSTEM VALUE" if has_identity else ""
            sql.append(
                f"INSERT INTO {table(name)} ({cols}){overriding} "  # noqa: S608 - quoted names
                f"SELECT {cols} FROM {src}.{_ident(name)}"
            )
    # Sequences continue where the template's stopped, so new rows never reuse a copied id.
    # A NULL last value means the sequence was never used: it starts where it is.
    last_values = [(seq, last) for _, _, _, seq, *_, last in catalog["identities"]] + [
        (seq, last) for seq, *_, last, _, _ in catalog["sequences"]
    ]
    setvals = [f"setval({_literal(table(s))}, {v})" for s, v in last_values if v is not None]
    if setvals:
        sql.append("SELECT " + ", ".join(setvals))
    # After the rows, so each key checks the copied rows once.
    sql += alter_each(
        [
            (t, f"ADD CONSTRAINT {_ident(name)} {definition}")
            for t, name, _, definition in foreign_keys
        ]
    )
    # After the rows too: copying them is not an insert the template's triggers should see.
    for name, trigger, definition, enabled in catalog["triggers"]:
        sql.append(definition)
        if enabled in _TRIGGER_STATES:
            sql.append(
                f"ALTER TABLE {table(name)} {_TRIGGER_STATES[enabled]} TRIGGER {_ident(trigger)}"
            )
    sql.append(f"SELECT set_config('search_path', current_setting({guc}), true)")
    return ";\n".join(sql)


def clone_template_into(schema_name: str) -> None:
    """Create `schema_name` as a copy (tables and rows) of the template schema.

    Two round trips (read the template's catalog, run the generated script) inside a
    savepoint of the caller's transaction, so a failure leaves nothing behind.
    """
    template_name = settings.TENANT_BASE_SCHEMA
    with transaction.atomic(), connection.cursor() as cursor:
        catalog = _read_template_catalog(cursor, template_name, schema_name)
        if not catalog["template_exists"]:
            raise ProvisioningError(
                f"Template schema {template_name!r} is missing; run `manage.py keel_bootstrap`."
            )
        if catalog["target_exists"]:
            raise ProvisioningError(
                f"Could not clone {template_name!r} into {schema_name!r}: the schema already "
                "exists."
            )
        if catalog["unsupported"]:
            raise ProvisioningError(
                f"Template schema {template_name!r} holds objects cloning does not copy: "
                + ", ".join(catalog["unsupported"])
            )
        cursor.execute(_clone_script(template_name, schema_name, catalog))


def _pool_schema_name() -> str:
    return f"pool_{uuid.uuid4().hex[:16]}"


def refill_pool(target: int | None = None) -> int:
    """Top the pool of pre-cloned schemas up to `target`; returns how many were made."""
    target = settings.KEEL_SCHEMA_POOL_SIZE if target is None else target
    made = 0
    while Brand.objects.filter(kind=BrandKind.POOL).count() < target:
        schema_name = _pool_schema_name()
        with transaction.atomic():
            Brand.objects.create(
                kind=BrandKind.POOL,
                schema_name=schema_name,
                name="Pool",
                slug=schema_name.replace("_", "-"),
            )
            clone_template_into(schema_name)
        made += 1
    connection.set_schema_to_public()
    return made


def _take_pooled_schema(fields: dict) -> Brand | None:
    """Turn a pooled schema into the brand (inside the caller's transaction).

    The Brand row takes the new slug and schema name BEFORE the schema is renamed: a
    concurrent signup for the same slug then fails on the row's unique index (reported as
    "taken") instead of colliding on the schema name inside PostgreSQL's catalog.
    """
    pooled = (
        Brand.objects.select_for_update(skip_locked=True)
        .filter(kind=BrandKind.POOL)
        .order_by("id")
        .first()
    )
    if pooled is None:
        return None
    old_schema = pooled.schema_name
    for field, value in fields.items():
        setattr(pooled, field, value)
    pooled.created_at = now()
    pooled.save()
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER SCHEMA "{old_schema}" RENAME TO "{pooled.schema_name}"')
    return pooled


def provision_brand(
    *,
    name: str,
    slug: str,
    owner: Owner,
    signup_token: uuid.UUID | None = None,
    timezone: str = "UTC",
    currency: str = "USD",
) -> Brand:
    """Create a ready brand: schema (cloned), Brand + Domain rows, owner user.

    Raises ValidationError for a bad/taken slug and ProvisioningError when the
    infrastructure fails; in both cases nothing is left behind.
    """
    from accounts.models import Role, User

    validate_slug(slug)
    schema_name = schema_name_for(slug)
    fields = {
        "kind": BrandKind.BRAND,
        "schema_name": schema_name,
        "name": name,
        "slug": slug,
        "timezone": timezone,
        "currency": currency,
        "signup_token": signup_token,
    }
    try:
        with transaction.atomic():
            brand = _take_pooled_schema(fields)
            if brand is None:
                brand = Brand.objects.create(**fields)
                clone_template_into(schema_name)
            Domain.objects.create(domain=domain_for(slug), tenant=brand, is_primary=True)
            with schema_context(schema_name):
                user = User.objects.create_user(
                    email=owner.email,
                    full_name=owner.full_name,
                    password=owner.password,
                    role=Role.OWNER,
                )
                record("brand.created", obj=user, actor=SYSTEM, changes={"brand": name})
    except IntegrityError as exc:
        # Lost a race for the same slug or signup token: report it like a taken slug.
        raise ValidationError("This subdomain is already taken.", code="taken") from exc
    except DatabaseError as exc:
        # Any other database failure (clone, rename, a row the database refuses) has been
        # rolled back with the rest; callers get one error type to show instead of a 500.
        raise ProvisioningError(f"Provisioning {slug!r} failed and was rolled back.") from exc
    finally:
        connection.set_schema_to_public()
    if settings.KEEL_SCHEMA_POOL_SIZE:
        transaction.on_commit(_request_pool_refill)
    return brand


def _request_pool_refill() -> None:
    from tenants.tasks import refill_schema_pool

    try:
        refill_schema_pool.delay()
    except Exception:  # noqa: BLE001 - a broker outage must not fail a finished signup
        import logging

        logging.getLogger(__name__).warning("Could not queue a pool refill", exc_info=True)


def migrate_new_schema(schema_name: str) -> None:
    """Create an empty schema and run every tenant migration (the slow path).

    Used by the benchmark as the baseline that cloning is measured against.
    """
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema_name}"')
    call_command(
        "migrate_schemas", schema_name=schema_name, tenant=True, interactive=False, verbosity=0
    )
    connection.set_schema_to_public()


BRAND_PROFILE_FIELDS = ["name", "timezone", "currency"]


def update_brand_profile(*, brand: Brand, actor, **values) -> Brand:
    """Edit the brand's name, timezone or currency; logged in the brand's activity."""
    from accounts.roles import has_permission
    from accounts.services import AccessError
    from audit.services import diff

    if not has_permission(actor, "brand.edit"):
        raise AccessError("Your role does not allow this.")
    unknown = set(values) - set(BRAND_PROFILE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    with transaction.atomic():
        locked = Brand.objects.select_for_update().get(pk=brand.pk)
        before = {f: getattr(locked, f) for f in BRAND_PROFILE_FIELDS}
        for field, value in values.items():
            setattr(locked, field, value)
        changes = diff(locked, before, BRAND_PROFILE_FIELDS)
        if changes:
            locked.save(update_fields=list(changes))
            record("brand.updated", obj=locked, changes=changes)
    for field in BRAND_PROFILE_FIELDS:
        setattr(brand, field, getattr(locked, field))
    return brand
