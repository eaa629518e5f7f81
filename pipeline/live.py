"""A take followed while it is recorded: its chunk folder fills as the chunks land, and the
first pass reads each chunk as it comes (issue 13).

The consumer downloads every new chunk into the take's chunk folder, whole (a chunk
appears by a rename), and once the take has ended and is claimed, writes the take's
options into ``final.json`` beside the folder: from then on the folder holds exactly the
take's chunks. ``LiveTake.plan`` turns the growing folder into a plan that ``encode_take``
reads like any other: each ``LiveTrack`` hands out its next chunk when it has landed and
waits otherwise. A split track's next chunk goes to the demuxer at once (the stream
carries on); a restarted track's chunk is held back until the one after it has come, as
a last chunk may be a restarted recorder's header-only debris, which the take skips.

What a live track cannot know before the take ends is checked at its end against the
whole-take path's plan of the finished folder (``plan_take``, ``without_debris``): the
same kinds and joins, and the chunks read so far the first of the final ones, in order.
Else ``Diverged``: the take is made whole, as if never followed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.chunks import (
    Chunk,
    ChunkPlan,
    Join,
    Track,
    has_header,
    parse_chunk_name,
    plan_take,
)
from pipeline.copyable import copy_blocker
from pipeline.encode import COPY_CODECS
from pipeline.errors import TakeError
from pipeline.probe import debris, probe, without_debris
from pipeline.process import Stage, TakeOptions, TakeProgress, TakeResult, make_take, process_take

log = logging.getLogger(__name__)

FINAL_NAME = "final.json"
# How often a live track looks for its next chunk (a stat of the folder) while waiting.
POLL_SECONDS = 0.1
# Before the tracks are known: every kind has its second chunk (which tells its join),
# and some kind its third (by then every recorder of the take has uploaded its first).
CHUNKS_TO_START = 3


class Diverged(Exception):
    """What was read while following is not the beginning of the finished take (or could
    not be followed): the take is made whole."""


def write_final(folder: Path, options: TakeOptions) -> None:
    """Say the take has ended (``options`` are its own, from its marker): the chunk folder
    ``folder`` now holds exactly its chunks. Written by a rename: read whole or not at all."""
    part = folder.parent / f".{FINAL_NAME}.part"
    part.write_text(json.dumps(options.to_json()))
    part.replace(folder.parent / FINAL_NAME)


@dataclass
class Ended:
    """What the end of the take brought: its options, and its plan as the whole-take path
    makes it (or the error that path would fail with)."""

    options: TakeOptions
    plan: ChunkPlan[Track] | None
    error: TakeError | None = None

    def track(self, kind: str) -> Track:
        """The final plan's track of ``kind``; ``Diverged`` when it has none."""
        if self.error is not None:
            raise Diverged(f"the finished take is not made as followed: {self.error}")
        assert self.plan is not None
        for track in self.plan.tracks:
            if track.kind == kind:
                return track
        raise Diverged(f"the finished take has no {kind} track")


