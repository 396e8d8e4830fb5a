"""The outbox page: messages by status, with "retry" for parked ones."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from accounts.views import RoleRequiredMixin
from outbox import services
from outbox.models import MessageStatus, OutboxMessage

PAGE_SIZE = 50


class MessageListView(RoleRequiredMixin, View):
    permission = "outbox.manage"
    template_name = "outbox/messages.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        # Parked messages are what a person acts on, so they are the default view.
        status = request.GET.get("status", MessageStatus.DEAD)
        topic = request.GET.get("topic", "").strip()
        rows = OutboxMessage.objects.order_by("-id").defer("payload")
        if status in MessageStatus.values:
            rows = rows.filter(status=status)
        if topic:
            rows = rows.filter(topic=topic)
        query = request.GET.copy()
        query.pop("page", None)
        context = {
            "page": Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page")),
            "statuses": MessageStatus.choices,
            "status": status,
            "topic": topic,
            "topics": OutboxMessage.objects.order_by("topic")
            .values_list("topic", flat=True)
            .distinct(),
            "parked_count": OutboxMessage.objects.filter(status=MessageStatus.DEAD).count(),
            "querystring": query.urlencode(),
        }
        if request.htmx and not request.htmx.history_restore_request:
            return render(request, self.template_name + "#results", context)
        return render(request, self.template_name, context)


class RetryView(RoleRequiredMixin, View):
    permission = "outbox.manage"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        message = get_object_or_404(OutboxMessage, pk=pk)
        try:
            services.retry_message(message)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"{message} will be sent again.")
        return redirect("outbox:messages")


class RetryAllView(RoleRequiredMixin, View):
    permission = "outbox.manage"

    def post(self, request: HttpRequest) -> HttpResponse:
        count = services.retry_parked(topic=request.POST.get("topic", "").strip())
        messages.success(
            request, f"{count} parked message{'s' if count != 1 else ''} queued again."
        )
        return redirect("outbox:messages")
