"""A real HTTP S3 (and SQS) server for tests: moto's ThreadedMotoServer on 127.0.0.1."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

import boto3

from consumer.storage.s3 import S3Storage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """Start the server; yields its URL (also put in ``WHISP_TEST_S3`` for ``s3()``)."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    os.environ["WHISP_TEST_S3"] = url
    try:
        yield url
    finally:
        server.stop()


class StoreOptions(TypedDict):
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str


def store_options(endpoint: str | None = None) -> StoreOptions:
    """``S3Storage``'s keyword arguments for the test server (or a proxy in front of it)."""
    return StoreOptions(
        endpoint_url=endpoint or os.environ["WHISP_TEST_S3"],
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
    )


def s3_storage(bucket: str, endpoint: str | None = None) -> S3Storage:
    """whisp's own store on the test server (or on a proxy in front of it)."""
    return S3Storage(bucket, **store_options(endpoint))


def s3(url: str | None = None) -> Any:
    """A boto3 client of the test server, as a client of the bucket would use."""
    return boto3.client(
        "s3",
        endpoint_url=url or os.environ["WHISP_TEST_S3"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
