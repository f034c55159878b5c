"""Compiled statements in PostgreSQL's own ``$n`` placeholders, for the prepared-statement paths
(``store/activation.py``, ``store/snapshot.py``).

psycopg turns a ``%(name)s`` query into ``$n`` on every ``execute`` -- a regular-expression pass
over the whole text -- and keeps the result only for queries of at most 4,096 characters and 50
parameters (``psycopg._queries.MAX_CACHED_STATEMENT_LENGTH``). The seat read of an activation is
about 6,500 characters and a check's read about as long: measured (bench/profile_activation.py,
PostgreSQL, Ed25519) about 0.2 ms of CPU per execute in that pass alone. A ``psycopg.RawCursor``
takes the ``$n`` text as it is, so the conversion is done once here, when the statement is
compiled.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

# SQLAlchemy's psycopg dialect binds as ``%(name)s`` and doubles a literal percent sign.
_PYFORMAT = re.compile(r"%\((\w+)\)s|%%")


def native_placeholders(sql: str) -> tuple[str, list[str]]:
    """``sql`` with ``$1, $2, ...`` for its ``%(name)s`` binds (a name bound twice gets one
    number) and ``%%`` as ``%``, with the names in the order of their numbers."""
    order: list[str] = []
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in numbers:
            order.append(name)
            numbers[name] = len(order)
        return f"${numbers[name]}"

    return _PYFORMAT.sub(number, sql), order


def uses_native(dialect: Any) -> bool:
    """Whether statements for ``dialect`` are run in ``$n`` form on a ``RawCursor``."""
    return bool(dialect.name == "postgresql" and dialect.driver == "psycopg")


def raw_cursor(dbapi_connection: Any) -> Any:
    """A cursor that sends ``$n`` queries as they are (psycopg)."""
    return psycopg.RawCursor(dbapi_connection)
