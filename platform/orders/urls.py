from django.urls import path

from orders import views

app_name = "orders"
urlpatterns = [
    path("", views.OrderListView.as_view(), name="list"),
    path("new/", views.ManualOrderView.as_view(), name="create"),
    path("import/", views.OrderImportView.as_view(), name="import"),
    path("review/", views.ReviewQueueView.as_view(), name="review"),
    path("rules/", views.RuleSetListView.as_view(), name="rules"),
    path("rules/new/", views.RuleEditorView.as_view(), name="rule_editor"),
    path("rules/<int:version>/", views.RuleSetDetailView.as_view(), name="rule_set"),
    path("rules/<int:version>/publish/", views.PublishView.as_view(), name="rule_publish"),
    path("rules/<int:version>/edit/", views.RuleEditorView.as_view(), name="rule_draft_edit"),
    path("<int:pk>/", views.OrderDetailView.as_view(), name="detail"),
    path("<int:pk>/plan/", views.ChoosePlanView.as_view(), name="choose_plan"),
    path("<int:pk>/route/", views.RouteAgainView.as_view(), name="route"),
    path("<int:pk>/release/", views.ReleaseFraudView.as_view(), name="release_fraud"),
    path("<int:pk>/address/", views.CorrectAddressView.as_view(), name="correct_address"),
    path("<int:pk>/cancel/", views.CancelOrderView.as_view(), name="cancel"),
    path("<int:pk>/close/", views.CloseOrderView.as_view(), name="close"),
    path("fulfillments/<int:pk>/ship/", views.ShipView.as_view(), name="ship"),
    path("fulfillments/<int:pk>/reject/", views.RejectView.as_view(), name="reject"),
]
