"""Tables. Relationships are never loaded implicitly: repositories say what they need."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from licensor.core import features as feature_rules

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, whatever the database stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class Company(Base):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    oauth_required: Mapped[bool] = mapped_column(Boolean, default=False)
    # License users may change their password (POST /api/v4/change_password).
    allow_password_change: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true()
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    api_key: Mapped[str] = mapped_column(String(64), unique=True)
    # The shared key is needed in clear to verify HMACs, so it is encrypted with the master key.
    shared_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    label: Mapped[str] = mapped_column(String(200), default="")
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # null = every product of the company; else a list of product ids
    allowed_product_ids: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # After a rotation with an overlap window: the previous shared key, valid until then.
    previous_shared_key_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(nullable=True)


class OAuthClient(Base):
    __tablename__ = "oauth_clients"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(100), unique=True)
    # Only verification is needed: a keyed hash of a high-entropy secret.
    secret_hash: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(20))  # company | customer | license
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), nullable=True
    )
    license_id: Mapped[int | None] = mapped_column(
        ForeignKey("licenses.id", ondelete="CASCADE"), nullable=True
    )
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # After a rotation with an overlap window: the previous secret's hash, valid until then.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(nullable=True)
    # Offline request files are signed with the client secret (v4 §2.4), so the secret is also
    # kept encrypted with the master key (null for a client made before migration 0011: it
    # signs offline files once rotated).
    secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("company_id", "short_code"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    short_code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    authorization_method: Mapped[str] = mapped_column(String(20), default="license-key")
    prevent_vm: Mapped[bool] = mapped_column(Boolean, default=False)
    # Offline activation (request and license files): on unless the vendor turns it off here,
    # on a policy or on a license.
    allow_offline_activation: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true()
    )
    version_spec: Mapped[str | None] = mapped_column(String(200), nullable=True)
    allow_trial: Mapped[bool] = mapped_column(Boolean, default=False)
    trial_days: Mapped[int] = mapped_column(Integer, default=0)
    trial_max_activations: Mapped[int] = mapped_column(Integer, default=1)
    # Floating cloud licenses (v4 §5.5; licenses may override each): at most floating_users
    # devices hold a slot at once; a slot not refreshed within floating_timeout minutes is free.
    floating_timeout: Mapped[int] = mapped_column(Integer, default=0)  # minutes; 0 = 5
    is_floating_cloud: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    floating_users: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    can_borrow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    max_borrow_time: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # hours
    custom_fields: Mapped[list[Any]] = mapped_column(JSON, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # QLM-style activation (DECISIONS §5); licenses may override the limits.
    max_activations_per_system: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )  # 0 = no limit
    max_activations_per_system_vm_only: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    max_release_count: Mapped[int] = mapped_column(
        Integer, default=-1, server_default="-1"
    )  # -1 = unlimited
    max_release_period_days: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )  # 0 = count every release ever made
    release_requires_deactivation_code: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Which fields find a license in "activate by field"; null = OrderID and ReceiptID.
    activation_lookup_fields: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # Feature definitions (core.features): read with the product, no extra query on checks.
    features: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    # A bundle product: the short codes of its sub-products, in order (null: not a bundle). Its
    # licenses hold one sub-license per sub-product (core.keys.bundle_key_lookup).
    bundle_items: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)


class ProductRelease(Base):
    __tablename__ = "product_releases"
    __table_args__ = (UniqueConstraint("product_id", "version", "environment"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(50))
    environment: Mapped[str] = mapped_column(String(50), default="")
    channel: Mapped[str] = mapped_column(String(50), default="")
    release_date: Mapped[datetime] = mapped_column()
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    full_link: Mapped[str] = mapped_column(String(500), default="")
    release_notes_link: Mapped[str] = mapped_column(String(500), default="")
    eula_link: Mapped[str] = mapped_column(String(500), default="")
    hash_md5: Mapped[str] = mapped_column(String(64), default="")
    size: Mapped[str] = mapped_column(String(32), default="")
    requires_version: Mapped[str] = mapped_column(String(50), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("company_id", "email"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    company_name: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(50), default="")
    reference: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(500), default="")
    city: Mapped[str] = mapped_column(String(200), default="")
    postcode: Mapped[str] = mapped_column(String(50), default="")
    state: Mapped[str] = mapped_column(String(200), default="")
    country: Mapped[str] = mapped_column(String(200), default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    privacy_consent: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    privacy_consent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Users whose e-mail shares this customer's domain may ask for its licenses (QLM's
    # AllowOrganizationUsersToAcquireLicenses).
    allow_organization_users: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Customer account for activation by username and password (Argon2id); null = none.
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)


class License(Base):
    __tablename__ = "licenses"
    __table_args__ = (
        UniqueConstraint("company_id", "key_lookup"),
        UniqueConstraint("product_id", "trial_hardware_id"),
        Index("ix_licenses_company_order", "company_id", "order_store_id"),
        Index("ix_licenses_customer", "customer_id"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), nullable=True
    )
    license_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    key_lookup: Mapped[str | None] = mapped_column(String(200), nullable=True)
    license_type: Mapped[str] = mapped_column(String(20), default="perpetual")
    is_trial: Mapped[bool] = mapped_column(Boolean, default=False)
    trial_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    trial_hardware_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    validity_period: Mapped[datetime | None] = mapped_column(nullable=True)
    validity_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    start_date: Mapped[datetime | None] = mapped_column(nullable=True)
    allow_grace_period: Mapped[bool] = mapped_column(Boolean, default=False)
    grace_period: Mapped[int] = mapped_column(Integer, default=0)  # hours
    enable_maintenance_period: Mapped[bool] = mapped_column(Boolean, default=False)
    maintenance_period: Mapped[datetime | None] = mapped_column(nullable=True)
    max_activations: Mapped[int] = mapped_column(Integer, default=1)
    allow_unlimited_activations: Mapped[bool] = mapped_column(Boolean, default=False)
    times_activated: Mapped[int] = mapped_column(Integer, default=0)
    max_transfers: Mapped[int] = mapped_column(Integer, default=0)
    transfer_count: Mapped[int] = mapped_column(Integer, default=0)
    last_deactivated_hardware_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    prevent_vm: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # null = product's
    allow_offline_activation: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # idem
    version_spec: Mapped[str | None] = mapped_column(String(200), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    order_store_id: Mapped[str] = mapped_column(String(200), default="")
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    max_consumptions: Mapped[int] = mapped_column(Integer, default=0)
    total_consumptions: Mapped[int] = mapped_column(Integer, default=0)
    allow_unlimited_consumptions: Mapped[bool] = mapped_column(Boolean, default=False)
    # Consumption (v4 §5.7, core.consumption): overages past max_consumptions (0 with
    # allow_overages: no limit), negative reports, and a reset of the total at the start of
    # each period (judged when read: a total last counted before the current period is 0).
    allow_overages: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    max_overages: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    allow_negative_consumptions: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    consumption_period: Mapped[str | None] = mapped_column(String(10), nullable=True)
    consumption_counted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # floating cloud (null = the product's value)
    is_floating_cloud: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    floating_users: Mapped[int | None] = mapped_column(Integer, nullable=True)
    floating_timeout: Mapped[int | None] = mapped_column(Integer, nullable=True)
    can_borrow: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    max_borrow_time: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_activated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    receipt_id: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # QLM features: 4 sets x 8 flags (protocol.computer_key.feature_bit).
    feature_flags: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # null = the product's value
    max_activations_per_system: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_release_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_release_period_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Attached product features by code, with per-license overrides (core.features).
    features: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    # The policy it was issued from (no foreign key: adding one rebuilds the table on SQLite).
    policy_id: Mapped[int | None] = mapped_column(Id, nullable=True)

    def product_features(self, product: Product, now: datetime) -> list[dict[str, Any]]:
        """The License API's ``product_features`` (attached, not expired), from loaded JSON."""
        return feature_rules.product_features(product.features, self.features, now)


