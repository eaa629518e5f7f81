"""``whisp demo``: the embedded default end to end, with nothing but this machine.

Uploads a shipped take (real speech, recorded by Chromium) into a local folder laid out
like the bucket, runs the service on it (SOURCE=local), waits for the take's status to
say ``done``, shows the result and stops.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from importlib.resources import files
from pathlib import Path

from consumer import logs
from consumer.backends import make_source, make_storage
from consumer.service import Service
from consumer.settings import load_settings
from pipeline.probe import describe

TAKE = files("consumer") / "demo_take"
REF = ("demo-meeting", "1", "alice")


async def demo(folder: Path, timeout: float = 300.0) -> int:
    root = (folder / "bucket").resolve()
    settings = load_settings(
        source="local",
        local_root=root,
        work_dir=folder.resolve() / "work",
        log_format="console",
        log_level="WARNING",
        language="en",
        sweep_interval_seconds=1.0,
    )
    logs.configure(settings.log_level, settings.log_format, settings.secrets)
    take = root / "recordings" / REF[0] / REF[1]
    shutil.rmtree(take, ignore_errors=True)
    chunks = take / REF[2]
    chunks.mkdir(parents=True)
    service = Service(settings, make_storage(settings), make_source(settings))
    runner = asyncio.create_task(service.run())
    print(f"whisp demo: service running on {root} (SOURCE=local)")
    names = sorted(p.name for p in TAKE.iterdir() if p.name.endswith(".webm"))
    for name in names:  # as a browser uploads them, then the marker
        (chunks / name).write_bytes((TAKE / name).read_bytes())
    counts = {k: sum(n.startswith(k) for n in names) for k in ("video", "audio")}
    marker = {"video_chunks": counts["video"], "audio_chunks": counts["audio"]}
    (chunks / "done.json").write_text(json.dumps(marker))
    print(f"uploaded {len(names)} chunks and the marker to {chunks}")
    status_path = take / f"status_{REF[2]}.json"
    started = time.monotonic()
    status: dict[str, object] = {}
    while time.monotonic() - started < timeout:
        await asyncio.sleep(0.5)
        if status_path.exists():
            try:
                status = json.loads(status_path.read_text())
            except ValueError:
                continue
            if status.get("state") in ("done", "failed"):
                break
    service.stop()
    await runner
    if status.get("state") != "done":
        print(f"whisp demo: the take did not finish: {status.get('error') or 'timed out'}")
        return 1
    elapsed = time.monotonic() - started
    video = take / f"final_video_{REF[2]}.mp4"
    print(f"\ndone in {elapsed:.1f} s: {video}")
    length, streams = describe(video)
    print(f"  length {length:.2f} s")
    for info in streams:
        lang = info.language if info.kind == "subtitle" else ""
        print(f"  {info.kind:<8} {info.codec:<9} {info.detail} {lang}")
    srt = take / f"subtitle_{REF[2]}.srt"
    print(f"\nfirst captions ({srt.name}):")
    for block in srt.read_text().strip().split("\n\n")[:3]:
        print("  " + block.replace("\n", "\n  "))
    print(f"\nall outputs: {sorted(p.name for p in take.iterdir() if p.is_file())}")
    return 0
