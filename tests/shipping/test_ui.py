"""Shipping pages: list, shipment page (rates, why, label print), exception queue, lanes,
settings; who may see and do what."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django_tenants.utils import schema_context

from accounts.roles import Role
from connectors import types as ct
from shipping import services
from shipping.models import Label, ShipmentException
from tests.conftest import brand_client, make_user
from tests.shipping.factories import make_fo


@pytest.fixture
def ops_client(brand_a):
    return brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))


def in_alpha_schema(brand):
    return schema_context(brand.schema_name)


@pytest.mark.parametrize(
    ("role", "pages", "settings_status"),
    [
        (Role.OWNER, 200, 200),
        (Role.OPS_MANAGER, 200, 200),
        (Role.VIEWER, 200, 403),
        (Role.WAREHOUSE, 200, 403),
    ],
)
def test_who_may_see_shipping_pages(brand_a, role, pages, settings_status):
    client = brand_client(brand_a, make_user(brand_a, role=role))
    for url in ("/shipping/", "/shipping/exceptions/", "/shipping/lanes/"):
        assert client.get(url).status_code == pages, url
    assert client.get("/shipping/settings/").status_code == settings_status


def test_from_fulfillment_order_to_printed_label(
    brand_a, ops_client, django_capture_on_commit_callbacks
):
    with in_alpha_schema(brand_a):
        fo = make_fo(weight_kg="2")
    listing = ops_client.get("/shipping/")
    assert f"FO-{fo.pk}" in listing.content.decode()
    created = ops_client.post(f"/shipping/new/{fo.pk}/")
    assert created.status_code == 302
    page = ops_client.get(created["Location"])
    html = page.content.decode()
    assert "Why this carrier:" in html and "the cheapest" in html
    assert "Buy label" in html
    with in_alpha_schema(brand_a):
        shipment = fo.shipments.get()
    with django_capture_on_commit_callbacks(execute=True):
        bought = ops_client.post(f"/shipping/{shipment.pk}/buy/", {"format": "pdf"})
    assert bought.status_code == 302
    page = ops_client.get(f"/shipping/{shipment.pk}/").content.decode()
    assert "Print label (PDF)" in page
    with in_alpha_schema(brand_a):
        label = Label.objects.get(shipment=shipment)
    document = ops_client.get(f"/shipping/labels/{label.pk}/document/")
    assert document.status_code == 200 and document["Content-Type"] == "application/pdf"
    assert "inline" in document["Content-Disposition"]


def test_zpl_labels_download(brand_a, ops_client, django_capture_on_commit_callbacks):
    with in_alpha_schema(brand_a):
        shipment = services.rate_shipment(services.create_shipment(make_fo()))
        with django_capture_on_commit_callbacks(execute=True):
            services.request_label(shipment, label_format="zpl")
        label = Label.objects.get(shipment=shipment)
    document = ops_client.get(f"/shipping/labels/{label.pk}/document/")
    assert "attachment" in document["Content-Disposition"]
    assert b"".join(document.streaming_content).startswith(b"^XA")


def test_a_viewer_cannot_buy_from_the_page(brand_a):
    viewer = brand_client(brand_a, make_user(brand_a, role=Role.VIEWER))
    with in_alpha_schema(brand_a):
        shipment = services.rate_shipment(services.create_shipment(make_fo()))
    viewer.post(f"/shipping/{shipment.pk}/buy/")
    page = viewer.get(f"/shipping/{shipment.pk}/").content.decode()
    assert "Buy label" not in page
    with in_alpha_schema(brand_a):
        assert not Label.objects.exists()


def test_exception_queue_acknowledge_and_resolve(
    brand_a, ops_client, django_capture_on_commit_callbacks
):
    with in_alpha_schema(brand_a):
        shipment = services.rate_shipment(services.create_shipment(make_fo()))
        with django_capture_on_commit_callbacks(execute=True):
            services.request_label(shipment)
        shipment.refresh_from_db()
        services.ingest_tracking(
            shipment,
            [
                ct.TrackingEvent(
                    shipment.tracking_number,
                    "exception",
                    datetime(2026, 11, 20, tzinfo=UTC),
                    "Damaged",
                    exception="damaged",
                )
            ],
        )
        exc = ShipmentException.objects.get()
    queue = ops_client.get("/shipping/exceptions/").content.decode()
    assert "Damaged" in queue and "Draft reship" in queue
    ops_client.post(f"/shipping/exceptions/{exc.pk}/acknowledge/")
    ops_client.post(f"/shipping/exceptions/{exc.pk}/resolve/", {"resolution": "Reshipped"})
    with in_alpha_schema(brand_a):
        exc.refresh_from_db()
        assert exc.status == "resolved" and exc.resolution == "Reshipped"
    dashboard = ops_client.get("/").content.decode()
    assert "Shipment exceptions" not in dashboard  # nothing open: the panel hides


def test_dashboard_panel_and_nav_badge_show_open_exceptions(
    brand_a, ops_client, django_capture_on_commit_callbacks
):
    with in_alpha_schema(brand_a):
        shipment = services.rate_shipment(services.create_shipment(make_fo()))
        with django_capture_on_commit_callbacks(execute=True):
            services.request_label(shipment)
        shipment.refresh_from_db()
        services.raise_exception(shipment, "no_scan", cause_key="t:1", detail="No scan for 40 h")
    dashboard = ops_client.get("/").content.decode()
    assert "Shipment exceptions" in dashboard and "1 open exception" in dashboard
    assert 'id="nav-count-shipping-exceptions"' in dashboard


def test_settings_page_saves_and_shows_field_errors(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    form = {
        "label_approval_threshold": "90",
        "ltl_weight_kg": "68",
        "ltl_cartons": "6",
        "ltl_pallets": "1",
        "wholesale_retail_ltl": "on",
        "weight_price": "0.4",
        "weight_reliability": "0.4",
        "weight_transit": "0.2",
        "history_weeks": "8",
        "min_history": "15",
        "no_scan_hours": "36",
        "late_tolerance_pct": "20",
        "escalate_after_hours": "8",
        "sandbox_carrier": "auto",
        "channel_weights": "faire 0.2 0.3 0.5",
    }
    assert client.post("/shipping/settings/", form).status_code == 302
    with in_alpha_schema(brand_a):
        cfg = services.load_settings()
        assert (cfg.history_weeks, cfg.min_history) == (8, 15)
        assert cfg.channel_weights == {
            "faire": {"price": "0.2", "reliability": "0.3", "transit": "0.5"}
        }
        assert str(services.label_threshold()) == "90.00"
    bad = client.post("/shipping/settings/", {**form, "weight_price": "3"})
    assert bad.status_code == 422
    assert "between 0 and 1" in bad.content.decode()


def test_lanes_page_lists_delivered_history(brand_a, ops_client):
    from tests.shipping.factories import history

    with in_alpha_schema(brand_a):
        history(carrier="SandboxPost", service="Ground", lane="900→CA", on_time=9, late=1)
    page = ops_client.get("/shipping/lanes/", {"lane": "900→CA"}).content.decode()
    assert "SandboxPost Ground" in page and "90 %" in page


def test_the_fulfillment_orders_shipment_link(brand_a, ops_client):
    with in_alpha_schema(brand_a):
        fo = make_fo()
    missing = ops_client.get(f"/shipping/fulfillment/{fo.pk}/")
    assert missing.status_code == 302 and missing["Location"] == "/shipping/"
    with in_alpha_schema(brand_a):
        shipment = services.create_shipment(fo)
    found = ops_client.get(f"/shipping/fulfillment/{fo.pk}/")
    assert found["Location"] == f"/shipping/{shipment.pk}/"
