"""CSV import/export pages, namespace "imports" (catalog.urls owns the "catalog" one)."""

from django.urls import path

from catalog import import_views

app_name = "imports"
urlpatterns = [
    path("", import_views.ImportView.as_view(), name="upload"),
    path("<int:pk>/", import_views.ImportJobView.as_view(), name="job"),
    path("<int:pk>/report.csv", import_views.ReportView.as_view(), name="report"),
    path("template/<str:kind>.csv", import_views.TemplateView.as_view(), name="template"),
    path("export/items.csv", import_views.ExportItemsView.as_view(), name="export_items"),
    path("export/stock.csv", import_views.ExportStockView.as_view(), name="export_stock"),
]
