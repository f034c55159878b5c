"""Prepare a benchmark deployment: data dir, migrations, keys, one company + API key, one product,
and N licenses with their devices, inserted in bulk.

* PostgreSQL: ``COPY ... FROM STDIN`` (text format) through psycopg, then ``setval``, ``ANALYZE``.
* SQLite: ``executemany`` of one prepared INSERT through SQLAlchemy Core (``exec_driver_sql``), in
  one transaction with ``synchronous=OFF``, then ``ANALYZE``.

Layout (``n`` licenses, ``d`` devices per license, ``d = max(1, min_devices // n)``):

* license ``i`` (1..n): perpetual, unlimited activations, key ``BNCH-xxxx-xxxx-xxxx-xxxx``
  (the 16 digits of ``i``), ``times_activated = d``;
* its devices ``hw-<i>-<j>`` (j = 0..d-1), all active.

Pools the load scripts use (disjoint, so one run never disturbs another's data):

* check: ``CHECK_POOL`` devices whatever the size, so that the 1,000- and the 1,000,000-license
  runs rotate over the same number of devices and differ only in data size: device ``j = 0`` of
  ``CHECK_POOL`` licenses chosen at random, or, with fewer licenses, devices ``j = 0..k-1`` of
  every license (shuffled). Its first ``STEADY_POOL`` devices are the steady-state load (each
  checked again and again: answers served again from memory); the others the cold load (each
  device once in a run: every answer made and signed);
* activate: up to ``ACTIVATE_POOL`` licenses chosen at random, each request a fresh hardware id;
* deactivate: every other device, spread round-robin over the licenses (consecutive requests hit
  different licenses, so they do not queue on one license's row lock), handed out in slices;
* consume: ``CONSUME_POOL`` consumption licenses of their own (unlimited), one activated device
  each, reported on in turn;
* floating: ``FLOAT_POOL`` floating cloud licenses of their own (10 slots), one activated device
  each, checked again and again (each keeps its slot: the steady state of a floating check).
"""

from __future__ import annotations

import base64
import gc
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CHECK_POOL = 60_000
STEADY_POOL = 1_000
ACTIVATE_POOL = 10_000
DEACTIVATE_POOL = 200_000
CONSUME_POOL = 1_000
FLOAT_POOL = 1_000
BUNDLE_POOL = 1_000
BUNDLE = "bench-suite"  # a bundle of two products: its activation is two activations
BUNDLE_ITEMS = ("bench-a", "bench-b")
PRODUCT = "bench"
MASTER_KEY = base64.b64encode(b"bench-master-key-not-a-secret!!!").decode()
SEED_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def license_key(i: int) -> str:
    digits = f"{i:016d}"
    return "BNCH-" + "-".join(digits[k : k + 4] for k in range(0, 16, 4))


def key_lookup(i: int) -> str:
    return f"BNCH{i:016d}"  # normalize_license_key(license_key(i)): upper, no dashes


def hardware_id(i: int, j: int) -> str:
    return f"hw-{i}-{j}"


@dataclass
class Deployment:
    name: str
    database_url: str
    data_dir: Path
    env: dict[str, str]
    api_key: str
    shared_key: str
    licenses: int
    devices_per_license: int
    seed_seconds: float
    check_pool: list[tuple[str, str]] = field(default_factory=list)  # (license key, hardware id)
    activate_pool: list[str] = field(default_factory=list)  # license keys
    deactivate_pool: list[tuple[str, str]] = field(default_factory=list)
    consume_pool: list[tuple[str, str]] = field(default_factory=list)
    floating_pool: list[tuple[str, str]] = field(default_factory=list)
    bundle_pool: list[str] = field(default_factory=list)  # keys of bundle licenses
    console_cookie: str = ""  # a read-only console user's session (the console pages' row)
    console_paths: list[str] = field(default_factory=list)
    _deactivate_next: int = 0

    def take_deactivations(self, count: int) -> list[tuple[str, str]]:
        """A slice of never-used (license key, hardware id) pairs; may be shorter than asked."""
        start = self._deactivate_next
        self._deactivate_next = min(len(self.deactivate_pool), start + count)
        return self.deactivate_pool[start : self._deactivate_next]


