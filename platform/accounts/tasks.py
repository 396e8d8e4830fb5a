from datetime import timedelta

from celery import shared_task
from django.contrib.sessions.models import Session
from django.utils import timezone

from accounts.models import LoginHandoff
from workers.base import BrandTask


@shared_task(base=BrandTask, name="accounts.cleanup_expired")
def cleanup_expired() -> dict[str, int]:
    """Drop a brand's expired sessions and spent sign-in handoffs (hourly fan-out)."""
    now = timezone.now()
    sessions, _ = Session.objects.filter(expire_date__lt=now).delete()
    handoffs, _ = LoginHandoff.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()
    return {"sessions": sessions, "handoffs": handoffs}
