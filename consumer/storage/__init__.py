"""The object store: the contract (``base``), an S3-compatible bucket (``s3``: R2, AWS,
MinIO, through aiobotocore) and a local folder laid out like the bucket (``local``).

Only the contract is imported here: ``whisp process DIR`` needs no bucket client
(aiobotocore alone costs about 0.2 s and 20 MiB to import); ``consumer.backends`` imports
the implementation that the settings name.
"""

from consumer.storage.base import ObjectInfo, Storage, content_type, get_json

__all__ = ["ObjectInfo", "Storage", "content_type", "get_json"]
