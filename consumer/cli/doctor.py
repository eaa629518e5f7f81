"""``whisp doctor``: checks settings, bucket and queue access, codecs and the model, and
says what is wrong, one line each. Changes nothing (the queue check acks no message)."""

from __future__ import annotations

import asyncio

from consumer.backends import make_source, make_storage
from consumer.keys import KeyLayout
from consumer.settings import Settings
from pipeline.media import codec_support


async def doctor(settings: Settings) -> int:
    problems = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += not ok
        print(f"{'ok  ' if ok else 'FAIL'}  {what}: {detail}")

    report(True, "settings", f"source={settings.source}, concurrency={settings.concurrency}")
    storage = make_storage(settings)
    try:
        root = KeyLayout(settings.recordings_prefix, settings.marker_name).root
        found = await storage.list_objects(root)
        report(True, "bucket", f"listed {len(found)} objects under {root}")
    except Exception as e:
        report(False, "bucket", str(e))
    finally:
        await storage.close()
    source = make_source(settings)
    try:
        await source.check()
        report(True, "queue", settings.source or "")
    except Exception as e:
        report(False, "queue", str(e))
    finally:
        await source.close()
    for name, action, error in codec_support():
        report(error is None, "codec", f"{name}: {error}" if error else f"{name} ({action})")
    try:
        from pipeline.transcribe import load_engine

        await asyncio.to_thread(
            load_engine,
            settings.whisper_engine,
            settings.whisper_model,
            device=settings.whisper_device,
            model_dir=settings.whisper_model_dir,
        )
        report(True, "model", f"{settings.whisper_engine} {settings.whisper_model} loads")
    except Exception as e:
        report(False, "model", str(e))
    print("all good" if not problems else f"{problems} problem(s)")
    return 1 if problems else 0
