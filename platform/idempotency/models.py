from django.db import models


class IdempotencyRecord(models.Model):
    """The stored outcome of a POST made with an `Idempotency-Key` header.

    Keys are scoped to the caller (API key or person) inside the brand's schema, so two
    partners, or two brands, can use the same key without meeting.
    """

    principal = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # sha256 of method, path and body
    status_code = models.PositiveSmallIntegerField()
    body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["principal", "key"], name="idempotency_key_once")
        ]

    def __str__(self) -> str:
        return f"{self.principal}:{self.key}"