class LicenseUser(Base):
    __tablename__ = "license_users"
    __table_args__ = (
        UniqueConstraint("license_id", "email"),
        Index("ix_license_users_email", "email"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))  # lower-cased; the username
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    phone_number: Mapped[str] = mapped_column(String(50), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    is_initial_password: Mapped[bool] = mapped_column(Boolean, default=True)
    max_activations: Mapped[int] = mapped_column(Integer, default=1)
    allow_unlimited_activations: Mapped[bool] = mapped_column(Boolean, default=False)
    total_activations: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("license_id", "hardware_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    license_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("license_users.id", ondelete="SET NULL"), nullable=True
    )
    hardware_id: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_vm: Mapped[bool] = mapped_column(Boolean, default=False)
    vm_info: Mapped[str] = mapped_column(String(500), default="")
    os_ver: Mapped[str] = mapped_column(String(200), default="")
    hostname: Mapped[str] = mapped_column(String(255), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    ip_local: Mapped[str] = mapped_column(String(64), default="")
    app_ver: Mapped[str] = mapped_column(String(64), default="")
    sdk_ver: Mapped[str] = mapped_column(String(64), default="")
    mac_address: Mapped[str] = mapped_column(String(64), default="")
    first_activated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_check_at: Mapped[datetime | None] = mapped_column(nullable=True)
    deactivated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    computer_type: Mapped[str] = mapped_column(String(10), default="", server_default="")
    affiliate_id: Mapped[str] = mapped_column(String(200), default="", server_default="")
    user_data: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Activations of this license on this computer (QLM's ActivationCount, for
    # max_activations_per_system); re-activations count unless told not to.
    activation_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The last Computer Key issued to this computer (checks Deactivation Verification Codes).
    computer_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The answers' ``license_signature`` for this device, made when it was activated
    # (``Keyring.stored_signature``: key id, digest of the signed string, signature), so that a
    # check need not sign it again; ignored when the string or the key changed since.
    license_signature: Mapped[str | None] = mapped_column(Text, nullable=True)


class DeviceVariable(Base):
    __tablename__ = "device_variables"
    __table_args__ = (UniqueConstraint("device_id", "variable"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    variable: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LicenseEvent(Base):
    """History of seats: activation, deactivation, transfer. ``transfer_count`` is provable from it."""

    __tablename__ = "license_events"
    __table_args__ = (Index("ix_license_events_license", "license_id", "id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    device_id: Mapped[int | None] = mapped_column(Id, nullable=True)
    hardware_id: Mapped[str] = mapped_column(String(256), default="")
    event: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LicenseRelease(Base):
    """Releases (deactivations) asked for by customers: MaxReleaseCount is counted from here."""

    __tablename__ = "license_releases"
    __table_args__ = (Index("ix_license_releases_license", "license_id", "released_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    device_id: Mapped[int | None] = mapped_column(Id, nullable=True)
    hardware_id: Mapped[str] = mapped_column(String(256))
    method: Mapped[str] = mapped_column(String(30))  # online | deactivation_code
    released_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthorizationCode(Base):
    """A 6-digit code e-mailed for activation: stored only as a keyed hash, 10 minutes, 5 tries."""

    __tablename__ = "authorization_codes"
    __table_args__ = (
        Index("ix_authorization_codes_email", "company_id", "email"),
        Index("ix_authorization_codes_hardware", "company_id", "hardware_id"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    hardware_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    code_hash: Mapped[str] = mapped_column(String(128))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class BlacklistEntry(Base):
    __tablename__ = "blacklist"
    __table_args__ = (
        UniqueConstraint("company_id", "hardware_id", "product_id"),
        Index("ix_blacklist_lookup", "company_id", "hardware_id"),
        # NULL product = company-wide; a plain unique constraint lets NULLs repeat.
        Index(
            "uq_blacklist_company_wide",
            "company_id",
            "hardware_id",
            unique=True,
            sqlite_where=text("product_id IS NULL"),
            postgresql_where=text("product_id IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    hardware_id: Mapped[str] = mapped_column(String(256))
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), nullable=True
    )
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FloatingSlot(Base):
    """A device's slot of a floating cloud license (``feature`` '') or of one of its floating
    features (``feature``: its code): held while ``expires_at`` (the last refresh plus the
    timeout) or ``borrowed_until`` is in the future, judged when read."""

    __tablename__ = "floating_slots"
    __table_args__ = (
        UniqueConstraint("device_id", "feature"),
        Index("ix_floating_slots_license", "license_id"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    feature: Mapped[str] = mapped_column(String(100), default="", server_default="")
    taken_at: Mapped[datetime] = mapped_column()  # when this hold began
    refreshed_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    borrowed_until: Mapped[datetime | None] = mapped_column(nullable=True)


class ConsumptionEvent(Base):
    """A consumption report counted on a license (``add_consumption``, a deactivation or an
    offline deactivation that carried one): the license's consumption history."""

    __tablename__ = "consumption_events"
    __table_args__ = (Index("ix_consumption_events_license", "license_id", "id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    device_id: Mapped[int | None] = mapped_column(Id, nullable=True)
    hardware_id: Mapped[str] = mapped_column(String(256), default="")
    feature: Mapped[str | None] = mapped_column(String(100), nullable=True)  # a feature's report
    # consumption_add | offline_floating_consumptions_sync | deactivation | offline_deactivation
    event: Mapped[str] = mapped_column(String(40))
    consumptions: Mapped[int] = mapped_column(Integer)
    total_after: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("company_id", "key"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdminToken(Base):
    """Management API bearer tokens: shown once at creation, stored only as a keyed hash."""

    __tablename__ = "admin_tokens"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # admin | support | read-only
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AuditEntry(Base):
    """Who changed what, when, with the state before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_company", "company_id", "id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str] = mapped_column(String(100))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomerAccount(Base):
    """A vendor's business customer (an organisation with a code) whose users log in through the
    organisation's OpenID Connect provider (single sign-on)."""

    __tablename__ = "customer_accounts"
    __table_args__ = (UniqueConstraint("company_id", "code"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), default="")
    # OpenID Connect; a null issuer = SSO not configured.
    oidc_issuer: Mapped[str | None] = mapped_column(String(500), nullable=True)
    oidc_client_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Needed in clear at the token endpoint, so encrypted with the master key.
    oidc_client_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    oidc_redirect_uris: Mapped[list[Any]] = mapped_column(JSON, default=list)
    oidc_email_claim: Mapped[str] = mapped_column(String(100), default="email")
    # Unknown users who log in become license users of this license; null = refused.
    auto_create_license_id: Mapped[int | None] = mapped_column(
        ForeignKey("licenses.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LicensePolicy(Base):
    """A template for issuing licenses of one product; at most one is the product's default."""

    __tablename__ = "license_policies"
    __table_args__ = (
        UniqueConstraint("product_id", "code"),
        Index(
            "uq_license_policies_default",
            "product_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    license_type: Mapped[str] = mapped_column(String(20), default="perpetual")
    max_activations: Mapped[int] = mapped_column(Integer, default=1)
    allow_unlimited_activations: Mapped[bool] = mapped_column(Boolean, default=False)
    validity_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    validity_period: Mapped[datetime | None] = mapped_column(nullable=True)
    is_trial: Mapped[bool] = mapped_column(Boolean, default=False)
    trial_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_transfers: Mapped[int] = mapped_column(Integer, default=0)
    prevent_vm: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    allow_offline_activation: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    grace_period: Mapped[int] = mapped_column(Integer, default=0)  # hours
    maintenance_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # consumption terms (as a license's)
    max_consumptions: Mapped[int] = mapped_column(Integer, default=0)
    allow_unlimited_consumptions: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_overages: Mapped[bool] = mapped_column(Boolean, default=False)
    max_overages: Mapped[int] = mapped_column(Integer, default=0)
    allow_negative_consumptions: Mapped[bool] = mapped_column(Boolean, default=False)
    consumption_period: Mapped[str | None] = mapped_column(String(10), nullable=True)
    # floating cloud terms; None: the product's
    is_floating_cloud: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    floating_users: Mapped[int | None] = mapped_column(Integer, nullable=True)
    floating_timeout: Mapped[int | None] = mapped_column(Integer, nullable=True)
    can_borrow: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    max_borrow_time: Mapped[int | None] = mapped_column(Integer, nullable=True)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    features: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RateLimitCounter(Base):
    """Failed attempts of one bucket (a client address, a license identity) in its current
    window (services/rate_limit.py). Identities are stored hashed: a guessed key never lands
    in the database in clear."""

    __tablename__ = "rate_limit_counters"
    bucket: Mapped[str] = mapped_column(String(100), primary_key=True)
    window_start: Mapped[datetime] = mapped_column()
    failures: Mapped[int] = mapped_column(Integer, default=0)


class OfflineRequest(Base):
    """An offline request file taken (v4 §3.5-3.6): its ``request_id`` is one-shot per license,
    so the same file sent twice changes nothing the second time."""

    __tablename__ = "offline_requests"
    __table_args__ = (
        UniqueConstraint("license_id", "request_id"),
        # the replay check: a request id for a device, on any of the company's licenses
        Index("ix_offline_requests_lookup", "request_id", "hardware_id"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(String(100))
    request: Mapped[str] = mapped_column(String(20))  # activation | deactivation
    hardware_id: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleUser(Base):
    """A person who signs in to the web console (``/console``): an e-mail and an Argon2id
    password, with one of the management API's roles on one company."""

    __tablename__ = "console_users"
    __table_args__ = (UniqueConstraint("email"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))  # lower-cased
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # admin | support | read-only
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ConsoleSession(Base):
    """A signed-in console session: the cookie's token is kept only as a keyed hash."""

    __tablename__ = "console_sessions"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
