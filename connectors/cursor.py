"""A resumable cursor for "everything changed since T" pulls over paginated APIs.

Most vendor APIs offer a filter on ``updated_at`` plus page links (``Link`` headers,
``next-page`` headers, body cursors). :class:`PassCursor` turns that into the contract
:class:`~connectors.types.PullResult` promises:

- *mid-pass* it carries the vendor's next-page reference, so a sync killed after storing a
  page resumes on the next one;
- *between passes* it carries a watermark: the newest ``updated_at`` seen, but never later
  than the pass's start minus an overlap — an object updated while we paginated can move
  behind our position, and vendors' lists are only eventually consistent. Re-reading the
  overlap produces duplicates, which the platform's idempotent upserts absorb; skipping
  would lose data.

The encoded form is compact JSON, opaque to the platform.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from connectors.errors import PermanentError
from connectors.types import utc

__all__ = ["PassCursor"]


def _iso(value: datetime | None) -> str | None:
    return utc(value).isoformat() if value is not None else None


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class PassCursor:
    """State of a changed-since pull. See the module docstring."""

    VERSION = 1

    def __init__(
        self,
        *,
        next_page: str | None = None,
        since: datetime | None = None,
        started: datetime | None = None,
        max_seen: datetime | None = None,
        watermark: datetime | None = None,
    ) -> None:
        self.next_page = next_page
        self.since = since
        self.started = started
        self.max_seen = max_seen
        self.watermark = watermark

    @classmethod
    def decode(cls, cursor: str | None) -> PassCursor:
        """Parse a cursor this class encoded; ``None`` or empty starts fresh."""
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            if not isinstance(data, dict) or data.get("v") != cls.VERSION:
                raise ValueError
            return cls(
                next_page=data.get("next"),
                since=_time(data.get("since")),
                started=_time(data.get("started")),
                max_seen=_time(data.get("max")),
                watermark=_time(data.get("watermark")),
            )
        except (ValueError, TypeError):
            raise PermanentError("unreadable cursor") from None

    def encode(self) -> str:
        data = {
            "v": self.VERSION,
            "next": self.next_page,
            "since": _iso(self.since),
            "started": _iso(self.started),
            "max": _iso(self.max_seen),
            "watermark": _iso(self.watermark),
        }
        return json.dumps({k: v for k, v in data.items() if v is not None}, sort_keys=True)

    @property
    def mid_pass(self) -> bool:
        return self.next_page is not None

    def begin(
        self, *, default_since: datetime, updated_since: datetime | None, now: datetime
    ) -> datetime:
        """Start a pass; return the ``updated_at`` lower bound to request.

        The stored watermark wins over ``updated_since`` (the caller's initial backfill
        point), which wins over ``default_since``.
        """
        since = self.watermark or (utc(updated_since) if updated_since else None) or default_since
        self.restart(since=since, now=now)
        return since

    def restart(self, *, since: datetime, now: datetime) -> None:
        """(Re)start a pass at ``since`` — also used when a vendor expired our page link."""
        self.next_page = None
        self.since = utc(since)
        self.started = utc(now)
        self.max_seen = None
        self.watermark = None

    def see(self, updated: Iterable[datetime]) -> None:
        """Record the ``updated_at`` values of a page's items."""
        newest = max(updated, default=None)
        if newest is not None and (self.max_seen is None or newest > self.max_seen):
            self.max_seen = utc(newest)

    def advance(self, next_page: str | None, *, now: datetime, overlap: timedelta) -> bool:
        """After a page: continue with ``next_page``, or close the pass. Returns has_more."""
        if next_page:
            self.next_page = next_page
            return True
        since = self.since or utc(now)
        ceiling = (self.started or utc(now)) - overlap
        newest = min(self.max_seen, ceiling) if self.max_seen is not None else ceiling
        self.watermark = max(since, newest)
        self.next_page = None
        self.since = self.started = self.max_seen = None
        return False
