"""File storage per brand on S3 (django-storages), the counterpart of django-tenants'
TenantFileSystemStorage used by default.

Every name is stored under the brand's schema (`<location>/<schema>/<name>`), so one
brand's labels, bills of lading and proofs of delivery can never be read, listed or
overwritten through another brand's storage. Chosen with `KEEL_FILE_STORAGE=s3` (see
config.settings).
"""

from __future__ import annotations

from django.core.exceptions import SuspiciousOperation
from django.db import connection
from storages.backends.s3 import S3Storage
from storages.utils import safe_join


class TenantS3Storage(S3Storage):
    def _normalize_name(self, name: str) -> str:
        # Every operation (save, open, exists, url, delete) goes through here. Joining
        # under the brand's own prefix (not the bucket-wide location) makes "../" that
        # would reach another brand's files a refused path, not a cross-brand read.
        base = (
            f"{self.location}/{connection.schema_name}" if self.location else connection.schema_name
        )
        try:
            return safe_join(base, name)
        except ValueError as exc:
            raise SuspiciousOperation(f"Attempted access to '{name}' denied.") from exc
