from rest_framework import serializers, viewsets

from audit.models import ActivityEntry, ActorType
from config.api import QueryFilter, QueryParamFilter


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
    """The brand's activity log, newest first. Filters: actor_type, actor_id, action
    (prefix), object_type, object_id, since, until."""

    serializer_class = ActivitySerializer
    queryset = ActivityEntry.objects.all()
    # A malformed filter is a 400 naming it: `actor_type=robot` must not return everyone.
    filter_backends = [QueryParamFilter]
    query_filters = {
        "actor_type": QueryFilter(
            serializers.ChoiceField(choices=ActorType.choices),
            lambda qs, v: qs.filter(actor_type=v),
            "Who acted: a person, an API key or the system.",
        ),
        "actor_id": QueryFilter(
            serializers.CharField(max_length=64),
            lambda qs, v: qs.filter(actor_id=v),
            "The acting person's or API key's id.",
        ),
        "action": QueryFilter(
            serializers.CharField(max_length=100),
            lambda qs, v: qs.filter(action__startswith=v),
            'Actions starting with this text, e.g. "user." or "apikey.revoked".',
        ),
        "object_type": QueryFilter(
            serializers.CharField(max_length=100),
            lambda qs, v: qs.filter(object_type=v),
            'Object kind as app_label.model, e.g. "accounts.user".',
        ),
        "object_id": QueryFilter(
            serializers.CharField(max_length=64),
            lambda qs, v: qs.filter(object_id=v),
            "The object's id (with object_type).",
        ),
        "since": QueryFilter(
            serializers.DateTimeField(),
            lambda qs, v: qs.filter(created_at__gte=v),
            "Written at or after this time (ISO 8601).",
        ),
        "until": QueryFilter(
            serializers.DateTimeField(),
            lambda qs, v: qs.filter(created_at__lt=v),
            "Written before this time (ISO 8601).",
        ),
    }
    required_permissions = {"list": "activity.view", "retrieve": "activity.view"}
