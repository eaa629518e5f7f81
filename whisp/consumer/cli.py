"""The ``whisp`` command: ``run``, ``process``, ``doctor`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisp import __version__
from whisp.consumer import logs
from whisp.consumer.settings import Settings, SettingsError, load_settings
from whisp.consumer.sources import Source

if TYPE_CHECKING:
    from whisp.consumer.storage import Storage


def make_storage(settings: Settings) -> Storage:
    # Imported here, as the sources are below: ``whisp process DIR`` needs no store, and
    # aiobotocore costs it about 0.2 s and 20 MiB.
    from whisp.consumer.storage import LocalStorage, S3Storage

    if settings.source == "local":
        return LocalStorage(settings.local_root)
    assert settings.s3_bucket_name is not None
    key = settings.s3_access_key_id
    secret = settings.s3_secret_access_key
    return S3Storage(
        settings.s3_bucket_name,
        endpoint_url=settings.endpoint_url,
        access_key=key.get_secret_value() if key else None,
        secret_key=secret.get_secret_value() if secret else None,
        region=settings.s3_region,
    )


def make_source(settings: Settings) -> Source:
    if settings.source == "cloudflare":
        from whisp.consumer.sources.cloudflare import CloudflareQueue

        assert settings.account_id and settings.cf_queue_id and settings.cf_api_token
        return CloudflareQueue(
            api_base=settings.cf_api_base,
            account_id=settings.account_id,
            queue_id=settings.cf_queue_id,
            token=settings.cf_api_token.get_secret_value(),
            batch_size=settings.cf_batch_size,
            visibility_timeout_ms=settings.cf_visibility_timeout_ms,
        )
    if settings.source == "sqs":
        from whisp.consumer.sources.sqs import SqsQueue

        return SqsQueue(settings)
    from whisp.consumer.sources.local import LocalFolder

    return LocalFolder(settings.local_root, settings.marker_name)


async def serve(settings: Settings) -> None:
    from whisp.consumer import metrics
    from whisp.consumer.service import Service

    metrics.serve(settings.metrics_port)
    service = Service(settings, make_storage(settings), make_source(settings))
    service.install_signal_handlers()
    await service.run()


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format, settings.secrets)
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    asyncio.run(serve(_settings(args)))
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from whisp.consumer.process_cmd import process_local, process_remote

    take = Path(args.take)
    if take.is_dir():
        return process_local(take, args)
    settings = _settings(args)
    return asyncio.run(process_remote(settings, args.take))


def cmd_doctor(args: argparse.Namespace) -> int:
    from whisp.consumer.doctor import doctor

    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"settings: {e}")
        return 1
    return asyncio.run(doctor(settings))


def cmd_demo(args: argparse.Namespace) -> int:
    from whisp.consumer.demo import demo

    return asyncio.run(demo(Path(args.folder), timeout=args.timeout))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whisp", description=__doc__)
    p.add_argument("--version", action="version", version=f"whisp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the service (settings from the environment and .env)")
    pr = sub.add_parser("process", help="process one take now: a local folder or a take prefix")
    pr.add_argument("take", help="a folder of chunks, or recordings/MEETING/TAKE/USER/")
    pr.add_argument("--out", type=Path, help="where the outputs go (default TAKE/out)")
    pr.add_argument("--user-id", help="names the outputs (default: the folder's name)")
    pr.add_argument("--preset", default="veryfast", help="libx264 preset (default veryfast)")
    pr.add_argument("--crf", type=int, default=23, help="libx264 CRF (default 23)")
    pr.add_argument("--audio-output", choices=["wav", "m4a", "none"], default="wav")
    pr.add_argument("--skip-transcription", action="store_true")
    pr.add_argument("--engine", choices=["faster-whisper", "openai-whisper"],
                    default="faster-whisper")  # fmt: skip
    pr.add_argument("--model", default="tiny.en", help="Whisper model name or path")
    pr.add_argument("--language", help="spoken language (default: detected)")
    pr.add_argument("--video-chunks", type=int, help="expected number of video chunks")
    pr.add_argument("--audio-chunks", type=int, help="expected number of audio chunks")
    sub.add_parser("doctor", help="check settings, bucket, queue, codecs and the model")
    d = sub.add_parser("demo", help="run the service end to end on a local folder")
    d.add_argument("--folder", default="demo", help="where the demo's bucket lives")
    d.add_argument("--timeout", type=float, default=300.0)
    return p


COMMANDS: dict[str, Any] = {
    "run": cmd_run,
    "process": cmd_process,
    "doctor": cmd_doctor,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command](args))
    except SettingsError as e:
        print(f"whisp: setting {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