@dataclass
class LiveTake:
    """A chunk folder being filled while the take is recorded (see the module).

    ``check`` is called while waiting, and raises to give the take up (the service
    stopped following it)."""

    folder: Path
    check: Callable[[], None] = lambda: None
    poll: float = POLL_SECONDS
    warnings: list[str] = field(default_factory=list)
    tracks: list[LiveTrack] = field(default_factory=list)
    ended_at: float | None = None  # time.monotonic() when the end was seen
    _ended: Ended | None = None
    _seen: tuple[int, dict[str, dict[int, Chunk]]] | None = None

    @property
    def final_path(self) -> Path:
        return self.folder.parent / FINAL_NAME

    def ended(self) -> Ended | None:
        """The take's end, once the consumer has said it (``write_final``); else None."""
        if self._ended is None and self.final_path.exists():
            self.ended_at = time.monotonic()
            options = TakeOptions.from_json(json.loads(self.final_path.read_text()))
            try:
                plan = without_debris(
                    plan_take(
                        self.folder,
                        expected_video=options.expected_video,
                        expected_audio=options.expected_audio,
                        max_total_bytes=options.max_total_bytes,
                        max_chunks=options.max_chunks,
                    )
                )
            except TakeError as e:
                self._ended = Ended(options, None, e)
            else:
                self._ended = Ended(options, plan)
                self.warnings[:] = plan.warnings  # the plan's warnings are the take's
        return self._ended

    def wait_ended(self) -> Ended:
        """Wait for the take's end."""
        while (ended := self.ended()) is None:
            self.wait()
        return ended

    def wait(self) -> None:
        self.check()
        time.sleep(self.poll)

    def chunks(self) -> dict[str, dict[int, Chunk]]:
        """The folder's chunks now, by kind and index (read again when the folder changed:
        a chunk lands by a rename, which changes the folder's time)."""
        stamp = os.stat(self.folder).st_mtime_ns
        if self._seen is None or self._seen[0] != stamp:
            found: dict[str, dict[int, Chunk]] = {}
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    parsed = parse_chunk_name(entry.name)
                    if parsed is None or not entry.is_file():
                        continue
                    kind, index = parsed
                    if index in found.setdefault(kind, {}):
                        raise Diverged(f"two {kind} chunks have the index {index}")
                    chunk = Chunk(kind, index, Path(entry.path), entry.stat().st_size)
                    found[kind][index] = chunk
            self._seen = (stamp, found)
        return self._seen[1]

    def plan(self) -> ChunkPlan[LiveTrack] | None:
        """The take's tracks as they can be told while it is recorded (see
        ``CHUNKS_TO_START``); None when the take ended before that: it is made whole."""
        while self.ended() is None:
            found = self.chunks()
            counts = [len(by_index) for by_index in found.values()]
            if counts and min(counts) >= 2 and max(counts) >= CHUNKS_TO_START:
                return self._tracks(found)
            self.wait()
        return None

    def _tracks(self, found: dict[str, dict[int, Chunk]]) -> ChunkPlan[LiveTrack]:
        if "av" in found and found.keys() & {"video", "audio"}:
            raise Diverged("the take mixes av_ chunks with video_ or audio_ chunks")
        tracks: dict[str, LiveTrack] = {}
        for kind, by_index in found.items():
            first = by_index[min(by_index)]
            second = by_index.get(first.index + 1)
            if first.index > 1 or second is None:
                raise Diverged(f"the {kind} chunks do not start at 0 or 1 without a gap")
            if first.size == 0 or not has_header(first.path):
                raise Diverged(f"the first {kind} chunk is empty or has no header")
            join = Join.RESTARTED if has_header(second.path) else Join.SPLIT
            tracks[kind] = LiveTrack(self, kind, join, first)
        self.tracks = list(tracks.values())
        video = tracks.get("av") or tracks.get("video")
        return ChunkPlan(video, tracks.get("audio"), self.warnings)

    def consistent(self) -> bool:
        """Whether the finished take has the tracks followed, each beginning with what was
        read of it so far."""
        ended = self.ended()
        if ended is None or ended.plan is None:
            return False
        kinds = {track.kind for track in ended.plan.tracks}
        followed = {track.kind for track in self.tracks}
        return kinds == followed and all(track.consistent() for track in self.tracks)


