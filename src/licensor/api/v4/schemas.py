"""Request shapes of the License API v4. Lengths match the storage columns; text never carries NUL."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_ID = 2**63 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _fits_lower_cased(value: str) -> str:
    # E-mails are stored lower-cased; some characters grow then ("\u0130" becomes two).
    if len(value.strip().lower()) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters once lower-cased")
    return value


NoNul = AfterValidator(_no_nul)
EMAIL_MAX = 320
Email = Annotated[str, Field(max_length=EMAIL_MAX), NoNul, AfterValidator(_fits_lower_cased)]
HardwareId = Annotated[str, Field(min_length=1, max_length=256), NoNul]
ProductCode = Annotated[str, Field(min_length=1, max_length=100), NoNul]
LicenseKey = Annotated[str, Field(min_length=1, max_length=200), NoNul]
Username = Annotated[str, Field(min_length=1, max_length=320), NoNul]
Password = Annotated[str, Field(min_length=1, max_length=1024), NoNul]
Str50 = Annotated[str, Field(max_length=50), NoNul]
Str64 = Annotated[str, Field(max_length=64), NoNul]
Str200 = Annotated[str, Field(max_length=200), NoNul]
Str255 = Annotated[str, Field(max_length=255), NoNul]
Str320 = Annotated[str, Field(max_length=320), NoNul]
Str500 = Annotated[str, Field(max_length=500), NoNul]
LicenseId = Annotated[int, Field(ge=1, le=MAX_ID)]
VariableName = Annotated[str, Field(min_length=1, max_length=200), NoNul]
VariableValue = Annotated[str, Field(max_length=4000), NoNul] | int | float | bool
Variables = Annotated[dict[VariableName, VariableValue], Field(max_length=100)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class LicenseIdentity(_Request):
    hardware_id: HardwareId
    product: ProductCode
    license_key: LicenseKey | None = None
    username: Username | None = None
    license_id: LicenseId | None = None
    # a bundle's sub-license: the bundle's product code, with the bundle's key (v4 §3.7)
    bundle_code: ProductCode | None = None


class DeviceFields(_Request):
    is_vm: bool = False
    vm_info: Str500 = ""
    os_ver: Str200 = ""
    hostname: Str255 = ""
    os_hostname: Str255 = ""
    ip: Str64 = ""
    ip_local: Str64 = ""
    app_ver: Str64 = ""
    sdk_ver: Str64 = ""
    mac_address: Str64 = ""


class SsoFields(_Request):
    """Single sign-on (SSO-I / SSO-C): ``id_token`` or ``code``, with ``customer_account_code``."""

    customer_account_code: Annotated[str, Field(min_length=1, max_length=100), NoNul] | None = None
    # a JWT (base64url segments and dots): ASCII, so a query holding one stays within what
    # HTTP servers take in a request line (16,000 characters of anything else, percent-encoded,
    # made a URL uvicorn refused before Licensor saw it)
    id_token: (
        Annotated[str, Field(min_length=1, max_length=16000, pattern=r"^[A-Za-z0-9_\-.=+/]+$")]
        | None
    ) = None
    code: Annotated[str, Field(min_length=1, max_length=2000), NoNul] | None = None
    redirect_uri: Annotated[str, Field(min_length=1, max_length=2000), NoNul] | None = None
    nonce: Str255 | None = None


class ActivateRequest(LicenseIdentity, DeviceFields, SsoFields):
    password: Password | None = None
    variables: Variables | None = None


class ActivateBundleRequest(ActivateRequest):
    """``POST /api/v4/activate_bundle`` (v4 §3.7): ``product`` is the bundle's code."""


class CheckQuery(LicenseIdentity, DeviceFields, SsoFields):
    include_expired_features: bool = False


Consumptions = Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000)]


class DeactivateRequest(LicenseIdentity, SsoFields):
    password: Password | None = None
    sdk_ver: Str64 = ""
    # units used since the last report, counted before the seat is freed (consumption licenses)
    consumptions: Consumptions | None = None


class OfflineDeactivateFile(DeactivateRequest):
    """The fields of an offline deactivation file (v4 §3.6): the device's last variables."""

    variables: Variables | None = None


