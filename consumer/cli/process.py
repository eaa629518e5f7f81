"""``whisp process``: one take now, from a local folder or from a take prefix in the bucket."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from consumer import logs
from consumer.keys import KeyLayout
from consumer.settings import Settings
from pipeline.errors import TakeError
from pipeline.options import MediaOptions
from pipeline.process import TakeOptions, process_take

# Flags that only a local folder takes: a take in the bucket gets these from the settings
# and its marker, so the command refuses them rather than ignore them.
LOCAL_ONLY = {
    "--out": "out",
    "--user-id": "user_id",
    "--preset": "preset",
    "--crf": "crf",
    "--audio-output": "audio_output",
    "--skip-transcription": "skip_transcription",
    "--engine": "engine",
    "--model": "model",
    "--language": "language",
    "--video-chunks": "video_chunks",
    "--audio-chunks": "audio_chunks",
}
MEDIA_FLAGS = {"preset": "preset", "crf": "crf", "audio_output": "audio_output"}


def process_local(take: Path, args: argparse.Namespace) -> int:
    """Process a folder of chunks; prints where each output is, or one line on bad input."""
    from tqdm import tqdm

    out = args.out or take / "out"
    given = {name: getattr(args, dest) for name, dest in MEDIA_FLAGS.items()}
    media = MediaOptions(**{k: v for k, v in given.items() if v is not None})
    defaults = TakeOptions(user_id="")
    options = TakeOptions(
        user_id=args.user_id or take.resolve().name,
        media=media,
        transcribe=not args.skip_transcription,
        engine=args.engine or defaults.engine,
        model=args.model or defaults.model,
        language=args.language,
        expected_video=args.video_chunks,
        expected_audio=args.audio_chunks,
    )
    bar = tqdm(total=100, unit="%", disable=not sys.stderr.isatty(), leave=False)

    def on_stage(stage: str, fraction: float) -> None:
        bar.set_description(stage)
        bar.n = round(fraction * 100)  # the whole take's progress, never going back
        bar.refresh()

    work = Path(tempfile.mkdtemp(prefix="whisp-"))
    try:
        result = process_take(take, out, work, options, on_stage)
    except TakeError as e:
        bar.close()
        print(f"whisp: {take}: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bar.close()
    video = result.video
    picture = (
        f"{video['width']}x{video['height']}, {video['frames']} frames, "
        f"video {'copied' if video['copied'] else 'encoded'}"
        if video is not None
        else "no video"
    )
    print(f"{result.duration:.2f} s, {picture}, captions {result.captions}")
    for role, path in result.outputs.items():
        print(f"{role:>10}  {path}")
    for warning in result.warnings:
        print(f"   warning  {warning}")
    return 0


async def process_remote(settings: Settings, prefix: str, force: bool = False) -> int:
    """Process a take in the bucket through the service's own job (lease, status and
    webhook, as the service does); ``force`` runs it even when its status says it is done
    or failed. A take with no marker is an error: there is no such take."""
    from consumer.backends import make_storage
    from consumer.errors import StorageError
    from consumer.take import TakeJob
    from consumer.webhook import Notifier
    from consumer.workers import WorkerPool

    keys = KeyLayout(settings.recordings_prefix, settings.marker_name)
    ref = keys.marker_take(prefix.rstrip("/") + "/" + settings.marker_name)
    if ref is None:
        print(
            f"whisp: {prefix!r} is neither a folder nor a take prefix "
            f"({settings.recordings_prefix}/MEETING/TAKE/USER/)",
            file=sys.stderr,
        )
        return 2
    storage = make_storage(settings)
    workers = WorkerPool(1)
    owner = f"whisp-process-{uuid.uuid4().hex[:6]}"
    job = TakeJob(settings, storage, workers, keys, owner, Notifier.from_settings(settings))
    try:
        marker = keys.marker_key(ref)
        if not any(o.key == marker for o in await storage.list_objects(marker)):
            print(f"whisp: {prefix}: no such take (no {settings.marker_name})", file=sys.stderr)
            return 1
        outcome = await job.run(ref, force=force)
    except StorageError as e:
        print(logs.mask(f"whisp: {ref}: the bucket failed: {e}"), file=sys.stderr)
        return 1
    finally:
        await storage.close()
        workers.close()
    print(logs.mask(f"{ref}: {outcome.state}{': ' + outcome.reason if outcome.reason else ''}"))
    return 0 if outcome.state in ("done", "skipped") else 1
