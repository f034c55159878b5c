"""store/native.py: compiled statements turned into PostgreSQL's own ``$n`` placeholders."""

from __future__ import annotations

from sqlalchemy import bindparam, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite

from licensor.store.models import License
from licensor.store.native import native_placeholders, uses_native


def test_each_name_gets_one_number_in_order_of_first_use() -> None:
    sql, order = native_placeholders(
        "SELECT a FROM t WHERE x = %(k)s AND y = %(h)s OR z = %(k)s LIMIT %(n)s"
    )
    assert sql == "SELECT a FROM t WHERE x = $1 AND y = $2 OR z = $1 LIMIT $3"
    assert order == ["k", "h", "n"]


def test_a_doubled_percent_sign_becomes_one() -> None:
    sql, order = native_placeholders("SELECT 'a%%b' LIKE %(p)s, 5 %% 2")
    assert sql == "SELECT 'a%b' LIKE $1, 5 % 2"
    assert order == ["p"]


def test_a_compiled_statement_binds_by_number() -> None:
    statement = select(License.id, literal_column("'100%'")).where(
        License.key_lookup == bindparam("key_lookup"), License.company_id == bindparam("company")
    )
    compiled = str(statement.compile(dialect=postgresql.psycopg.dialect()))
    sql, order = native_placeholders(compiled)
    assert "%(" not in sql
    assert "'100%'" in sql
    assert sql.index("$1") < sql.index("$2")
    assert order == ["key_lookup", "company"]


def test_only_psycopg_runs_natively() -> None:
    assert uses_native(postgresql.psycopg.dialect())
    assert not uses_native(sqlite.dialect())
