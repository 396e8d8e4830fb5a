"""Helpers both LTL connectors share: vendor timestamps, addresses, quote ownership and the
mapping from freight milestones to the parcel SDK's tracking events."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from connectors.errors import PermanentError
from connectors.freight import FreightQuote, FreightStatus
from connectors.types import Address, ConnectorInfo, TrackingEvent


def parse_time(value: Any, *, what: str) -> datetime:
    """An ISO 8601 timestamp with an offset; a vendor omitting the offset is a vendor bug we
    refuse rather than guess a zone for."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise PermanentError(f"unreadable {what} timestamp from the vendor") from None
    if parsed.tzinfo is None:
        raise PermanentError(f"{what} timestamp from the vendor has no UTC offset")
    return parsed


def parse_date(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def address_json(address: Address) -> dict[str, str]:
    return {
        "name": address.name,
        "company": address.company,
        "line1": address.line1,
        "line2": address.line2,
        "city": address.city,
        "state": address.region,
        "postal_code": address.postal_code,
        "country": address.country,
        "phone": address.phone,
        "email": address.email,
    }


def require_own_quote(info: ConnectorInfo, quote: FreightQuote) -> None:
    # Offer ids are only meaningful to the source that issued them; booking another
    # source's quote here would book whatever offer happens to share the id, or fail late.
    if quote.source != info.name:
        raise PermanentError(
            f"{info.name}: cannot book a quote from {quote.source!r}; book it through that source"
        )


def tracking_events(status: FreightStatus, tracking_number: str) -> list[TrackingEvent]:
    """The freight milestones as parcel-style tracking events, oldest first."""
    return [
        TrackingEvent(
            tracking_number=tracking_number,
            status=event.tracking_status(),
            occurred_at=event.occurred_at,
            description=event.description,
            location=event.location,
        )
        for event in status.events
    ]