class LiveTrack:
    """A track of a take still being recorded (see the module); a ``TrackSource``."""

    def __init__(self, take: LiveTake, kind: str, join: Join, first: Chunk) -> None:
        self.take = take
        self.kind = kind
        self.join = join
        self.first = first
        self.size = 0
        self.fed: list[Chunk] = []

    def feed(self) -> Iterator[Chunk]:
        index = self.first.index
        while (ended := self.take.ended()) is None:
            chunk = self.take.chunks().get(self.kind, {}).get(index)
            held_back = self.join is Join.RESTARTED and chunk is not None
            if held_back and self.take.chunks()[self.kind].get(index + 1) is None:
                chunk = None  # it may be the last: debris, skipped by the finished take
            if chunk is None:
                self.take.wait()
                continue
            index += 1
            if chunk.size == 0 or (self.join is Join.RESTARTED and _debris(chunk)):
                continue  # skipped by the finished take's plan too, with a warning
            yield self._fed(chunk)
        track = ended.track(self.kind)
        if track.join is not self.join:
            raise Diverged(f"the finished {self.kind} track is {track.join}, not {self.join}")
        if not self.consistent():
            raise Diverged(f"the {self.kind} chunks read are not the finished take's first")
        for chunk in track.chunks[len(self.fed) :]:
            yield self._fed(chunk)

    def _fed(self, chunk: Chunk) -> Chunk:
        self.fed.append(chunk)
        self.size += chunk.size
        return chunk

    def consistent(self) -> bool:
        """Whether the chunks fed so far are the finished track's first ones."""
        ended = self.take.ended()
        if ended is None or ended.plan is None:
            return False
        try:
            track = ended.track(self.kind)
        except Diverged:
            return False
        finals = [(c.path.name, c.size) for c in track.chunks[: len(self.fed)]]
        return finals == [(c.path.name, c.size) for c in self.fed]


def _debris(chunk: Chunk) -> bool:
    """A restarted chunk without frames: the finished take's plan skips it too."""
    try:
        return debris(chunk.path)
    except TakeError:
        return False  # it held media and cannot be read: the first pass says so


def _check_copy(live: LiveTake, options: TakeOptions) -> None:
    """An H.264 source was copied unread (``encode_take``'s ``copy_checked``); read whole
    now, it must show what the whole-take path would have copied too."""
    ended = live.wait_ended()
    if ended.plan is None or ended.plan.video is None:
        return
    first = probe(ended.plan.video.first.path)
    if first.codec in COPY_CODECS:
        blocker = copy_blocker(ended.plan.video, (first.width, first.height), options.media)
        if blocker is not None:
            raise Diverged(f"the H.264 video was copied, but {blocker}")


def follow_take(
    work: Path,
    out_dir: Path,
    expected: TakeOptions,
    on_stage: Stage | None = None,
    check: Callable[[], None] = lambda: None,
) -> TakeResult:
    """Make a take from ``work/chunks`` while it is being recorded: the first pass reads
    each chunk as it lands, with the options the service ``expected``; the take's own
    options come with its end (``write_final``), and the rest is made with them. A take
    that cannot be followed, or was not followed as it ended, is made whole from the
    folder (see the module). ``check`` raises to give the take up."""
    live = LiveTake(work / "chunks", check)
    stage = TakeProgress(on_stage, transcribe=True)

    def ended() -> TakeOptions:
        options = live.wait_ended().options
        if options.media != expected.media:
            raise Diverged("the take's media options are not those it was followed with")
        if options.transcribe and not expected.transcribe:
            raise Diverged("the take asks for captions, and was followed without its speech")
        if not live.consistent():
            raise Diverged("the finished take's tracks are not those followed")
        _check_copy(live, options)
        return options

    try:
        plan = live.plan()
        if plan is not None:
            started = time.monotonic()
            result = make_take(plan, out_dir, work / "live", expected, stage, ended)
            # The first pass ran while the take was recorded: what counts is what was
            # left once it ended ("encode"), and how long it was followed.
            assert live.ended_at is not None
            following = round(live.ended_at - started, 3)
            result.timings["encode"] = round(max(0.0, result.timings["encode"] - following), 3)
            result.timings["following"] = following
            result.followed = True
            return result
        reason = "it ended before it could be followed"
    except Diverged as e:
        reason = str(e)
    except TakeError as e:
        live.wait_ended()
        if live.consistent():  # the whole take begins with what failed: it fails the same
            raise
        reason = f"{e.kind} on what was followed, not the finished take"
    log.info("the take is made whole: %s", reason)
    shutil.rmtree(work / "live", ignore_errors=True)
    options = live.wait_ended().options
    return process_take(live.folder, out_dir, work / "whole", options, on_stage)
