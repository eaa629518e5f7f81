"""``whisp process``: one take now, from a local folder or from a take prefix in the bucket."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from whisp.consumer.events import KeyLayout
from whisp.consumer.settings import Settings
from whisp.pipeline.errors import TakeError
from whisp.pipeline.media import MediaOptions
from whisp.pipeline.process import TakeOptions, process_take


def process_local(take: Path, args: argparse.Namespace) -> int:
    """Process a folder of chunks; prints where each output is, or one line on bad input."""
    from tqdm import tqdm

    out = args.out or take / "out"
    options = TakeOptions(
        user_id=args.user_id or take.resolve().name,
        media=MediaOptions(preset=args.preset, crf=args.crf, audio_output=args.audio_output),
        transcribe=not args.skip_transcription,
        engine=args.engine,
        model=args.model,
        language=args.language,
        expected_video=args.video_chunks,
        expected_audio=args.audio_chunks,
    )
    bar = tqdm(total=100, unit="%", disable=not sys.stderr.isatty(), leave=False)

    def on_stage(stage: str, fraction: float) -> None:
        bar.set_description(stage)
        bar.n = round(fraction * 100) if stage == "encode" else bar.n
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
    print(f"{result.duration:.2f} s, {video['width']}x{video['height']}, "
          f"{video['frames']} frames, video {'copied' if video['copied'] else 'encoded'}, "
          f"captions {result.captions}")  # fmt: skip
    for role, path in result.outputs.items():
        print(f"{role:>10}  {path}")
    for warning in result.warnings:
        print(f"   warning  {warning}")
    return 0


async def process_remote(settings: Settings, prefix: str) -> int:
    """Process a take in the bucket through the service's own job (lease and status)."""
    from whisp.consumer.cli import make_storage
    from whisp.consumer.storage import StorageError
    from whisp.consumer.take import TakeJob
    from whisp.consumer.workers import WorkerPool

    layout = KeyLayout(settings.recordings_prefix, settings.marker_name)
    ref = layout.marker_take(prefix.rstrip("/") + "/" + settings.marker_name)
    if ref is None:
        print(f"whisp: {prefix!r} is neither a folder nor a take prefix "
              f"({settings.recordings_prefix}/MEETING/TAKE/USER/)", file=sys.stderr)  # fmt: skip
        return 2
    storage = make_storage(settings)
    workers = WorkerPool(1)
    job = TakeJob(settings, storage, workers, owner=f"whisp-process-{uuid.uuid4().hex[:6]}")
    try:
        outcome = await job.run(ref)
    except StorageError as e:
        print(f"whisp: {ref}: the bucket failed: {e}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
        workers.close()
    print(f"{ref}: {outcome.state}{': ' + outcome.reason if outcome.reason else ''}")
    return 0 if outcome.state in ("done", "skipped") else 1
