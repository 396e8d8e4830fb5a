from rest_framework import serializers, viewsets

from audit.models import ActivityEntry, ActorType


class ActivitySerializer(serializers.ModelSerializer):
    class Meta:
        model = ActivityEntry
        fields = [
            "id",
            "created_at",
            "actor_type",
            "actor_id",
            "actor_label",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "request_id",
        ]
        read_only_fields = fields


class ActivityViewSet(viewsets.ReadOnlyModelViewSet):
    """The brand's activity log, newest first. Filters: actor_type, action (prefix),
    object_type."""

    serializer_class = ActivitySerializer
    required_permissions = {"list": "activity.view", "retrieve": "activity.view"}

    def get_queryset(self):
        params = self.request.query_params
        actor_type = params.get("actor_type", "")
        return ActivityEntry.objects.search(
            actor_type=actor_type if actor_type in ActorType.values else "",
            action=params.get("action", ""),
            object_type=params.get("object_type", ""),
        )
