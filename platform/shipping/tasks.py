"""Shipping tasks: thin wrappers taking ids; the rules are in shipping.services.

All are BrandTasks (acks_late, requeued if their worker dies) and safe to run twice: a
purchased label is returned as it is, an event or exception cause is stored once.
"""

from __future__ import annotations

from celery import shared_task

from shipping import services
from workers.base import BrandTask


@shared_task(base=BrandTask, name="shipping.purchase_label")
def purchase_label(label_id: int) -> str:
    return services.purchase_label(label_id).status


@shared_task(base=BrandTask, name="shipping.recover_purchases")
def recover_purchases() -> dict[str, int]:
    """Per brand, every few minutes: purchasing rows a crash left behind."""
    return services.recover_purchases()


@shared_task(base=BrandTask, name="shipping.poll_tracking")
def poll_tracking() -> dict[str, int]:
    """Per brand, every 30 minutes: carrier tracking for shipments on their way, then
    proofs of delivery of delivered freight."""
    from shipping import freight

    counts = services.poll_tracking()
    counts["pods"] = freight.collect_pods()
    return counts


# "monitor.*" tasks are routed to the monitor queue (config.celery).
@shared_task(base=BrandTask, name="monitor.shipping_exceptions")
def monitor_exceptions() -> dict[str, int]:
    """Per brand, every 15 minutes: no scan, late, carrier exceptions; escalation."""
    return services.monitor_exceptions()


@shared_task(base=BrandTask, name="shipping.minutely")
def minutely() -> dict[str, dict[str, int]]:
    """Per brand, every minute: carrier webhook tracking updates, then purchases a crash
    left half-done."""
    from shipping import freight

    return {
        "webhooks": services.apply_carrier_webhooks(),
        "purchases": services.recover_purchases(),
        "bookings": {"recovered": freight.recover_bookings()},
    }
