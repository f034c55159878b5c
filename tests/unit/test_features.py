"""The pure rules of product features and custom fields: no database, ``now`` given."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from licensor.core import custom_fields, features
from licensor.core.errors import LicensorError

NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)
DEFINITIONS = [
    {"id": 1, "code": "export", "name": "Export", "feature_type": "activation"},
    {
        "id": 2,
        "code": "credits",
        "name": "Credits",
        "feature_type": "consumption",
        "max_consumption": 100,
        "metadata": {"unit": "page"},
    },
    {"id": 3, "code": "beta", "name": "Beta", "expiry_date": "2027-03-01T12:00:00.000Z"},
]


def test_only_attached_unexpired_features_are_listed_in_the_products_order() -> None:
    attached = {"beta": {}, "credits": {"max_consumption": 5}, "export": {}, "gone": {}}
    listed = features.product_features(DEFINITIONS, attached, NOW)
    assert [f["code"] for f in listed] == ["export", "credits"]  # beta expired at NOW exactly
    credits = listed[1]
    assert (credits["id"], credits["max_consumption"], credits["metadata"]) == (
        2,
        5,
        {"unit": "page"},
    )
    assert credits["total_consumptions"] == 0
    assert features.product_features(DEFINITIONS, {}, NOW) == []
    assert features.product_features(None, None, NOW) == []


def test_a_license_override_moves_the_expiry_both_ways() -> None:
    later = {"beta": {"expiry_date": "2027-04-01T00:00:00.000Z"}}
    assert [f["code"] for f in features.product_features(DEFINITIONS, later, NOW)] == ["beta"]
    sooner = {"export": {"expiry_date": "2027-02-28T00:00:00.000Z"}}
    assert features.product_features(DEFINITIONS, sooner, NOW) == []
    (beta,) = features.product_features(DEFINITIONS, later, NOW)
    assert beta["expiry_date"] == "2027-04-01T00:00:00.000Z"


def test_definitions_and_attachments_are_validated_naming_the_field() -> None:
    made = features.checked_definition({"code": "new", "expiry_date": "2030-01-01"}, DEFINITIONS)
    assert (made["id"], made["name"], made["expiry_date"]) == (4, "new", "2030-01-01T00:00:00.000Z")
    for fields, named in [
        ({"code": "export"}, "code"),
        ({"code": "a b"}, "code"),
        ({"code": "x", "feature_type": "other"}, "feature_type"),
        ({"code": "x", "max_consumption": 4}, "max_consumption"),
        ({"code": "x", "feature_type": "consumption", "max_consumption": -4}, "max_consumption"),
        ({"code": "x", "metadata": []}, "metadata"),
    ]:
        with pytest.raises(LicensorError) as caught:
            features.checked_definition(fields, DEFINITIONS)
        assert named in caught.value.message
    with pytest.raises(LicensorError) as caught:
        features.checked_attachments(DEFINITIONS, {"nope": {}})
    assert (caught.value.code, "nope" in caught.value.message) == ("unknown_feature", True)
    with pytest.raises(LicensorError, match=r"features\.export\.max_consumption"):
        features.checked_attachments(DEFINITIONS, {"export": {"max_consumption": 3}})
    assert features.checked_attachments(DEFINITIONS, {"export": None}) == {"export": {}}


def test_custom_field_values_must_be_defined_and_null_clears() -> None:
    defined = [{"name": "seat", "default_value": "A"}]
    assert custom_fields.checked_values(defined, {"seat": 3}) == {"seat": "3"}
    with pytest.raises(LicensorError) as caught:
        custom_fields.checked_values(defined, {"colour": "red"})
    assert caught.value.code == "unknown_custom_field"
    assert "colour" in caught.value.message
    assert custom_fields.merged({"seat": "B"}, {"seat": None}) == {}
    assert custom_fields.merged({}, {"seat": "C"}) == {"seat": "C"}
