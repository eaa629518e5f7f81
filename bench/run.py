"""whisp's benchmarks: each prints a ratio against the alternative measured in the same run.

    python bench/run.py video    [--minutes 10]   whisp process vs the FFmpeg CLI, same work
    python bench/run.py copy     [--minutes 10]   an H.264 source: stream copy, x realtime
    python bench/run.py memory   [--minutes 10 60] peak memory, long take vs short take
    python bench/run.py whisper                   faster-whisper vs openai-whisper, same model
    python bench/run.py speech                    word error rate and speed on a known script
    python bench/run.py queue    [--messages 5000] non-marker acks per second, marker to done
    python bench/run.py delivery [--markers 20]   20 markers at once on two consumers: marker
                                                  to done, this tree vs the code before issue 10
    python bench/run.py progressive [--minutes 10 60] [--pace 1]   a take recorded at pace:
                                                  marker to done, followed vs made whole
    python bench/run.py captioned [--minutes 10]  whole-take path with captions: transcription
                                                  heard while encoding vs one after the other
    python bench/run.py all

The FFmpeg CLI comes from the imageio-ffmpeg wheel (whisp itself needs no CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "bench" / "out"

from tests.support.takes import make_take, split_bytes  # noqa: E402


def cached(name: str, make: Callable[[Path], object]) -> Path:
    """A benchmark input, made once by ``make(folder)`` and kept under bench/out/."""
    folder = CACHE / name
    if not (folder / ".made").exists():
        shutil.rmtree(folder, ignore_errors=True)
        started = time.monotonic()
        make(folder)
        (folder / ".made").write_text(str(time.monotonic() - started))
    return folder


def take(name: str, **kwargs: Any) -> Path:
    """A benchmark take recorded by ``make_take``."""
    return cached(name, lambda folder: make_take(folder, **kwargs))


def looped(name: str, source: Path, times: int, seconds: float) -> Path:
    """``source`` played ``times`` over as one take: its packets repeated, not re-encoded.

    A long take made this way costs seconds instead of the half hour of encoding a
    60-minute 720p recording takes here; each repeat starts on the source's first
    keyframe, so the result decodes like any recording.
    """
    import av

    from pipeline.chained import ChainReader
    from pipeline.chunks import plan_take

    def make(folder: Path) -> None:
        folder.mkdir(parents=True)
        for track in plan_take(source).tracks:
            written = io.BytesIO()
            with (
                av.open(ChainReader(track.paths), "r") as src,
                av.open(written, "w", format="webm") as dst,
            ):
                stream = src.streams[0]
                time_base = stream.time_base
                assert time_base is not None
                copy = dst.add_stream_from_template(stream)
                packets = [
                    (bytes(p), p.pts, p.dts, p.is_keyframe)
                    for p in src.demux(stream)
                    if p.size and p.pts is not None
                ]
                shift = round(seconds / time_base)
                for k in range(times):
                    for data, pts, dts, key in packets:
                        packet = av.Packet(data)
                        packet.pts = pts + k * shift
                        packet.dts = (dts if dts is not None else pts) + k * shift
                        packet.is_keyframe = key
                        packet.time_base = time_base
                        packet.stream = copy
                        dst.mux(packet)
            pieces = split_bytes(written.getvalue(), len(track.paths) * times)
            for i, piece in enumerate(pieces):
                (folder / f"{track.kind}_{i}.webm").write_bytes(piece)

    return cached(name, make)


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall time and the child's peak RSS (KiB) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before)


def peak_rss(cmd: list[str]) -> int:
    """Peak RSS (KiB) of a command, measured in a fresh process so earlier runs don't count."""
    code = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip())


WHISP = [sys.executable, "-m", "consumer", "process"]


