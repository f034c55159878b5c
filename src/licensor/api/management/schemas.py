"""Request bodies of the management API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from licensor.protocol.offline import MAX_FILE_BYTES


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(_no_nul)


def _in_utc(value: datetime) -> datetime:
    if value.tzinfo is None:  # (a time without an offset is UTC)
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise ValueError("must be a time between the years 1 and 9999 in UTC") from None


# A point in time, in UTC.
Instant = Annotated[datetime, AfterValidator(_in_utc)]
Short = Annotated[str, Field(max_length=200), NoNul]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


FieldValue = Annotated[str, Field(max_length=1000), NoNul] | int | float | bool
Code = Annotated[str, Field(min_length=1, max_length=100), NoNul]
DateText = Annotated[str, Field(max_length=40), NoNul]


Consumptions = Annotated[int, Field(ge=0, le=2_000_000_000)]
Period = Literal["daily", "weekly", "monthly", "annually"]


class FeatureOverrides(_Body):
    """What a license may change of its product's feature; null = the product's value."""

    expiry_date: DateText | None = None
    max_consumption: Annotated[int, Field(ge=0, le=2_000_000_000)] | None = None
    floating_users: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    metadata: dict[str, Any] | None = None


class IssueLicenses(_Body):
    product: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    count: Annotated[int, Field(ge=1, le=10_000)] = 1
    license_type: Literal["perpetual", "time-limited", "subscription", "consumption"] = "perpetual"
    enabled: bool = True
    max_activations: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    allow_unlimited_activations: bool = False
    validity_period: Instant | None = None
    validity_days: Annotated[int, Field(ge=1, le=100_000)] | None = None
    start_date: Instant | None = None
    max_transfers: Annotated[int, Field(ge=-1, le=1_000_000)] = 0
    prevent_vm: bool | None = None
    allow_offline_activation: bool | None = None
    is_trial: bool = False
    trial_days: Annotated[int, Field(ge=1, le=100_000)] | None = None
    grace_period: Annotated[int, Field(ge=0, le=100_000)] = 0
    maintenance_period: Instant | None = None
    version_spec: Short | None = None
    max_consumptions: Consumptions = 0
    allow_unlimited_consumptions: bool = False
    allow_overages: bool = False
    max_overages: Consumptions = 0
    allow_negative_consumptions: bool = False
    consumption_period: Period | None = None
    is_floating_cloud: bool | None = None
    floating_users: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    floating_timeout: Annotated[int, Field(ge=0, le=100_000)] | None = None  # minutes
    can_borrow: bool | None = None
    max_borrow_time: Annotated[int, Field(ge=0, le=100_000)] | None = None  # hours
    order_id: Short = ""
    customer_email: Annotated[str, Field(max_length=320), NoNul] | None = None
    license_key: Short | None = None
    user_email: Annotated[str, Field(max_length=320), NoNul] | None = None
    user_password: Annotated[str, Field(min_length=8, max_length=1024)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    custom_fields: dict[str, FieldValue] = Field(default_factory=dict)
    features: dict[str, FeatureOverrides | None] = Field(default_factory=dict)
    policy: Annotated[str, Field(min_length=1, max_length=100), NoNul] | None = None


class UpdateLicense(_Body):
    enabled: bool | None = None
    license_type: Literal["perpetual", "time-limited", "subscription", "consumption"] | None = None
    max_activations: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    allow_unlimited_activations: bool | None = None
    validity_period: Instant | None = None
    start_date: Instant | None = None
    max_transfers: Annotated[int, Field(ge=-1, le=1_000_000)] | None = None
    prevent_vm: bool | None = None
    allow_offline_activation: bool | None = None
    grace_period: Annotated[int, Field(ge=0, le=100_000)] | None = None
    maintenance_period: Instant | None = None
    version_spec: Short | None = None
    max_consumptions: Consumptions | None = None
    allow_unlimited_consumptions: bool | None = None
    allow_overages: bool | None = None
    max_overages: Consumptions | None = None
    allow_negative_consumptions: bool | None = None
    consumption_period: Period | None = None
    reset_consumption: bool | None = None  # false: never reset (clears consumption_period)
    is_floating_cloud: bool | None = None
    floating_users: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    floating_timeout: Annotated[int, Field(ge=0, le=100_000)] | None = None  # minutes
    can_borrow: bool | None = None
    max_borrow_time: Annotated[int, Field(ge=0, le=100_000)] | None = None  # hours
    order_id: Short | None = None
    metadata: dict[str, Any] | None = None
    # merged into the license's values; null clears one (back to the product's default)
    custom_fields: dict[str, FieldValue | None] | None = None


class ExtendLicense(_Body):
    days: Annotated[int, Field(ge=1, le=100_000)] | None = None
    until: Instant | None = None


class CreateToken(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    role: Literal["admin", "support", "read-only"]


class CreateApiKey(_Body):
    read_only: bool = False
    products: list[Annotated[str, Field(max_length=100)]] | None = None
    label: Short = ""


class BlacklistDevice(_Body):
    hardware_id: Annotated[str, Field(min_length=1, max_length=256), NoNul]
    product: Annotated[str, Field(max_length=100), NoNul] | None = None
    reason: Annotated[str, Field(max_length=500), NoNul] = ""


class CreateCustomer(_Body):
    email: Annotated[str, Field(min_length=3, max_length=320), NoNul]
    first_name: Short = ""
    last_name: Short = ""
    company_name: Short = ""
    phone: Annotated[str, Field(max_length=50), NoNul] = ""
    reference: Short = ""


class CreateProduct(_Body):
    short_code: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    name: Short
    authorization_method: Literal["license-key", "user"] = "license-key"
    prevent_vm: bool = False
    allow_offline_activation: bool = True
    version_spec: Short | None = None
    allow_trial: bool = False
    trial_days: Annotated[int, Field(ge=0, le=100_000)] = 0
    is_floating_cloud: bool = False
    floating_users: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    floating_timeout: Annotated[int, Field(ge=0, le=100_000)] = 0
    can_borrow: bool = False
    max_borrow_time: Annotated[int, Field(ge=0, le=100_000)] = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    # a bundle product: the short codes of its (key-based) sub-products
    bundle: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=100), NoNul]],
            Field(min_length=1, max_length=50),
        ]
        | None
    ) = None


class UpdateCompany(_Body):
    allow_password_change: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The fields given (``management.update_company``'s ``changes``)."""
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}


