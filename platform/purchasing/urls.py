from django.urls import path

from purchasing import views

app_name = "purchasing"
urlpatterns = [
    path("", views.POListView.as_view(), name="po_list"),
    path("new/", views.POCreateView.as_view(), name="po_create"),
    path("<int:pk>/", views.PODetailView.as_view(), name="po_detail"),
    path("<int:pk>/edit/", views.POEditView.as_view(), name="po_edit"),
    path("<int:pk>/receive/", views.POReceiveView.as_view(), name="po_receive"),
    path("<int:pk>/pdf/", views.POPdfView.as_view(), name="po_pdf"),
    path(
        "<int:pk>/<str:action>/",
        views.POActionView.as_view(),
        name="po_action",
    ),
    path("suppliers/", views.SupplierListView.as_view(), name="supplier_list"),
    path("suppliers/new/", views.SupplierFormView.as_view(), name="supplier_create"),
    path("suppliers/<int:pk>/", views.SupplierDetailView.as_view(), name="supplier_detail"),
    path("suppliers/<int:pk>/edit/", views.SupplierFormView.as_view(), name="supplier_edit"),
    path(
        "suppliers/<int:pk>/skus/<int:row>/delete/",
        views.SupplierSKUDeleteView.as_view(),
        name="supplier_sku_delete",
    ),
    path("scorecards/", views.ScorecardListView.as_view(), name="scorecards"),
]
