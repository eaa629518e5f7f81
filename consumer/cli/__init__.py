"""The ``whisp`` command: ``run``, ``process``, ``doctor`` and ``demo``.

A leaf: nothing imports it. It parses the arguments, builds the settings and calls one
function per command; the wiring of sources and stores lives in ``consumer.backends``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from consumer import __version__, logs
from consumer.settings import X264_PRESETS, Settings, SettingsError, load_settings


def _settings() -> Settings:
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format, settings.secrets)
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from consumer.lifecycle import serve

    return asyncio.run(serve(_settings()))


def cmd_process(args: argparse.Namespace) -> int:
    from consumer.cli.process import LOCAL_ONLY, process_local, process_remote

    take = Path(args.take)
    if take.is_dir():
        if args.force:
            print("whisp: --force applies to a take in the bucket only", file=sys.stderr)
            return 2
        if args.preset is not None and args.preset not in X264_PRESETS:
            print(
                f"whisp: --preset {args.preset}: not a libx264 preset "
                f"(one of {', '.join(X264_PRESETS)})",
                file=sys.stderr,
            )
            return 2
        return process_local(take, args)
    given = [flag for flag, dest in LOCAL_ONLY.items() if getattr(args, dest) is not None]
    if given:
        print(
            f"whisp: {', '.join(given)} apply to a local folder only; a take in the bucket "
            "takes its options from the settings and its marker",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(process_remote(_settings(), args.take, force=args.force))


def cmd_doctor(args: argparse.Namespace) -> int:
    from consumer.cli.doctor import doctor

    try:
        settings = load_settings()
    except SettingsError as e:
        for problem in e.problems:
            print(f"FAIL  settings: {problem}", flush=True)
        return 2
    return asyncio.run(doctor(settings))


def cmd_demo(args: argparse.Namespace) -> int:
    from consumer.cli.demo import demo

    return asyncio.run(demo(Path(args.folder), timeout=args.timeout))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whisp", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"whisp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the service (settings from the environment and .env)")
    pr = sub.add_parser("process", help="process one take now: a local folder or a take prefix")
    pr.add_argument("take", help="a folder of chunks, or recordings/MEETING/TAKE/USER/")
    pr.add_argument("--out", type=Path, help="where the outputs go (default TAKE/out)")
    pr.add_argument("--user-id", help="names the outputs (default: the folder's name)")
    pr.add_argument("--preset", help="libx264 preset (default veryfast)")
    pr.add_argument("--crf", type=int, help="libx264 CRF (default 23)")
    pr.add_argument("--audio-output", choices=["wav", "m4a", "none"])
    pr.add_argument("--skip-transcription", action="store_const", const=True)
    pr.add_argument("--engine", choices=["faster-whisper", "openai-whisper"])
    pr.add_argument("--model", help="Whisper model name or path (default tiny.en)")
    pr.add_argument("--language", help="spoken language (default: detected)")
    pr.add_argument("--video-chunks", type=int, help="expected number of video chunks")
    pr.add_argument("--audio-chunks", type=int, help="expected number of audio chunks")
    pr.add_argument(
        "--force",
        action="store_true",
        help="a take in the bucket: run it whatever its status says (done, failed)",
    )
    sub.add_parser(
        "doctor",
        help="check settings, folders, bucket, queue, codecs, encoder and model; changes nothing",
    )
    d = sub.add_parser("demo", help="run the service end to end on a local folder")
    d.add_argument("--folder", default="demo", help="where the demo's bucket lives")
    d.add_argument("--timeout", type=float, default=300.0)
    return p


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "process": cmd_process,
    "doctor": cmd_doctor,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SettingsError as e:
        for problem in e.problems:
            print(f"whisp: setting {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``whisp doctor | head -3``): not an error worth a
        # traceback. Point stdout at /dev/null so the exit's flush does not fail again.
        # https://docs.python.org/3/library/signal.html#note-on-sigpipe
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
