"""Brand files on S3 (KEEL_FILE_STORAGE=s3): every name lives under the brand's schema, so
another brand's storage can neither read nor list nor overwrite it. Runs against moto's
S3 (an in-process fake of the S3 API)."""

from __future__ import annotations

import boto3
import pytest
from django.core.exceptions import SuspiciousOperation
from django.core.files.base import ContentFile
from django_tenants.utils import schema_context
from moto import mock_aws

from config.storage import TenantS3Storage

BUCKET = "keel-files"


@pytest.fixture
def bucket(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def storage() -> TenantS3Storage:
    return TenantS3Storage(bucket_name=BUCKET, location="keel", region_name="us-east-1")


def test_files_are_stored_under_the_brand_and_invisible_to_another(bucket, brand_a, brand_b):
    with schema_context(brand_a.schema_name):
        name = storage().save("bol/active/BOL-1.pdf", ContentFile(b"%PDF alpha"))
        assert storage().open(name).read() == b"%PDF alpha"

    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["keel/brand_alpha/bol/active/BOL-1.pdf"]

    with schema_context(brand_b.schema_name):
        assert not storage().exists(name)
        with pytest.raises(SuspiciousOperation):
            storage().open("../brand_alpha/" + name)
        storage().save(name, ContentFile(b"%PDF beta"))  # same name, its own object

    with schema_context(brand_a.schema_name):
        assert storage().open(name).read() == b"%PDF alpha"
