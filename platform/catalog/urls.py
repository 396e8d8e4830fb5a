from django.urls import path

from catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.SKUListView.as_view(), name="sku_list"),
    path("skus/lookup/", views.SKULookupView.as_view(), name="sku_lookup"),
    path("skus/new/", views.SKUCreateView.as_view(), name="sku_create"),
    path("skus/<int:pk>/", views.SKUDetailView.as_view(), name="sku_detail"),
    path("skus/<int:pk>/edit/", views.SKUEditView.as_view(), name="sku_edit"),
    path("skus/<int:pk>/bundle/", views.BundleEditView.as_view(), name="bundle_edit"),
    path("unmapped/", views.UnmappedListView.as_view(), name="unmapped"),
    path(
        "unmapped/<int:pk>/resolve/", views.UnmappedResolveView.as_view(), name="unmapped_resolve"
    ),
    path("unmapped/<int:pk>/ignore/", views.UnmappedIgnoreView.as_view(), name="unmapped_ignore"),
]
