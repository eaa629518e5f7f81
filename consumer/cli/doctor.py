"""``whisp doctor``: the start-up self-check of ``whisp run`` (``consumer.selfcheck``) and
the codecs, one line each, failures first-word ``FAIL``; it names the bucket and the queue
it asked. Changes nothing: no folder made, no object written, no message acknowledged.

Every line is masked as ``whisp run``'s log is (``logs.mask``): no secret is printed.

Exit status as ``whisp run``'s start-up: 2 for a fault of this machine's set-up, 1 when
only the bucket or the queue failed, 0 when all is well.
"""

from __future__ import annotations

from consumer import logs
from consumer.backends import make_source, make_storage
from consumer.selfcheck import (
    Check,
    bucket_address,
    check_bucket,
    check_folders,
    check_pipeline,
    check_queue,
    exit_status,
    queue_address,
)
from consumer.settings import Settings
from pipeline.probe import codec_support


async def doctor(settings: Settings) -> int:
    checks: list[Check] = []

    def report(*found: Check) -> None:
        for check in found:
            checks.append(check)
            # An error may echo what the request carried (a token in an API's answer):
            # masked as ``whisp run`` masks its log lines.
            line = logs.mask(check.line(), settings.secrets)
            print(line, flush=True)  # a line at a time: some checks take seconds

    report(
        Check("settings", f"source={settings.source}, concurrency={settings.concurrency}"),
        *check_folders(settings),
    )
    root = settings.local_root.expanduser().absolute()
    if settings.source == "local" and not root.is_dir():
        # Making the storage would make the folder: say what ``whisp run`` will do instead.
        report(
            Check("bucket", f"{bucket_address(settings)} is not there yet; whisp run makes it"),
            Check("queue", f"{queue_address(settings)}: nothing to check before it exists"),
        )
    else:
        storage = make_storage(settings)
        try:
            report(await check_bucket(settings, storage))
        finally:
            await storage.close()
        source = make_source(settings)
        try:
            report(await check_queue(settings, source))
        finally:
            await source.close()
    for name, action, error in codec_support():
        report(Check("codec", f"{name}: {error}" if error else f"{name} ({action})", error is None))
    report(*await check_pipeline(settings))
    failed = sum(not c.ok for c in checks)
    print("all good" if not failed else f"{failed} problem(s)", flush=True)
    return exit_status(checks)