def bench_video(minutes: float) -> None:
    import imageio_ffmpeg

    folder = take(
        f"vp8-720p-{minutes:g}min",
        duration=minutes * 60,
        size=(1280, 720),
        chunks=max(2, int(minutes * 30)),
    )
    out = Path(tempfile.mkdtemp())
    whisp_s, _ = timed(
        [
            *WHISP,
            str(folder),
            "--out",
            str(out / "w"),
            "--skip-transcription",
            "--preset",
            "veryfast",
            "--crf",
            "23",
            "--audio-output",
            "none",
        ]
    )
    joined = out / "joined"
    joined.mkdir()
    for kind in ("video", "audio"):
        with (joined / f"{kind}.webm").open("wb") as f:
            for part in sorted(
                folder.glob(f"{kind}_*.webm"), key=lambda p: int(p.stem.split("_")[1])
            ):
                f.write(part.read_bytes())
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    ffmpeg_s, _ = timed(
        [
            ffmpeg,
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(joined / "video.webm"),
            "-i",
            str(joined / "audio.webm"),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-pix_fmt",
            "yuv420p",
            "-fps_mode",
            "passthrough",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-movflags",
            "+faststart",
            str(out / "ffmpeg.mp4"),
        ]
    )
    length = minutes * 60
    print(
        f"video  {minutes:g} min 720p30 VP8 -> H.264 veryfast/23: whisp {whisp_s:.1f} s "
        f"({length / whisp_s:.2f}x realtime), ffmpeg CLI {ffmpeg_s:.1f} s "
        f"(concatenation not counted; same preset, CRF and audio bitrate); "
        f"ratio ffmpeg/whisp = {ffmpeg_s / whisp_s:.2f} (target >= 1.0)"
    )
    shutil.rmtree(out)


def bench_copy(minutes: float) -> None:
    """An H.264 source: the video is copied; its Opus audio still becomes AAC."""
    folder = take(
        f"h264-720p-{minutes:g}min",
        duration=minutes * 60,
        size=(1280, 720),
        video_codec="h264",
        chunks=max(2, int(minutes * 30)),
    )
    video_only = CACHE / f"h264-720p-{minutes:g}min-video-only"
    if not video_only.exists():
        video_only.mkdir()
        for chunk in folder.glob("video_*.mkv"):
            (video_only / chunk.name).symlink_to(chunk)
    out = Path(tempfile.mkdtemp())
    options = ["--skip-transcription", "--audio-output", "none"]
    copy_s, _ = timed([*WHISP, str(video_only), "--out", str(out / "v"), *options])
    whole_s, _ = timed([*WHISP, str(folder), "--out", str(out / "a"), *options])
    length = minutes * 60
    print(
        f"copy   {minutes:g} min 720p H.264 source: video stream copy {copy_s:.2f} s = "
        f"{length / copy_s:.0f}x realtime (target >= 100x); with its Opus audio encoded to "
        f"AAC {whole_s:.2f} s = {length / whole_s:.0f}x realtime (the AAC encoder's pace)"
    )
    shutil.rmtree(out)


def skip_transcription_peak(folder: Path, preset: str) -> int:
    """Peak RSS (KiB) of ``whisp process --skip-transcription`` on one take."""
    out = Path(tempfile.mkdtemp())
    try:
        return peak_rss(
            [*WHISP, str(folder), "--out", str(out), "--skip-transcription", "--preset", preset]
        )
    finally:
        shutil.rmtree(out)


def bench_memory(short: float, long: float) -> None:
    """Peak RSS on a long take over that on a short one, at 720p and at 320x240.

    720p with the default preset is the meeting take of the video benchmark. At 320x240
    with ``ultrafast`` the encoder's fixed memory is smallest, so what grows with the
    take's length (the final MP4's sample index, which every non-fragmented MP4 writer
    keeps until it writes the moov) weighs most there: the worst case.
    """
    times = round(long / short)
    cases = [
        ("720p", (1280, 720), "veryfast", "target <= 1.2"),
        ("240p", (320, 240), "ultrafast", "worst case: the MP4 index over a tiny fixed part"),
    ]
    for label, size, preset, note in cases:
        base = take(
            f"vp8-{label}-{short:g}min",
            duration=short * 60,
            size=size,
            chunks=max(2, int(short * 30)),
        )
        long_take = looped(f"vp8-{label}-{short * times:g}min-looped", base, times, short * 60)
        small, large = (skip_transcription_peak(folder, preset) for folder in (base, long_take))
        print(
            f"memory peak RSS, whisp process --skip-transcription ({label} VP8, {preset}): "
            f"{short:g} min {small / 1024:.0f} MiB, {short * times:g} min {large / 1024:.0f} MiB; "
            f"ratio = {large / small:.2f} ({note})",
            flush=True,
        )


