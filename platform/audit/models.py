"""The activity log: one append-only row per write, whoever made it."""

from django.db import models


class ActorType(models.TextChoices):
    USER = "user", "Person"
    API_KEY = "api_key", "API key"
    SYSTEM = "system", "System"


class ActivityQuerySet(models.QuerySet):
    def search(
        self,
        *,
        actor_type: str = "",
        actor_id: str = "",
        action: str = "",
        object_type: str = "",
        since=None,
        until=None,
    ) -> "ActivityQuerySet":
        qs = self
        if actor_type:
            qs = qs.filter(actor_type=actor_type)
        if actor_id:
            qs = qs.filter(actor_id=actor_id)
        if action:
            qs = qs.filter(action__startswith=action)
        if object_type:
            qs = qs.filter(object_type=object_type)
        if since:
            qs = qs.filter(created_at__gte=since)
        if until:
            qs = qs.filter(created_at__lt=until)
        return qs


class ActivityEntry(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    # Ids, not foreign keys: the log outlives the people and keys it names.
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    objects = ActivityQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "activity entries"

    def __str__(self) -> str:
        return f"{self.actor_label or self.actor_type} {self.action} {self.object_repr}"
