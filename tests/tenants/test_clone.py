"""A cloned schema is structurally identical to the template and independent of it.

`clone_template_into` generates its DDL from the template's catalog; these tests read the
catalog of both schemas back and compare them object by object, with every name printed
schema-qualified so a reference into the wrong schema cannot hide behind the search_path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django_tenants.utils import schema_context

from tenants.services import ProvisioningError, clone_template_into

CLONE = "clone_probe_target"


@contextmanager
def qualified_names() -> Iterator[None]:
    """pg_get_*def print every schema name while inside (empty search_path)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path')")
        (previous,) = cursor.fetchone()
        cursor.execute("SELECT set_config('search_path', '', true)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('search_path', %s, true)", [previous])


def rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def normalized(value: object, schema: str) -> object:
    if isinstance(value, str):
        return value.replace(f"{schema}.", "<schema>.")
    return value


def catalog(schema: str) -> dict[str, list[tuple]]:
    """Every structural fact of `schema` a brand depends on, schema name abstracted."""
    queries = {
        "tables": """
            SELECT c.relname, c.relpersistence, c.reloptions, obj_description(c.oid, 'pg_class')
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1""",
        # Ordered by attnum: the template may carry dropped columns, the clone does not,
        # so positions are compared by order rather than by number.
        "columns": """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid),
                   col_description(c.oid, a.attnum), a.attcollation
              FROM pg_attribute a
              JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum""",
        "constraints": """
            SELECT c.relname, co.conname, co.contype, pg_get_constraintdef(co.oid),
                   co.condeferrable, co.condeferred, co.convalidated,
                   CASE WHEN tn.nspname = n.nspname THEN '<schema>' ELSE tn.nspname END
              FROM pg_constraint co
              JOIN pg_class c ON c.oid = co.conrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_class t ON t.oid = co.confrelid
              LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
             WHERE n.nspname = %s ORDER BY 1, 2""",
        "indexes": """
            SELECT ic.relname, pg_get_indexdef(i.indexrelid), i.indisprimary, i.indisunique,
                   c.relname, i.indexprs IS NOT NULL OR i.indpred IS NOT NULL
              FROM pg_index i
              JOIN pg_class ic ON ic.oid = i.indexrelid
              JOIN pg_class c ON c.oid = i.indrelid
              JOIN pg_namespace n ON n.oid = ic.relnamespace
             WHERE n.nspname = %s ORDER BY 1""",
        "sequences": """
            SELECT s.relname, format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement,
                   q.seqmin, q.seqmax, q.seqcache, q.seqcycle, d.deptype, t.relname, a.attname
              FROM pg_class s
              JOIN pg_namespace n ON n.oid = s.relnamespace
              JOIN pg_sequence q ON q.seqrelid = s.oid
              LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
              LEFT JOIN pg_class t ON t.oid = d.refobjid
              LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             WHERE n.nspname = %s ORDER BY 1""",
        "triggers": """
            SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
              FROM pg_trigger t
              JOIN pg_class c ON c.oid = t.tgrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = %s AND NOT t.tgisinternal ORDER BY 1, 2""",
    }
    with qualified_names():
        return {
            name: [tuple(normalized(v, schema) for v in row) for row in rows(sql, [schema])]
            for name, sql in queries.items()
        }


def as_reread(template: str, indexes: list[tuple]) -> list[tuple]:
    """`indexes` of the template, with expressions and predicates as PostgreSQL re-reads them.

    The clone creates indexes from their printed definitions (like pg_restore), and
    PostgreSQL may print a re-read predicate differently (`ARRAY[..]::text[]` comes back as
    `ARRAY[..::text]`); this is what an exact copy of such an index looks like.
    """
    scratch = "clone_probe_reread"
    result = []
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{scratch}"')
        for i, (name, definition, primary, unique, table, has_expressions) in enumerate(indexes):
            if has_expressions:
                scratch_table = f"t{i}"
                cursor.execute(
                    f'CREATE TABLE "{scratch}"."{scratch_table}" (LIKE "{template}"."{table}")'
                )
                cursor.execute(
                    definition.replace(f"<schema>.{table} ", f'"{scratch}"."{scratch_table}" ', 1)
                )
                with qualified_names():
                    ((definition,),) = rows(
                        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
                        "JOIN pg_class c ON c.oid = i.indrelid "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relname = %s",
                        [scratch, scratch_table],
                    )
                definition = definition.replace(f"{scratch}.{scratch_table} ", f"<schema>.{table} ")
            result.append((name, definition, primary, unique, table, has_expressions))
        cursor.execute(f'DROP SCHEMA "{scratch}" CASCADE')
    return result