def bench_whisper(repeat: int) -> None:
    import numpy as np

    from pipeline.chunks import plan_take
    from pipeline.encode import encode_take
    from pipeline.transcribe import FasterWhisper, OpenAIWhisper, bundled_model, read_samples
    from tests.support.checkpoint import convert
    from tests.support.paths import FIXTURE as fixture

    work = Path(tempfile.mkdtemp())
    encoded = encode_take(plan_take(fixture), work)
    assert encoded.speech_path is not None
    samples = np.tile(read_samples(encoded.speech_path), repeat)
    length = len(samples) / 16_000
    threads = os.cpu_count() or 1
    bundled = bundled_model()
    assert bundled is not None
    checkpoint = convert(bundled, work / "tiny.en.pt")
    results = {}
    for name, make in (
        ("faster-whisper int8", lambda: FasterWhisper("tiny.en", device="cpu", threads=threads)),
        (
            "openai-whisper fp32",
            lambda: OpenAIWhisper(str(checkpoint), device="cpu", threads=threads),
        ),
    ):
        engine = make()
        engine.transcribe(samples[: 16_000 * 5], "en")  # warm up
        started = time.monotonic()
        engine.transcribe(samples, "en")
        results[name] = time.monotonic() - started
    fast, ref = results["faster-whisper int8"], results["openai-whisper fp32"]
    print(
        f"whisper tiny.en on {length:.0f} s of speech, {threads} threads: faster-whisper {fast:.1f} s "
        f"(RTF {fast / length:.3f}, {length / fast:.1f}x realtime), openai-whisper {ref:.1f} s "
        f"(RTF {ref / length:.3f}); ratio openai/faster = {ref / fast:.2f} (target >= 3)"
    )
    shutil.rmtree(work)


def bench_speech() -> None:
    """Word error rate (after Whisper's English normalizer) and real-time factor of whisp's
    two engines on tests/fixtures/speech-3min, from the samples whisp's encode pass
    writes, beside faster-whisper's own run (decode_audio of the take's audio, defaults)."""
    from faster_whisper import WhisperModel

    from pipeline.chunks import plan_take
    from pipeline.encode import encode_take
    from pipeline.transcribe import FasterWhisper, OpenAIWhisper, bundled_model, read_samples
    from tests.support.checkpoint import convert
    from tests.support.speech import SPEECH_TAKE, engine_reads, score, script

    work = Path(tempfile.mkdtemp())
    encoded = encode_take(plan_take(SPEECH_TAKE), work)
    assert encoded.speech_path is not None
    samples = read_samples(encoded.speech_path)
    length = len(samples) / 16_000
    threads = os.cpu_count() or 1
    bundled = bundled_model()
    assert bundled is not None
    checkpoint = convert(bundled, work / "tiny.en.pt")
    own = WhisperModel(str(bundled), device="cpu", compute_type="int8", cpu_threads=threads)
    fast = FasterWhisper("tiny.en", device="cpu", threads=threads)
    reference = OpenAIWhisper(str(checkpoint), device="cpu", threads=threads)

    def itself(audio: Any) -> str:
        return " ".join(s.text for s in own.transcribe(audio, language="en")[0])

    runs: list[tuple[str, Callable[[Any], str], Any]] = [
        ("faster-whisper itself", itself, engine_reads(SPEECH_TAKE)),
        ("whisp faster-whisper", lambda audio: fast.transcribe(audio, "en").text, samples),
        ("whisp openai-whisper", lambda audio: reference.transcribe(audio, "en").text, samples),
    ]
    sentences = script()
    print(
        f"speech tiny.en on speech-3min ({length:.0f} s, {len(sentences)} sentences), "
        f"{threads} threads, CPU (int8 for faster-whisper, fp32 for openai-whisper):"
    )
    for name, run, audio in runs:
        run(audio[: 16_000 * 5])  # warm up
        started = time.monotonic()
        text = run(audio)
        elapsed = time.monotonic() - started
        heard = score(sentences, text)
        print(
            f"  {name:22s} WER {heard.wer:.3f}, sentences missing {len(heard.missing(sentences))}, "
            f"{elapsed:5.1f} s, RTF {elapsed / length:.3f} ({length / elapsed:.1f}x realtime)",
            flush=True,
        )
    shutil.rmtree(work)


