"""Consumption reports kept on this computer until the server has counted them.

``client.add_consumption(n)`` first writes the report to ``<product>.consumptions.json`` in the
storage directory (atomically, under the store's lock), with an id of its own, then sends every
report still there, oldest first, each with its id as the ``Idempotency-Key``: a report whose
answer was lost is sent again and the server counts it once (it keeps the answer of a key for
``LICENSOR_IDEMPOTENCY_TTL_HOURS``, 24 h by default). A report is removed once the server
counted it, or refused it (a refusal is a verdict: sending it again would not change it).
While the server cannot be reached the reports wait, and go with the next call.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from licensor.client._store import safe_name, write_atomically
from licensor.protocol.signing import compact_json

FORMAT = 1


@dataclass(frozen=True, slots=True)
class Consumption:
    """Where a license's consumption stands after the reports were sent: the server's total
    and terms (``None`` when no report reached it: all still ``pending``)."""

    total_consumptions: int | None
    max_consumptions: int | None
    allow_unlimited_consumptions: bool | None
    allow_overages: bool | None
    max_overages: int | None
    consumption_period: str | None
    pending: int  # reports kept on this computer, sent with the next call

    @classmethod
    def of(cls, answer: Any, pending: int) -> Consumption:
        data = answer if isinstance(answer, dict) else {}

        def number(name: str) -> int | None:
            value = data.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        def flag(name: str) -> bool | None:
            value = data.get(name)
            return value if isinstance(value, bool) else None

        period = data.get("consumption_period")
        return cls(
            total_consumptions=number("total_consumptions"),
            max_consumptions=number("max_consumptions"),
            allow_unlimited_consumptions=flag("allow_unlimited_consumptions"),
            allow_overages=flag("allow_overages"),
            max_overages=number("max_overages"),
            consumption_period=period if isinstance(period, str) else None,
            pending=pending,
        )


@dataclass(frozen=True, slots=True)
class Report:
    id: str
    count: int
    at: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "count": self.count, "at": self.at}


class Journal:
    """The reports of one product not counted yet (call under the store's lock)."""

    def __init__(self, directory: str, product: str) -> None:
        self.path = os.path.join(directory, f"{safe_name(product)}.consumptions.json")

    def load(self) -> list[Report]:
        try:
            with open(self.path, "rb") as handle:
                data = json.loads(handle.read())
        except FileNotFoundError:
            return []
        except ValueError:
            return []  # (written atomically: only a hand-edited file fails to parse)
        reports = data.get("reports") if isinstance(data, dict) else None
        found = []
        for item in reports if isinstance(reports, list) else []:
            if (
                isinstance(item, dict)
                and isinstance(item.get("id"), str)
                and isinstance(item.get("count"), int)
                and isinstance(item.get("at"), str)
            ):
                found.append(Report(item["id"], item["count"], item["at"]))
        return found

    def save(self, reports: list[Report]) -> None:
        if not reports:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            return
        content = compact_json({"format": FORMAT, "reports": [r.to_json() for r in reports]})
        write_atomically(self.path, content)

    def add(self, count: int, now: datetime) -> list[Report]:
        """Keep a new report of ``count``; all the reports now waiting."""
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError("count must be an int")
        reports = [*self.load(), Report(str(uuid.uuid4()), count, now.isoformat())]
        self.save(reports)
        return reports