def assert_same_structure(template: str, clone: str) -> dict[str, list[tuple]]:
    expected, actual = catalog(template), catalog(clone)
    expected["indexes"] = as_reread(template, expected["indexes"])
    for kind in expected:
        assert actual[kind] == expected[kind], kind
    return actual


def definitions_of(schema: str) -> list[str]:
    """All expressions of `schema` that may name another schema, fully qualified."""
    with qualified_names():
        return [
            row[0]
            for row in rows(
                """
                SELECT pg_get_constraintdef(co.oid) FROM pg_constraint co
                  JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = %(s)s
                UNION ALL
                SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                  JOIN pg_class c ON c.oid = i.indexrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s
                UNION ALL
                SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
                  JOIN pg_class c ON c.oid = d.adrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s
                UNION ALL
                SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
                  JOIN pg_class c ON c.oid = t.tgrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = %(s)s AND NOT t.tgisinternal
                """,
                {"s": schema},
            )
        ]


def dependencies_between(schema: str, other: str) -> list[tuple]:
    """pg_depend edges from an object of `schema` (or a part of one) to one of `other`."""
    return rows(
        """
        SELECT o.type, o.identity, r.type, r.identity
          FROM pg_depend d,
               LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) o,
               LATERAL pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid) r
         WHERE d.deptype <> 'p'
           AND (o.schema = %s OR starts_with(o.identity, %s))
           AND (r.schema = %s OR starts_with(r.identity, %s))
        """,
        [schema, f"{schema}.", other, f"{other}."],
    )


def table_contents(schema: str) -> dict[str, list[tuple]]:
    tables = [r[0] for r in catalog(schema)["tables"]]
    return {
        t: sorted(rows(f'SELECT * FROM "{schema}"."{t}"', []), key=repr)  # noqa: S608
        for t in tables
    }


def identity_state(schema: str) -> list[tuple]:
    """(table, column, sequence last value, max value in the column) per identity column."""
    result = []
    for table, column in rows(
        """
        SELECT c.relname, a.attname FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relkind = 'r' AND a.attidentity <> '' ORDER BY 1
        """,
        [schema],
    ):
        ((last, highest),) = rows(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, %s)::regclass), "
            f'max("{column}") FROM "{schema}"."{table}"',  # noqa: S608
            [f'"{schema}"."{table}"', column],
        )
        result.append((table, column, last, highest))
    return result


@pytest.fixture
def template() -> str:
    return settings.TENANT_BASE_SCHEMA


def test_clone_is_structurally_identical_to_the_template(db, template):
    clone_template_into(CLONE)

    actual = assert_same_structure(template, CLONE)
    # The comparison is not vacuous: the template holds a migrated Keel.
    assert len(actual["tables"]) > 50
    assert {row[2] for row in actual["constraints"]} >= {"p", "u", "f", "c"}
    assert len(actual["indexes"]) > len(actual["tables"])
    assert any(row[5] for row in actual["indexes"])  # partial and expression indexes too
    assert all(row[8] == "i" for row in actual["sequences"])  # Django uses identity columns
    # Identity sequences keep their type (LIKE … INCLUDING IDENTITY would make them bigint).
    assert ("django_content_type_id_seq", "integer") in {r[:2] for r in actual["sequences"]}
    # Foreign keys between brand tables point into the clone itself.
    fk_targets = {row[7] for row in actual["constraints"] if row[2] == "f"}
    assert fk_targets == {"<schema>"}


def test_nothing_in_the_clone_refers_back_to_the_template(db, template):
    clone_template_into(CLONE)

    definitions = definitions_of(CLONE)
    assert len(definitions) > 100
    assert not [d for d in definitions if template in d]
    assert dependencies_between(CLONE, template) == []
    # The check itself finds such references: the template's own FKs refer to itself.
    assert dependencies_between(template, template) != []


def test_clone_copies_every_row_and_sequences_continue_after_them(db, template):
    clone_template_into(CLONE)

    expected, actual = table_contents(template), table_contents(CLONE)
    assert {t: len(r) for t, r in actual.items()} == {t: len(r) for t, r in expected.items()}
    assert actual == expected
    seeded = {t for t, r in expected.items() if r}
    assert {"django_migrations", "django_content_type", "auth_permission"} <= seeded

    state = identity_state(CLONE)
    assert state == identity_state(template)
    for table, column, last, highest in state:
        if highest is not None:
            assert last is not None and last >= highest, (table, column)


def test_rows_created_through_the_orm_in_a_clone_get_fresh_ids(db, template):
    clone_template_into(CLONE)
    with schema_context(CLONE):
        copied = ContentType.objects.order_by("-id").first().id
        kind = ContentType.objects.create(app_label="cloneprobe", model="probe")
        permission = Permission.objects.create(
            name="Can probe", content_type=kind, codename="probe_probe"
        )
        assert kind.id > copied
        assert Permission.objects.filter(content_type=kind).get() == permission
    # The template is untouched by writes to the clone.
    with schema_context(template):
        assert not ContentType.objects.filter(app_label="cloneprobe").exists()