def bench_queue(count: int) -> None:
    from consumer.service import Service
    from consumer.settings import load_settings
    from consumer.sources.cloudflare import CloudflareQueue
    from consumer.storage.local import LocalStorage
    from tests.support.cfqueue import ACCOUNT, TOKEN, QueueEmulator, r2_event

    queue_id = "b" * 32
    with QueueEmulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        emulator.create_queue(queue_id)
        for i in range(count):
            emulator.send(queue_id, r2_event(f"recordings/m{i % 50}/1/u/video_{i}.webm"))
        settings = load_settings(
            source="local", local_root=Path(tmp), batch_size=100, poll_interval_seconds=0.05
        )
        source = CloudflareQueue(
            api_base=emulator.api_base,
            account_id=ACCOUNT,
            queue_id=queue_id,
            token=TOKEN,
        )

        async def drain() -> float:
            service = Service(settings, LocalStorage(Path(tmp)), source)
            runner = asyncio.create_task(service.run())
            started = time.monotonic()
            while emulator.backlog(queue_id):
                await asyncio.sleep(0.01)
            elapsed = time.monotonic() - started
            service.stop()
            await runner
            return elapsed

        elapsed = asyncio.run(drain())
    print(
        f"queue  {count} non-marker events acknowledged in {elapsed:.2f} s: {count / elapsed:.0f} msg/s "
        f"(target 1,000/s)"
    )
    bench_latency()


def bench_latency() -> None:
    """Marker landing to done for a short take, beside the pipeline's own time for it."""
    from consumer.service import Service
    from consumer.settings import load_settings
    from consumer.sources.local import LocalFolder
    from consumer.storage.local import LocalStorage

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bucket"
        folder = root / "recordings/m/1/u"
        make_take(folder, duration=10.0, chunks=5)
        settings = load_settings(
            source="local",
            local_root=root,
            work_dir=Path(tmp) / "work",
            sweep_interval_seconds=30,
            poll_interval_seconds=0.05,
            log_level="ERROR",
        )
        status = root / "recordings/m/1/status_u.json"

        async def go() -> tuple[float, float]:
            service = Service(
                settings, LocalStorage(root), LocalFolder(root=root, marker_name="done.json")
            )
            runner = asyncio.create_task(service.run())
            await asyncio.sleep(1.0)  # the watch is up; workers are started on first use
            started = time.monotonic()
            (folder / "done.json").write_text("{}")
            while not (status.exists() and json.loads(status.read_text()).get("state") == "done"):
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
            pipeline = float(json.loads(status.read_text())["timings"]["pipeline"])
            service.stop()
            await runner
            return elapsed, pipeline

        elapsed, pipeline = asyncio.run(go())
    print(
        f"latency 10 s take with captions: marker to done {elapsed:.2f} s, of which the pipeline "
        f"{pipeline:.2f} s (worker start and model load included on this first take)"
    )


OLD_COMMIT = "8018a0e"  # the consumer before issue 10 (claim-then-ack, pull what can start)


def old_tree() -> Path:
    """The code at OLD_COMMIT, exported (not a worktree) to the temporary folder, once;
    outside the repository, so that neither mypy nor ruff reads it."""
    folder = Path(tempfile.gettempdir()) / f"whisp-{OLD_COMMIT}"
    if not (folder / ".made").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", OLD_COMMIT], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        (folder / ".made").write_text(OLD_COMMIT)
    return folder