ConsumptionEvent = Literal["consumption_add", "offline_floating_consumptions_sync"]


class AddConsumptionRequest(LicenseIdentity):
    """``POST /api/v4/add_consumption`` (v4 §3.9): ``consumptions`` units (negative: a refund,
    where the license allows it); overages asked for (at most the license's); the event it is
    recorded as."""

    consumptions: Consumptions = 1
    allow_overages: bool | None = None
    max_overages: Annotated[int, Field(ge=0, le=2_000_000_000)] | None = None
    event: Annotated[list[ConsumptionEvent], Field(min_length=1, max_length=1)] | None = None


FeatureCode = Annotated[str, Field(min_length=1, max_length=100), NoNul]


class CheckFeatureQuery(LicenseIdentity):
    """``GET /api/v4/check_license_feature`` (v4 §3.8)."""

    feature: FeatureCode
    include_expired_features: bool = False


class AddFeatureConsumptionRequest(LicenseIdentity):
    """``POST /api/v4/add_feature_consumption`` (v4 §3.10)."""

    feature: FeatureCode
    consumptions: Consumptions = 1
    event: Annotated[list[ConsumptionEvent], Field(min_length=1, max_length=1)] | None = None


class FloatingReleaseRequest(LicenseIdentity):
    """``POST /api/v4/floating/release`` (v4 §3.11)."""

    sdk_ver: Str64 = ""


class FloatingBorrowRequest(LicenseIdentity, SsoFields):
    """``POST /api/v4/floating/borrow`` (v4 §3.12): ``borrowed_until`` an ISO 8601 time or
    date (UTC when it names no zone), or null for as long as the license allows."""

    borrowed_until: Annotated[str, Field(max_length=40), NoNul] | None
    password: Password | None = None
    sdk_ver: Str64 = ""


class FloatingFeatureReleaseRequest(FloatingReleaseRequest):
    """``POST /api/v4/floating/feature_release`` (v4 §3.13)."""

    feature: FeatureCode


class FloatingFeatureBorrowRequest(FloatingBorrowRequest):
    """``POST /api/v4/floating/feature_borrow`` (v4 §3.13): ``null`` borrows for as long as
    the feature's ``max_borrow_time`` allows."""

    feature: FeatureCode


class SsoUrlQuery(_Request):
    product: ProductCode
    customer_account_code: Annotated[str, Field(min_length=1, max_length=100), NoNul]
    response_type: Annotated[str, Field(pattern="^(code|token)$")] = "code"
    redirect_uri: Annotated[str, Field(min_length=1, max_length=2000), NoNul] | None = None


class TrackVariablesRequest(LicenseIdentity):
    variables: Variables


class GetVariablesQuery(LicenseIdentity):
    pass


class VersionsQuery(LicenseIdentity):
    """``GET /api/v4/versions`` (v4 §3.18): an environment and a channel to keep to."""

    env: Str50 | None = None
    channel: Str50 | None = None


class InstallationFileQuery(VersionsQuery):
    """``GET /api/v4/installation_file`` (v4 §3.19): ``version`` (default: the latest the
    license covers)."""

    version: Str50 | None = None


class ProductDetailsQuery(_Request):
    product: ProductCode
    include_latest_version: bool = False
    include_custom_fields: bool = False


class TrialKeyQuery(_Request):
    hardware_id: HardwareId
    product: ProductCode
    license_policy: ProductCode | None = None
    email: Email | None = None
    password: Password | None = None
    first_name: Str200 = ""
    last_name: Str200 = ""
    phone: Str50 = ""


class ChangePasswordRequest(_Request):
    """``POST /api/v4/change_password`` (v4 §3.17): a license user's new password."""

    username: Username
    password: Password
    new_password: Password


class CustomerLicenseUsersQuery(_Request):
    """``GET /api/v4/customer_license_users`` (v4 §3.20): the license users of a customer's
    licenses of a user-based product."""

    product: ProductCode
    customer: Email


class UserLicensesQuery(SsoFields):
    """``GET /api/v4/user_licenses`` (v4 §3.21): a license user's licenses, the user named by
    ``username`` + ``password`` or by single sign-on."""

    product: ProductCode
    username: Username | None = None
    password: Password | None = None
