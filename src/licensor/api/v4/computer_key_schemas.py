"""Request shapes of the QLM-style activation endpoints (``/api/v4/activate_license_by_*``...)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from licensor.api.v4.schemas import (
    DeviceFields,
    HardwareId,
    LicenseKey,
    NoNul,
    Password,
    ProductCode,
    Str200,
    Str320,
    Username,
    _Request,
)

Str4000 = Annotated[str, Field(max_length=4000), NoNul]
Email = Annotated[str, Field(min_length=3, max_length=320), NoNul]
AuthorizationCodeText = Annotated[str, Field(min_length=1, max_length=20), NoNul]
ComputerKeyText = Annotated[str, Field(min_length=1, max_length=2000), NoNul]
DeactivationCode = Annotated[str, Field(min_length=1, max_length=50), NoNul]
FieldName = Annotated[str, Field(min_length=1, max_length=50), NoNul]
FieldValue = Annotated[str, Field(min_length=1, max_length=200), NoNul]


class ActivationOptions(DeviceFields):
    """QLM's "Ex" options; ``computer_name`` is the display name (``hostname`` also works)."""

    computer_name: Annotated[str, Field(max_length=255), NoNul] = ""
    user_data: Str4000 = ""
    affiliate_id: Str200 = ""
    computer_type: Literal["", "PC", "VM"] = ""
    increment_activation_count: bool = True


class CustomerFields(_Request):
    email: Email
    full_name: Str200 = ""
    company: Str200 = ""
    privacy_consent: bool | None = None


class ActivateByKeyRequest(ActivationOptions):
    hardware_id: HardwareId
    product: ProductCode
    license_key: LicenseKey
    customer: CustomerFields | None = None


class RequestAuthorizationCodeRequest(_Request):
    email: Email
    product: ProductCode | None = None
    hardware_id: HardwareId | None = None


class ActivateByCodeRequest(ActivationOptions):
    hardware_id: HardwareId
    authorization_code: AuthorizationCodeText
    email: Str320 | None = None
    product: ProductCode | None = None


class ActivateByFieldRequest(ActivationOptions):
    hardware_id: HardwareId
    product: ProductCode
    field: FieldName
    value: FieldValue
    email: Email


class ActivateByCredentialsRequest(ActivationOptions):
    hardware_id: HardwareId
    username: Username
    password: Password
    product: ProductCode | None = None


class ComputerKeyRequest(DeviceFields):
    hardware_id: HardwareId
    product: ProductCode
    license_key: LicenseKey


class ValidateComputerKeyRequest(DeviceFields):
    hardware_id: HardwareId
    computer_key: ComputerKeyText
    product: ProductCode | None = None
    license_key: LicenseKey | None = None


class ReleaseRequest(_Request):
    hardware_id: HardwareId
    product: ProductCode
    license_key: LicenseKey
    deactivation_code: DeactivationCode | None = None


class PrivacyConsentRequest(_Request):
    email: Email
    consent: bool
    license_key: LicenseKey | None = None