def test_every_tenant_model_has_its_table_in_the_clone(db):
    clone_template_into(CLONE)
    tables = {row[0] for row in catalog(CLONE)["tables"]}

    tenant_apps = {app.split(".")[-1] for app in settings.TENANT_APPS}
    expected = {
        model._meta.db_table
        for model in apps.get_models(include_auto_created=True)
        if model._meta.app_config.name.split(".")[-1] in tenant_apps
        and model._meta.managed
        and not model._meta.proxy
    }
    assert len(expected) > 50
    assert expected - tables == set()


def test_sequences_defaults_generated_columns_comments_and_triggers_are_cloned(db, template):
    # Keel's migrations use none of these, but a later one may: a table with a serial
    # column (a plain sequence owned by the column, reached through a default), a text
    # default, a generated column, a self-reference, a table comment, a check and a
    # user trigger. Created inside the test's transaction, gone with its rollback.
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE TABLE "{template}".clone_probe (
                id serial PRIMARY KEY,
                label text NOT NULL DEFAULT 'unnamed' CHECK (label <> ''),
                doubled bigint GENERATED ALWAYS AS (id * 2) STORED,
                parent_id integer REFERENCES "{template}".clone_probe (id)
            );
            COMMENT ON TABLE "{template}".clone_probe IS 'probe''s table';
            COMMENT ON COLUMN "{template}".clone_probe.label IS 'what it is called';
            CREATE INDEX clone_probe_label_lower ON "{template}".clone_probe (lower(label))
                WHERE parent_id IS NULL;
            INSERT INTO "{template}".clone_probe (label) VALUES ('one'), ('two');
            CREATE FUNCTION public.clone_probe_upper() RETURNS trigger LANGUAGE plpgsql
                AS $$ BEGIN NEW.label := upper(NEW.label); RETURN NEW; END $$;
            CREATE TRIGGER clone_probe_upper BEFORE INSERT ON "{template}".clone_probe
                FOR EACH ROW EXECUTE FUNCTION public.clone_probe_upper();
            """
        )

    clone_template_into(CLONE)

    actual = assert_same_structure(template, CLONE)
    probe_sequences = [row for row in actual["sequences"] if row[9] == "clone_probe"]
    assert probe_sequences == [
        ("clone_probe_id_seq", "integer", 1, 1, 1, 2147483647, 1, False, "a", "clone_probe", "id")
    ]
    assert not [d for d in definitions_of(CLONE) if template in d]
    assert dependencies_between(CLONE, template) == []
    with connection.cursor() as cursor:
        cursor.execute(f'INSERT INTO "{CLONE}".clone_probe (parent_id) VALUES (1) RETURNING *')
        # Next id after the copied rows, the clone's default and trigger, the generated
        # column, and the FK accepted a parent that exists in the clone.
        assert cursor.fetchone() == (3, "UNNAMED", 6, 1)
        # Rows are copied as they are: the trigger is created after the copy.
        cursor.execute(f'SELECT id, label FROM "{CLONE}".clone_probe ORDER BY id')
        assert cursor.fetchall() == [(1, "one"), (2, "two"), (3, "UNNAMED")]
        cursor.execute(f'SELECT last_value FROM "{template}".clone_probe_id_seq')
        assert cursor.fetchone() == (2,)  # the template's sequence did not move


@pytest.mark.parametrize(
    ("ddl", "described"),
    [
        ("CREATE VIEW {t}.clone_probe AS SELECT 1 AS one", "view .*clone_probe"),
        (
            "CREATE FUNCTION {t}.clone_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "function .*clone_probe",
        ),
        ("CREATE TYPE {t}.clone_probe AS ENUM ('a', 'b')", "type .*clone_probe"),
        ("COMMENT ON INDEX {t}.accounts_user_pkey IS 'why'", "comment on index .*pkey"),
        ("GRANT SELECT ON {t}.accounts_user TO PUBLIC", "grants on accounts_user"),
    ],
    ids=["view", "function", "enum", "index-comment", "grant"],
)
def test_a_template_holding_objects_the_clone_cannot_copy_is_refused(db, template, ddl, described):
    with connection.cursor() as cursor:
        cursor.execute(ddl.format(t=f'"{template}"'))

    with pytest.raises(ProvisioningError, match=described):
        clone_template_into(CLONE)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [CLONE])
        assert cursor.fetchone() is None


def test_clone_leaves_the_connection_s_search_path_as_it_was(db, template):
    with connection.cursor() as cursor:
        cursor.execute("SHOW search_path")
        before = cursor.fetchone()

    clone_template_into(CLONE)

    with connection.cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone() == before