def delivery_run(
    tree: Path, emulator: Any, bucket: str, folder: Path, markers: int, visibility_ms: int
) -> dict[str, Any]:
    """Two ``whisp run`` of ``tree`` (one worker each) and ``markers`` markers landing at
    once: each take's time from its marker to the first sight of ``done``, and what the
    queue was left with."""
    import boto3

    from tests.support.cfqueue import r2_event
    from tests.support.harness import env_for, status, upload, wait_for, whisp

    client = boto3.client("s3", endpoint_url=os.environ["WHISP_TEST_S3"], region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    queue = f"{abs(hash(bucket)) % 16**32:032x}"
    emulator.create_queue(queue, max_retries=3, dead_letter=queue[::-1])
    prefixes = [f"recordings/bench/1/u{i}/" for i in range(markers)]
    for prefix in prefixes:
        upload(bucket, folder, prefix)
    statuses = [f"recordings/bench/1/status_u{i}.json" for i in range(markers)]
    work = Path(tempfile.mkdtemp())
    env = env_for(
        None,
        bucket,
        work,
        CF_API_BASE=emulator.api_base,
        CF_QUEUE_ID=queue,
        CF_VISIBILITY_TIMEOUT_MS=visibility_ms,
        CF_BATCH_SIZE=10,
        CONCURRENCY=1,
        LEASE_SECONDS=30,
        RETRY_DELAY_SECONDS=10,
        PYTHONPATH=str(tree),
    )
    done_at: dict[int, float] = {}
    with whisp(env, work / "a.log", cwd=tree) as a, whisp(env, work / "b.log", cwd=tree) as b:
        wait_for(lambda: a.events("whisp started") and b.events("whisp started"), 60)
        body = json.dumps({"skip_transcription": True}).encode()
        for prefix in prefixes:
            client.put_object(Bucket=bucket, Key=prefix + "done.json", Body=body)
        landed = time.monotonic()
        for prefix in prefixes:  # the markers' notifications arrive at once
            emulator.send(queue, r2_event(prefix + "done.json", len(body), bucket=bucket))

        def all_done() -> bool:
            for i, key in enumerate(statuses):
                if i not in done_at and (status(bucket, key) or {}).get("state") == "done":
                    done_at[i] = time.monotonic() - landed
            return len(done_at) == markers

        wait_for(all_done, 600, "every take done")
        if visibility_ms <= 60_000:  # let redeliveries of markers acked late show
            time.sleep(visibility_ms / 1000 + 1)
        runs = len(a.events("take done")) + len(b.events("take done"))
        a.stop()
        b.stop()
    shutil.rmtree(work, ignore_errors=True)
    latencies = sorted(done_at.values())
    return {
        "mean": sum(latencies) / len(latencies),
        "p50": latencies[len(latencies) // 2],
        "max": latencies[-1],
        "runs": runs,
        "left": emulator.backlog(queue),
        "dead": emulator.backlog(queue[::-1]),
    }


def bench_delivery(markers: int) -> None:
    """Marker-to-done latency with the markers of ``markers`` short takes landing at once
    on two consumers of one worker each, this tree against the code at OLD_COMMIT, with
    the default visibility timeout and with one shorter than the queue's wait."""
    import logging

    from tests.support.cfqueue import QueueEmulator
    from tests.support.s3 import moto_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the S3 server's request log
    folder = take("delivery-2s", duration=2.0, chunks=2)
    trees = {"new": ROOT, "old": old_tree()}
    with moto_server(), QueueEmulator() as emulator:
        for visibility_ms in (900_000, 5_000):
            found = {
                label: delivery_run(
                    tree, emulator, f"bench-{label}-{visibility_ms}", folder, markers, visibility_ms
                )
                for label, tree in trees.items()
            }
            new, old = found["new"], found["old"]
            print(
                f"delivery {markers} markers at once, 2 consumers x 1 worker, 2 s takes, "
                f"visibility {visibility_ms / 1000:g} s: marker to done mean/p50/max "
                f"new {new['mean']:.1f}/{new['p50']:.1f}/{new['max']:.1f} s, "
                f"old ({OLD_COMMIT}) {old['mean']:.1f}/{old['p50']:.1f}/{old['max']:.1f} s; "
                f"ratio old/new mean = {old['mean'] / new['mean']:.2f}, "
                f"max = {old['max'] / new['max']:.2f}; takes made new {new['runs']}, "
                f"old {old['runs']}; messages left/dead-lettered new {new['left']}/{new['dead']}, "
                f"old {old['left']}/{old['dead']}",
                flush=True,
            )


def speech_take(minutes: float) -> Path:
    """A 1280x720 VP8 take of ``minutes`` with real speech (tests/fixtures/speech-3min's,
    looped), cut in 2 s chunks as Chromium's timeslice recorder cuts it. An hour is the
    10-minute take played six times over (``looped``)."""
    import numpy as np

    from tests.support.speech import SPEECH_TAKE, engine_reads

    def make(folder: Path) -> None:
        speech = np.repeat(engine_reads(SPEECH_TAKE), 3)  # 16 kHz to the recorder's 48 kHz
        samples = int(minutes * 60 * 48_000)
        audio = np.tile(speech, samples // len(speech) + 1)[:samples].astype(np.float32)
        make_take(
            folder, duration=minutes * 60, size=(1280, 720), chunks=int(minutes * 30), audio=audio
        )

    if minutes > 10 and minutes % 10 == 0:
        return looped(f"speech-720p-{minutes:g}min", speech_take(10), int(minutes // 10), 600)
    return cached(f"speech-720p-{minutes:g}min", make)


def replay(emulator: Any, bucket: str, folder: Path, prefix: str, pace: float | None) -> float:
    """Upload the take's chunks with their notifications, as a browser records them: chunk
    n of every kind at its end on the take's clock, divided by ``pace`` (None: all at
    once), then the marker; the time the marker landed (time.monotonic())."""
    from pipeline.chunks import parse_chunk_name
    from tests.support.harness import put_marker, upload

    names = {p.name: parse_chunk_name(p.name) for p in folder.iterdir()}
    chunks = sorted((n for n, c in names.items() if c), key=lambda n: (names[n] or ("", 0))[::-1])
    slice_seconds = 2.0  # speech_take's chunks
    started = time.monotonic()
    for name in chunks:
        index = (names[name] or ("", 0))[1]
        if pace is not None:
            due = started + (index + 1) * slice_seconds / pace
            time.sleep(max(0.0, due - time.monotonic()))
        upload(bucket, folder, prefix, [name], emulator)
    put_marker(bucket, prefix, {}, emulator)
    return time.monotonic()


def final_status(bucket: str, key: str) -> dict[str, Any] | None:
    from tests.support.harness import status

    found = status(bucket, key)
    return found if found and found.get("state") in ("done", "failed") else None


def bench_progressive(minutes: list[float], pace: float) -> None:
    """Marker to done of a take whose chunks arrived at recording pace (followed while
    recorded, issue 13) and of the same take arriving all at once (made whole), each by
    ``whisp run`` on the Cloudflare queue emulator and an S3 server, in the same run."""
    import logging

    from tests.support.cfqueue import QueueEmulator
    from tests.support.harness import QUEUE, env_for, wait_for, whisp
    from tests.support.s3 import moto_server, s3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for length in minutes:
        folder = speech_take(length)
        results: dict[str, float] = {}
        with moto_server(), QueueEmulator() as emulator:
            bucket = f"progressive-{length:g}"
            s3().create_bucket(Bucket=bucket)
            emulator.create_queue(QUEUE, max_retries=100)
            for path, follow, when in (("followed", 1, pace), ("whole", 0, None)):
                prefix = f"recordings/bench/1/{path}/"
                key = f"recordings/bench/1/status_{path}.json"
                work = Path(tempfile.mkdtemp())
                env = env_for(
                    emulator,
                    bucket,
                    work,
                    FOLLOW_TAKES=follow,
                    LEASE_SECONDS=120,
                    WHISPER_THREADS=0,
                    LOG_LEVEL="INFO",
                )
                with whisp(env, work / "run.log") as w:
                    wait_for(lambda: w.events("whisp started"), 120, "the start")
                    landed = replay(emulator, bucket, folder, prefix, when)
                    done = wait_for(functools.partial(final_status, bucket, key), 7200, path)
                    results[path] = time.monotonic() - landed
                    assert done["state"] == "done", done.get("error")
                    assert bool(done.get("followed")) == bool(follow), done.get("followed")
                    w.stop()
                shutil.rmtree(work, ignore_errors=True)
        followed, whole = results["followed"], results["whole"]
        last_minute = whole / length  # the whole-take path's time per minute of media
        print(
            f"progressive {length:g} min 720p VP8 + speech, tiny.en captions, chunks at "
            f"{pace:g}x recording pace: marker to done followed {followed:.1f} s "
            f"(target <= 15 s + the last minute's time {last_minute:.1f} s = "
            f"{15 + last_minute:.1f} s), whole-take path {whole:.1f} s; "
            f"ratio whole/followed = {whole / followed:.1f}",
            flush=True,
        )


def bench_captioned(minutes: float) -> None:
    """The whole-take path on a 720p VP8 take with speech, captions on (tiny.en, the
    default settings): transcription heard while the first pass encodes (issue 13),
    against the two run one after the other, each timed alone in the same run (the
    first pass with ``--skip-transcription``, then the transcription of the take's speech
    in a fresh process, the model's loading included)."""
    import numpy as np

    from tests.support.speech import SPEECH_TAKE, engine_reads

    folder = speech_take(minutes)
    length = minutes * 60
    out = Path(tempfile.mkdtemp())
    try:
        overlapped, _ = timed([*WHISP, str(folder), "--out", str(out / "both")])
        encoded, _ = timed([*WHISP, str(folder), "--out", str(out / "e"), "--skip-transcription"])
        speech = np.tile(engine_reads(SPEECH_TAKE), int(minutes) // 3 + 1)[: int(length) * 16_000]
        samples = out / "speech.f32"
        speech.astype(np.float32).tofile(samples)
        code = (
            "import sys; from pipeline.transcribe import load_engine, read_samples; "
            "load_engine().transcribe(read_samples(sys.argv[1]), None)"
        )
        heard, _ = timed([sys.executable, "-c", code, str(samples)])
    finally:
        shutil.rmtree(out)
    alone = encoded + heard
    print(
        f"captioned {minutes:g} min 720p VP8 + speech, whisp process with tiny.en captions: "
        f"{overlapped:.1f} s = {overlapped / length:.3f}x its length (target <= 0.3x); one "
        f"after the other: first pass {encoded:.1f} s + transcription {heard:.1f} s = "
        f"{alone:.1f} s = {alone / length:.3f}x; ratio = {alone / overlapped:.2f}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "what",
        choices=[
            "video",
            "copy",
            "memory",
            "whisper",
            "speech",
            "queue",
            "delivery",
            "progressive",
            "captioned",
            "all",
        ],
    )
    p.add_argument(
        "--pace",
        type=float,
        default=1.0,
        help="progressive: chunks arrive this many times faster than recorded (quick runs)",
    )
    p.add_argument("--minutes", type=float, nargs="*", default=None)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--markers", type=int, default=20)
    p.add_argument("--repeat", type=int, default=8, help="times the 15 s speech is repeated")
    args = p.parse_args()
    minutes = args.minutes or []
    if args.what in ("queue", "all"):
        bench_queue(args.messages)
    if args.what in ("delivery", "all"):
        bench_delivery(args.markers)
    if args.what in ("whisper", "all"):
        bench_whisper(args.repeat)
    if args.what in ("speech", "all"):
        bench_speech()
    if args.what in ("copy", "all"):
        bench_copy(minutes[0] if minutes else 10)
    if args.what in ("video", "all"):
        bench_video(minutes[0] if minutes else 10)
    if args.what in ("memory", "all"):
        bench_memory(*(minutes if len(minutes) == 2 else [10, 60]))
    if args.what in ("captioned", "all"):
        bench_captioned(minutes[0] if minutes else 10)
    if args.what in ("progressive", "all"):
        bench_progressive(minutes or [10, 60], args.pace)


if __name__ == "__main__":
    main()
