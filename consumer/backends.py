"""Which class serves each ``SOURCE``, and the object store that goes with it.

The settings name an implementation; this module maps the name to the class, in one
place, as uvicorn's ``config.py`` maps its loop and protocol names. Imports are lazy:
``whisp process DIR`` needs neither a queue nor a bucket client (aiobotocore alone costs
about 0.2 s and 20 MiB to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumer.settings import Settings

if TYPE_CHECKING:
    from consumer.sources import Source
    from consumer.storage import Storage


def make_storage(settings: Settings) -> Storage:
    """The local folder for ``SOURCE=local``, else the S3-compatible bucket."""
    if settings.source == "local":
        from consumer.storage.local import LocalStorage

        return LocalStorage(settings.local_root)
    from consumer.storage.s3 import S3Storage

    assert settings.s3_bucket_name is not None
    key, secret = settings.s3_access_key_id, settings.s3_secret_access_key
    return S3Storage(
        settings.s3_bucket_name,
        endpoint_url=settings.endpoint_url,
        access_key=key.get_secret_value() if key else None,
        secret_key=secret.get_secret_value() if secret else None,
        region=settings.s3_region,
    )


def make_source(settings: Settings) -> Source:
    """The event source that ``SOURCE`` names, built from its own settings."""
    if settings.source == "cloudflare":
        from consumer.sources.cloudflare import CloudflareQueue

        assert settings.account_id and settings.cf_queue_id and settings.cf_api_token
        return CloudflareQueue(
            api_base=settings.cf_api_base,
            account_id=settings.account_id,
            queue_id=settings.cf_queue_id,
            token=settings.cf_api_token.get_secret_value(),
            visibility_timeout_ms=settings.cf_visibility_timeout_ms,
        )
    if settings.source == "sqs":
        from consumer.sources.sqs import SqsQueue

        assert settings.sqs_queue_url is not None
        key, secret = settings.s3_access_key_id, settings.s3_secret_access_key
        return SqsQueue(
            queue_url=settings.sqs_queue_url,
            endpoint_url=settings.sqs_endpoint_url,
            region=settings.sqs_region,
            access_key=key.get_secret_value() if key else None,
            secret_key=secret.get_secret_value() if secret else None,
            wait_seconds=settings.sqs_wait_seconds,
        )
    from consumer.sources.local import LocalFolder

    return LocalFolder(root=settings.local_root, marker_name=settings.marker_name)
