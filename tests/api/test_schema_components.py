"""Regression found while fuzzing: two serializers named ResolveSerializer (catalog and
shipping) produced one "ResolveRequest" component, so the schema could describe
`POST /unmapped-listings/{id}/resolve/` with shipping's body."""

from __future__ import annotations

from drf_spectacular.generators import SchemaGenerator


def test_unmapped_listing_resolve_has_its_own_request_component():
    schema = SchemaGenerator(urlconf="config.urls_tenant").get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/unmapped-listings/{id}/resolve/"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    assert ref == "#/components/schemas/UnmappedListingResolveRequest"
    component = schema["components"]["schemas"]["UnmappedListingResolveRequest"]
    assert set(component["properties"]) == {"sku"}
    assert component["required"] == ["sku"]