class UpdateProduct(_Body):
    name: Short | None = None
    prevent_vm: bool | None = None
    allow_offline_activation: bool | None = None
    is_floating_cloud: bool | None = None
    floating_users: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    floating_timeout: Annotated[int, Field(ge=0, le=100_000)] | None = None  # minutes
    can_borrow: bool | None = None
    max_borrow_time: Annotated[int, Field(ge=0, le=100_000)] | None = None  # hours

    def changes(self) -> dict[str, Any]:
        """The fields given (``management.update_product``'s ``changes``)."""
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}


class RequestFile(_Body):
    """A request file a customer sent the vendor (its text: base64 of its JSON, v4 §3.5)."""

    request_file: Annotated[str, Field(min_length=1, max_length=MAX_FILE_BYTES)]


Password = Annotated[str, Field(min_length=8, max_length=1024), NoNul]


class CreateLicenseUser(_Body):
    email: Annotated[str, Field(min_length=3, max_length=320), NoNul]
    password: Password
    max_activations: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    first_name: Short = ""
    last_name: Short = ""


class ResetPassword(_Body):
    password: Password | None = None


class CreateOAuthClient(_Body):
    scope: Literal["company", "customer", "license"] = "company"
    customer_id: int | None = None
    license_id: int | None = None


class Rotate(_Body):
    overlap_seconds: Annotated[int, Field(ge=0, le=90 * 24 * 3600)] = 0


Link = Annotated[str, Field(max_length=500), NoNul]


class ReleaseLinks(_Body):
    full: Link = ""
    release_notes: Link = ""
    eula: Link = ""


