"""The plug-in contracts: every method says what it promises; sources take keywords."""

from __future__ import annotations

import inspect

import pytest

from consumer.sources import Message, Source
from consumer.sources.cloudflare import CloudflareQueue
from consumer.sources.local import LocalFolder
from consumer.sources.sqs import SqsQueue
from consumer.storage import Storage
from consumer.storage.local import LocalStorage
from consumer.storage.s3 import S3Storage


@pytest.mark.parametrize("base", [Source, Storage])
def test_every_method_of_a_contract_says_what_it_promises(base: type) -> None:
    methods = [
        name
        for name, member in vars(base).items()
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    ]
    assert len(methods) >= 5
    assert [m for m in methods if not (getattr(base, m).__doc__ or "").strip()] == []


@pytest.mark.parametrize("cls", [CloudflareQueue, SqsQueue, LocalFolder])
def test_sources_are_built_from_keyword_arguments_only(cls: type[Source]) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert params and all(p.kind is p.KEYWORD_ONLY for p in params)
    assert issubclass(cls, Source) and not inspect.isabstract(cls)


@pytest.mark.parametrize("cls", [S3Storage, LocalStorage])
def test_stores_implement_the_whole_contract(cls: type[Storage]) -> None:
    assert issubclass(cls, Storage) and not inspect.isabstract(cls)


async def test_optional_methods_default_to_nothing() -> None:
    """A source that has nothing to extend, check or close need not say so."""

    class Minimal(Source):
        async def receive(self, max_messages: int) -> list[Message]:
            return []

        async def ack(self, messages: list[Message]) -> None:
            return None

        async def retry(self, message: Message, delay: float) -> None:
            return None

    source = Minimal()
    await source.check()
    await source.extend(Message("1", []), 10)
    await source.close()