def prepare(
    name: str,
    database_url: str,
    data_dir: Path,
    *,
    licenses: int,
    min_devices: int,
    rng: random.Random,
) -> Deployment:
    """Migrate, create keys/company/API key/product, seed in bulk, build the request pools."""
    from licensor.keyring import Keyring
    from licensor.secrets_at_rest import MasterKey
    from licensor.services import catalogue
    from licensor.settings import Settings
    from licensor.store import migrate
    from licensor.store.db import Database

    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "LICENSOR_DATA_DIR": str(data_dir),
        "LICENSOR_DATABASE_URL": database_url,
        "LICENSOR_MASTER_KEY": MASTER_KEY,
    }
    settings = Settings(data_dir=data_dir, database_url=database_url, master_key=MASTER_KEY)
    migrate.upgrade(database_url)
    Keyring.load_or_create(settings.resolved_keys_dir)
    db = Database(database_url)
    try:
        with db.transaction(write=True) as session:
            company = catalogue.create_company(session, "Bench")
            key = catalogue.create_api_key(
                session, MasterKey.from_base64(MASTER_KEY), company.id, label="bench"
            )
            product = catalogue.create_product(
                session, company.id, catalogue.ProductSpec(short_code=PRODUCT, name="Bench")
            )
            company_id, product_id = company.id, product.id
        per = max(1, min_devices // licenses)
        started = time.monotonic()
        if db.is_sqlite:
            _seed_sqlite(database_url, company_id, product_id, licenses, per)
        else:
            _seed_postgres(db.write_engine, company_id, product_id, licenses, per)
        seconds = time.monotonic() - started
    finally:
        db.dispose()

    deployment = Deployment(
        name, database_url, data_dir, env, key.api_key, key.shared_key, licenses, per, seconds
    )
    ids = list(range(1, licenses + 1))
    check_ids = rng.sample(ids, min(CHECK_POOL, licenses))
    per_check = min(per, -(-CHECK_POOL // licenses))  # devices per license in the check pool
    deployment.check_pool = [
        (license_key(i), hardware_id(i, j)) for j in range(per_check) for i in check_ids
    ][:CHECK_POOL]
    rng.shuffle(deployment.check_pool)
    deployment.activate_pool = [
        license_key(i) for i in rng.sample(ids, min(ACTIVATE_POOL, licenses))
    ]
    if per > per_check:
        # the devices after the check pool's, round-robin over the licenses.
        pairs = ((i, j) for j in range(per_check, per) for i in ids)
        deployment.deactivate_pool = [
            (license_key(i), hardware_id(i, j))
            for (i, j), _ in zip(pairs, range(DEACTIVATE_POOL), strict=False)
        ]
    else:
        in_check = set(check_ids)
        rest = rng.sample(ids, min(licenses, DEACTIVATE_POOL + len(in_check)))
        deployment.deactivate_pool = [
            (license_key(i), hardware_id(i, 0)) for i in rest if i not in in_check
        ][:DEACTIVATE_POOL]
    started = time.monotonic()
    from licensor.services.catalogue import LicenseSpec

    deployment.consume_pool = _licenses_with_a_device(
        database_url,
        company_id,
        CONSUME_POOL,
        LicenseSpec(
            license_type="consumption", allow_unlimited_consumptions=True, max_activations=1
        ),
        "consumer",
    )
    deployment.floating_pool = _licenses_with_a_device(
        database_url,
        company_id,
        FLOAT_POOL,
        LicenseSpec(is_floating_cloud=True, floating_users=10, max_activations=10),
        "floater",
    )
    deployment.bundle_pool = _bundle_licenses(database_url, company_id, BUNDLE_POOL)
    deployment.console_cookie = _console_session(database_url, company_id)
    deployment.console_paths = _console_paths(rng, licenses)
    _keep_signatures(database_url, Keyring.load(settings.resolved_keys_dir), deployment)
    deployment.seed_seconds += time.monotonic() - started
    return deployment


def _bundle_licenses(database_url: str, company_id: int, count: int) -> list[str]:
    """``count`` licenses (unlimited activations) of the bundle ``BUNDLE`` of the products
    ``BUNDLE_ITEMS`` (made with the server's own code); their keys."""
    from licensor.services import catalogue
    from licensor.store.db import Database
    from licensor.store.models import License

    db = Database(database_url)
    try:
        with db.transaction(write=True) as session:
            for code in BUNDLE_ITEMS:
                catalogue.create_product(session, company_id, catalogue.ProductSpec(code, code))
            catalogue.create_product(
                session,
                company_id,
                catalogue.ProductSpec(BUNDLE, BUNDLE, bundle=list(BUNDLE_ITEMS)),
            )
            spec = catalogue.LicenseSpec(allow_unlimited_activations=True)
            ids = catalogue.create_licenses(
                session, company_id, BUNDLE, spec, count=count, now=SEED_TIME
            )
            return [session.get(License, i).license_key or "" for i in ids]  # type: ignore[union-attr]
    finally:
        db.dispose()


def _console_session(database_url: str, company_id: int) -> str:
    """The cookie token of a signed-in read-only console user."""
    from licensor.secrets_at_rest import MasterKey
    from licensor.services import console
    from licensor.store.db import Database

    db = Database(database_url)
    try:
        with db.transaction(write=True) as session:
            email, password = "bench@vendor.example", "bench-console-pass"
            console.create_user(session, company_id, email, password, "read-only")
            token, _ = console.sign_in(
                session, MasterKey.from_base64(MASTER_KEY), email, password, now=datetime.now(UTC)
            )
    finally:
        db.dispose()
    return token


def _console_paths(rng: random.Random, licenses: int, count: int = 2000) -> list[str]:
    """What support staff open: the first page of licenses, a search by key, a later page
    (keyset), a license's page with its computers -- a quarter each, licenses at random."""
    paths = []
    for n in range(count):
        i = rng.randrange(1, licenses + 1)
        paths.append(
            (
                "/console/licenses",
                f"/console/licenses?q={license_key(i)}",
                f"/console/licenses?before={i}",
                f"/console/licenses/{i}",
            )[n % 4]
        )
    return paths


def _licenses_with_a_device(
    database_url: str, company_id: int, count: int, spec: Any, prefix: str
) -> list[tuple[str, str]]:
    """``count`` licenses of the bench product issued with ``spec``, one active device each
    (``<prefix>-<license id>``; made with the server's own code: few rows)."""
    from sqlalchemy import select

    from licensor.services import catalogue
    from licensor.store.db import Database
    from licensor.store.models import Device, License

    db = Database(database_url)
    try:
        with db.transaction(write=True) as session:
            ids = catalogue.create_licenses(
                session, company_id, PRODUCT, spec, count=count, now=SEED_TIME
            )
            pool = []
            for license_ in session.scalars(select(License).where(License.id.in_(ids))):
                hw = f"{prefix}-{license_.id}"
                session.add(
                    Device(
                        license_id=license_.id,
                        hardware_id=hw,
                        active=True,
                        first_activated_at=SEED_TIME,
                        last_activated_at=SEED_TIME,
                    )
                )
                license_.times_activated = 1
                pool.append((license_.license_key or "", hw))
    finally:
        db.dispose()
    return pool


def cold_pools(deployment: Deployment) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The check pool's devices for cold checks, RSA and Ed25519: each checked at most once in
    a run (a third for RSA, two thirds for the faster Ed25519)."""
    cold = deployment.check_pool[STEADY_POOL:]
    third = len(cold) // 3
    return cold[:third], cold[third:]


def _keep_signatures(database_url: str, keyring: Any, deployment: Deployment) -> None:
    """What an activation keeps on a device (``Device.license_signature``), for the devices
    the runs check, with the algorithm they are checked with (the steady pool: RSA)."""
    from sqlalchemy import create_engine, text

    from licensor.protocol.signing import license_signing_string

    rsa, ed25519 = cold_pools(deployment)
    algorithms = [("rsa-sha256", deployment.check_pool[:STEADY_POOL] + rsa), ("ed25519", ed25519)]
    rows = [
        {
            "license_id": int(hw.split("-")[1]),
            "hardware_id": hw,
            "signature": keyring.stored_signature(
                algorithm, license_signing_string(hw, key, None).encode()
            ),
        }
        for algorithm, pairs in algorithms
        for key, hw in pairs
    ]
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE devices SET license_signature = :signature "
                    "WHERE license_id = :license_id AND hardware_id = :hardware_id"
                ),
                rows,
            )
    finally:
        engine.dispose()


# -- bulk rows ---------------------------------------------------------------------------------
# Rows are made from precomputed constant parts (one f-string per row) with the garbage collector
# paused: a million rows then cost about a second of Python.

LICENSE_COLUMNS = (  # noqa: SIM905 (a list of 36 names, one per line, would be longer to read)
    "id company_id product_id customer_id license_key key_lookup license_type is_trial trial_days "
    "trial_hardware_id validity_period validity_days start_date allow_grace_period grace_period "
    "enable_maintenance_period maintenance_period max_activations allow_unlimited_activations "
    "times_activated max_transfers transfer_count last_deactivated_hardware_id prevent_vm "
    "version_spec enabled order_store_id custom_fields metadata max_consumptions "
    "total_consumptions allow_unlimited_consumptions first_activated_at created_at updated_at"
).split()
DEVICE_COLUMNS = (  # noqa: SIM905
    "id license_id license_user_id hardware_id active is_vm vm_info os_ver hostname ip ip_local "
    "app_ver sdk_ver mac_address first_activated_at last_activated_at last_check_at deactivated_at"
).split()


def _license_tail(per: int, t: Any, true: Any, false: Any) -> tuple[Any, ...]:
    """Every license column after key_lookup (the same for every license)."""
    return (
        "perpetual",
        false,
        None,
        None,
        None,
        None,
        None,
        false,
        0,
        false,
        None,
        1,
        true,
        per,
        0,
        0,
        None,
        None,
        None,
        true,
        "",
        "{}",
        "{}",
        0,
        0,
        false,
        t,
        t,
        t,
    )


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _seed_sqlite(url: str, company_id: int, product_id: int, n: int, per: int) -> None:
    from sqlalchemy import create_engine

    # SQLAlchemy's SQLite DateTime storage format. Columns that are the same on every row are
    # literals in the statement; only what varies is bound (3 values a row, not 35).
    t = SEED_TIME.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    lic_consts = ", ".join(_sql_literal(v) for v in _license_tail(per, t, 1, 0))
    lic_sql = (
        f"INSERT INTO licenses ({', '.join(LICENSE_COLUMNS)}) "
        f"VALUES (?, {company_id}, {product_id}, NULL, ?, ?, {lic_consts})"
    )
    dev_sql = (
        f"INSERT INTO devices ({', '.join(DEVICE_COLUMNS)}) "
        f"VALUES (?, ?, NULL, ?, 1, 0, '', 'Linux', ?, '', '', '1.0', 'bench', '', '{t}', '{t}', "
        "NULL, NULL)"
    )
    chunk = 100_000
    # A plain engine (the server's emits BEGIN IMMEDIATE, and these PRAGMAs cannot change inside a
    # transaction); pysqlite begins implicitly before the first INSERT. One transaction.
    engine = create_engine(url)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            conn.exec_driver_sql("PRAGMA cache_size=-1000000")
            for start in range(1, n + 1, chunk):
                rows = []
                for i in range(start, min(n + 1, start + chunk)):
                    s = f"{i:016d}"
                    rows.append((i, f"BNCH-{s[:4]}-{s[4:8]}-{s[8:12]}-{s[12:]}", "BNCH" + s))
                conn.exec_driver_sql(lic_sql, rows)
            device_id = 0
            batch: list[tuple[Any, ...]] = []
            for i in range(1, n + 1):
                host = "bench"
                for j in range(per):
                    device_id += 1
                    batch.append((device_id, i, f"hw-{i}-{j}", host))
                if len(batch) >= chunk:
                    conn.exec_driver_sql(dev_sql, batch)
                    batch = []
            if batch:
                conn.exec_driver_sql(dev_sql, batch)
            conn.commit()
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    finally:
        if gc_was:
            gc.enable()
        engine.dispose()


def _copy_field(v: Any) -> str:
    return "\\N" if v is None else str(v)  # bench values carry no tab, newline or backslash


def _seed_postgres(engine: Any, company_id: int, product_id: int, n: int, per: int) -> None:
    t = SEED_TIME.strftime("%Y-%m-%d %H:%M:%S+00")
    lic_tail = "\t".join(_copy_field(v) for v in _license_tail(per, t, "t", "f"))
    dev_tail = "\t".join(_copy_field(v) for v in ("", "", "1.0", "bench", "", t, t, None, None))
    raw = engine.raw_connection()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            # Bulk load: skip the per-row foreign-key triggers (the rows are consistent by
            # construction); the bench cluster's superuser may do this.
            cur.execute("SET session_replication_role = replica")
            rebuild = _drop_secondary_indexes(cur, ("licenses", "devices"))
            with cur.copy(f"COPY licenses ({', '.join(LICENSE_COLUMNS)}) FROM STDIN") as copy:
                for start in range(1, n + 1, 100_000):
                    lines = []
                    for i in range(start, min(n + 1, start + 100_000)):
                        s = f"{i:016d}"
                        lines.append(
                            f"{i}\t{company_id}\t{product_id}\t\\N\t"
                            f"BNCH-{s[:4]}-{s[4:8]}-{s[8:12]}-{s[12:]}\tBNCH{s}\t{lic_tail}\n"
                        )
                    copy.write("".join(lines))
            with cur.copy(f"COPY devices ({', '.join(DEVICE_COLUMNS)}) FROM STDIN") as copy:
                device_id = 0
                lines = []
                for i in range(1, n + 1):
                    for j in range(per):
                        device_id += 1
                        lines.append(
                            f"{device_id}\t{i}\t\\N\thw-{i}-{j}\tt\tf\t\tLinux\tbench\t{dev_tail}\n"
                        )
                    if len(lines) >= 100_000:
                        copy.write("".join(lines))
                        lines = []
                copy.write("".join(lines))
            for table in ("licenses", "devices"):
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            for statement in rebuild:
                cur.execute(statement)
            cur.execute("SET session_replication_role = DEFAULT")
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE licenses")
            cur.execute("VACUUM ANALYZE devices")
        conn.autocommit = False
    finally:
        if gc_was:
            gc.enable()
        raw.close()


def _drop_secondary_indexes(cur: Any, tables: tuple[str, ...]) -> list[str]:
    """Drop unique constraints and plain indexes (not primary keys) of ``tables``; return the
    statements that re-create them. Building an index once over a million sorted rows is cheaper
    than maintaining it row by row."""
    rebuild: list[str] = []
    for table in tables:
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'u'",
            (table,),
        )
        for name, definition in cur.fetchall():
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        cur.execute(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
            (table,),
        )
        for name, definition in cur.fetchall():
            cur.execute(f'DROP INDEX "{name}"')
            rebuild.append(definition)
    return rebuild