class CreateRelease(_Body):
    version: Annotated[str, Field(min_length=1, max_length=50), NoNul]
    release_date: Instant
    environment: Annotated[str, Field(max_length=50), NoNul] = ""
    channel: Annotated[str, Field(max_length=50), NoNul] = ""
    enabled: bool = True
    links: ReleaseLinks = Field(default_factory=ReleaseLinks)
    hash_md5: Annotated[str, Field(pattern="^([0-9a-fA-F]{32})?$")] = ""
    size: Annotated[str, Field(pattern="^[0-9]{0,20}$")] = ""  # bytes
    requires_version: Annotated[str, Field(max_length=50), NoNul] = ""


class CreateFeature(_Body):
    code: Code
    name: Short | None = None
    feature_type: Literal["activation", "consumption"] = "activation"
    max_consumption: Consumptions = 0
    allow_unlimited_consumptions: bool = False
    allow_overages: bool = False
    max_overages: Consumptions = 0  # with allow_overages: 0 = no limit
    allow_negative_consumptions: bool = False
    reset_consumption: bool = False
    consumption_period: Period | None = None
    is_floating_cloud: bool = False
    floating_users: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    floating_timeout: Annotated[int, Field(ge=1, le=525_600)] | None = None  # minutes
    can_borrow: bool = False
    max_borrow_time: Annotated[int, Field(ge=0, le=8_760)] = 0  # hours
    expiry_date: DateText | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class UpdateFeature(_Body):
    name: Short | None = None
    feature_type: Literal["activation", "consumption"] | None = None
    max_consumption: Consumptions | None = None
    allow_unlimited_consumptions: bool | None = None
    allow_overages: bool | None = None
    max_overages: Consumptions | None = None
    allow_negative_consumptions: bool | None = None
    reset_consumption: bool | None = None
    consumption_period: Period | None = None
    is_floating_cloud: bool | None = None
    floating_users: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    floating_timeout: Annotated[int, Field(ge=1, le=525_600)] | None = None  # minutes
    can_borrow: bool | None = None
    max_borrow_time: Annotated[int, Field(ge=0, le=8_760)] | None = None  # hours
    expiry_date: DateText | None = None
    metadata: dict[str, Any] | None = None


class AttachFeature(FeatureOverrides):
    code: Code


class CreateCustomField(_Body):
    name: Code
    default_value: FieldValue = ""


class UpdateCustomField(_Body):
    default_value: FieldValue


class PolicySettings(_Body):
    license_type: Literal["perpetual", "time-limited", "subscription", "consumption"] | None = None
    max_activations: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    allow_unlimited_activations: bool | None = None
    validity_days: Annotated[int, Field(ge=1, le=100_000)] | None = None
    validity_period: Instant | None = None
    is_trial: bool | None = None
    trial_days: Annotated[int, Field(ge=1, le=100_000)] | None = None
    max_transfers: Annotated[int, Field(ge=-1, le=1_000_000)] | None = None
    prevent_vm: bool | None = None
    allow_offline_activation: bool | None = None
    grace_period: Annotated[int, Field(ge=0, le=100_000)] | None = None
    maintenance_days: Annotated[int, Field(ge=1, le=100_000)] | None = None
    max_consumptions: Consumptions | None = None
    allow_unlimited_consumptions: bool | None = None
    allow_overages: bool | None = None
    max_overages: Consumptions | None = None
    allow_negative_consumptions: bool | None = None
    consumption_period: Period | None = None
    is_floating_cloud: bool | None = None
    floating_users: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    floating_timeout: Annotated[int, Field(ge=1, le=100_000)] | None = None  # minutes
    can_borrow: bool | None = None
    max_borrow_time: Annotated[int, Field(ge=0, le=100_000)] | None = None  # hours
    custom_fields: dict[str, FieldValue] | None = None
    features: dict[str, FeatureOverrides | None] | None = None
    metadata: dict[str, Any] | None = None
    name: Short | None = None
    is_default: bool | None = None


class CreatePolicy(PolicySettings):
    code: Code
