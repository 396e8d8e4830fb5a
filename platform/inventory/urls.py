from django.urls import path

from inventory import views

app_name = "inventory"
urlpatterns = [
    path("", views.StockView.as_view(), name="stock"),
    path("receive/", views.ReceiveView.as_view(), name="receive"),
    path("adjust/", views.AdjustView.as_view(), name="adjust"),
    path("status/", views.ChangeStatusView.as_view(), name="change_status"),
    path("warehouses/", views.WarehouseListView.as_view(), name="warehouse_list"),
    path("warehouses/new/", views.WarehouseFormView.as_view(), name="warehouse_create"),
    path("warehouses/<int:pk>/", views.WarehouseDetailView.as_view(), name="warehouse_detail"),
    path("warehouses/<int:pk>/edit/", views.WarehouseFormView.as_view(), name="warehouse_edit"),
    path("transfers/", views.TransferListView.as_view(), name="transfer_list"),
    path("transfers/new/", views.TransferCreateView.as_view(), name="transfer_create"),
    path("transfers/<int:pk>/", views.TransferDetailView.as_view(), name="transfer_detail"),
    path(
        "transfers/<int:pk>/receive/",
        views.TransferReceiveView.as_view(),
        name="transfer_receive",
    ),
    path("holds/", views.HoldsView.as_view(), name="holds"),
    path("holds/<int:pk>/release/", views.HoldReleaseView.as_view(), name="hold_release"),
    path("counts/", views.CountsView.as_view(), name="counts"),
    path("counts/<int:pk>/", views.CountDetailView.as_view(), name="count_detail"),
    path("counts/<int:pk>/enter/", views.CountEnterView.as_view(), name="count_enter"),
    path("counts/<int:pk>/post/", views.CountPostView.as_view(), name="count_post"),
]
