"""Fuzzing with Hypothesis: chunk names and counts, and media mutated from real chunks.

Issue 11's proof, kept: whatever a client uploads, the pipeline ends in a result whose
warnings explain what was lost, or in a ``TakeError`` with one short line that names
chunks, never this machine's paths; never another exception, never a file outside the
work and output folders, in bounded time and memory. See docs/reliability.md.

CI runs a fixed, derandomized set of examples (well under a minute); a longer campaign:
``WHISP_FUZZ_EXAMPLES=2000 pytest tests/pipeline/test_fuzz_media.py`` (each property
then runs that many examples).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import struct
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from pipeline.chunks import missing_chunks, parse_chunk_name, plan_take
from pipeline.errors import MissingChunks, TakeError
from pipeline.losses import MAX_SHORT_END
from pipeline.options import MediaOptions
from pipeline.process import TakeOptions, TakeResult, process_take
from tests.support.paths import FIXTURE
from tests.support.takes import CLUSTER, header_only, make_take

EXAMPLES = int(os.environ.get("WHISP_FUZZ_EXAMPLES", "0"))


def fuzz(ci_examples: int) -> settings:
    """Hypothesis settings: derandomized, no example database (CI sees the same examples
    every run), no deadline (a take takes what it takes; time is a property here). A long
    campaign reports a failing example as found: shrinking one that runs a take can take
    longer than the campaign."""
    return settings(
        max_examples=EXAMPLES or ci_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[Phase.explicit, Phase.generate] if EXAMPLES else list(Phase),
    )


# An absolute path, as the OS and FFmpeg write them.
LOCAL_PATH = re.compile(r"(^|[\s'\"(])/[^\s/]+/")
CHUNK_IN_MESSAGE = re.compile(r"\b(?:video|audio|av)_\d+\.(?:webm|mkv|mp4)\b")


def check_error(error: TakeError, folder: Path) -> None:
    """One short line, no local path; a chunk it names is one of the take's."""
    message = str(error)
    assert message and "\n" not in message and len(message) < 300, message
    assert str(folder.parent) not in message and not LOCAL_PATH.search(message), message
    assert isinstance(error.kind, str) and error.kind
    present = {p.name for p in folder.rglob("*")}
    for name in CHUNK_IN_MESSAGE.findall(message):
        assert name in present, message


# --- (a) chunk names and counts ---------------------------------------------------

KINDS = st.sampled_from(["video", "audio", "av", "Video", "vid", ""])
EXTS = st.sampled_from(["webm", "mkv", "mp4", "WEBM", "txt", "webm.part", ""])
UNICODE_DIGITS = st.text(st.characters(categories=["Nd"]), min_size=1, max_size=4)


@st.composite
def chunk_names(draw: st.DrawFn) -> str:
    """A name as a bucket key's last part could hold it: valid, padded, huge, with
    unicode digits, a trailing newline, or any text a file name can be."""
    kind, ext = draw(KINDS), draw(EXTS)
    index = draw(
        st.one_of(
            st.integers(0, 40).map(str),
            st.integers(0, 10**30).map(str),
            st.integers(0, 99).map(lambda n: str(n).zfill(12)),
            UNICODE_DIGITS,
            st.just("-1"),
            st.just("1e3"),
        )
    )
    name = draw(
        st.one_of(
            st.just(f"{kind}_{index}.{ext}"),
            st.just(f"{kind}_{index}.{ext}\n"),
            st.text(min_size=1, max_size=40),
        )
    )
    if "/" in name or "\0" in name or name in (".", "..") or len(name.encode()) > 200:
        return "junk"
    return name


@given(name=st.one_of(chunk_names(), st.text(max_size=30)))
@example(name="video_\u0663.webm")  # an Arabic-Indic 3 was chunk 3
@example(name="video_1.webm\n")  # a trailing newline went into a local file name
@fuzz(500)
def test_a_chunk_name_is_plain_ascii_and_means_one_number(name: str) -> None:
    """What the consumer relies on to use a key's last part as a local file name."""
    parsed = parse_chunk_name(name)
    if parsed is not None:
        kind, index = parsed
        assert name.isascii() and name.isprintable() and "/" not in name
        assert name.startswith(f"{kind}_") and int(name.split("_")[1].split(".")[0]) == index
        assert 0 <= index < 10**9


CONTENTS = st.sampled_from([b"", b"\x1a\x45\xdf\xa3" + b"\x00" * 8, b"notmedia" * 3])
COUNTS = st.one_of(st.none(), st.integers(-3, 50), st.integers(0, 10**15))


@given(
    names=st.lists(
        st.tuples(chunk_names(), st.one_of(st.none(), chunk_names()), CONTENTS), max_size=12
    ),
    video=COUNTS,
    audio=COUNTS,
    max_chunks=st.one_of(st.none(), st.integers(0, 10**6)),
    max_bytes=st.one_of(st.none(), st.integers(0, 100)),
    bulk=st.tuples(
        st.sampled_from(["video", "audio", "av"]),
        st.sampled_from([0, 0, 3, 40, 300]),
        st.booleans(),
    ),
)
@example(  # every later chunk named in one line: kilobytes in the status record
    names=[("video_250.webm", None, b"notmedia")],
    video=None,
    audio=None,
    max_chunks=None,
    max_bytes=None,
    bulk=("video", 300, True),
)
@fuzz(100)
def test_any_chunk_names_and_counts_plan_or_fail_in_one_short_line(
    tmp_path_factory: pytest.TempPathFactory,
    names: list[tuple[str, str | None, bytes]],
    video: int | None,
    audio: int | None,
    max_chunks: int | None,
    max_bytes: int | None,
    bulk: tuple[str, int, bool],
) -> None:
    """Names become files (a second name nests one in a folder, as a nested key would),
    beside up to 300 chunks of one kind (with a header, or twice each under a padded
    name); ``plan_take`` returns a plan or raises a ``TakeError``, small and quickly."""
    folder = tmp_path_factory.mktemp("names")
    kind, count, doubled = bulk
    for n in range(count):
        (folder / f"{kind}_{n}.webm").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(8))
        if doubled and n % 2:
            (folder / f"{kind}_0{n}.webm").write_bytes(b"x")
    for name, nested, content in names:
        path = folder / name if nested is None else folder / name / nested
        if path.parent.is_file() or path.is_dir():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    tracemalloc.start()
    started = time.monotonic()
    try:
        plan = plan_take(
            folder,
            expected_video=video,
            expected_audio=audio,
            max_chunks=max_chunks,
            max_total_bytes=max_bytes,
        )
    except TakeError as e:
        check_error(e, folder)
    else:
        for track in plan.tracks:  # only direct children with their exact names
            assert all(c.path.parent == folder for c in track.chunks)
            assert all(c.path.name.isascii() and "\n" not in c.path.name for c in track.chunks)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        shutil.rmtree(folder)
    assert peak < 4 << 20 and time.monotonic() - started < 2


@given(
    present=st.dictionaries(
        st.sampled_from(["video", "audio", "av"]),
        st.lists(st.integers(0, 10**18), max_size=30),
        max_size=3,
    ),
    video=COUNTS,
    audio=COUNTS,
    max_chunks=st.one_of(st.none(), st.integers(0, 10**6)),
)
@fuzz(300)
def test_missing_chunks_stay_small_whatever_the_numbers(
    present: dict[str, list[int]], video: int | None, audio: int | None, max_chunks: int | None
) -> None:
    tracemalloc.start()
    try:
        missing = missing_chunks(present, video, audio, max_chunks=max_chunks)
        message = str(MissingChunks(missing)) if missing else ""
    except TakeError as e:
        message = str(e)
        missing = {}
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert "\n" not in message and len(message) < 1024
    # Runs, never one entry per missing chunk: at most one more than the chunks present.
    assert all(len(ranges) <= 1 + len(present.get(k, [])) for k, ranges in missing.items())
    assert peak < 1 << 20


# --- (b) media mutated from real chunks ---------------------------------------------


@dataclass(frozen=True)
class Base:
    """A take to mutate, and what it gives undamaged."""

    folder: Path
    frames: int
    duration: float
    audio: bool


MEDIA = MediaOptions(
    preset="ultrafast",
    audio_output="wav",
    max_duration=60.0,
    max_width=1280,
    max_height=720,
)


def run_take(folder: Path, work: Path) -> TakeResult:
    options = TakeOptions(
        "u1", media=MEDIA, transcribe=False, max_total_bytes=8 << 20, max_chunks=500
    )
    return process_take(folder, work / "out", work / "work", options)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Base]:
    """Small generated takes (split VP8, restarted VP8, split H.264 that is copied) and
    the first 6 s of the real Chromium take, each with its undamaged result."""
    root = tmp_path_factory.mktemp("bases")
    make_take(root / "split", duration=4.0, size=(160, 120), chunks=3)
    make_take(root / "restarted", duration=4.0, size=(160, 120), chunks=3, layout="restarted")
    make_take(root / "h264", duration=4.0, size=(160, 120), chunks=3, video_codec="h264")
    (root / "chromium").mkdir()
    for kind in ("video", "audio"):
        for n in range(3):
            shutil.copyfile(FIXTURE / f"{kind}_{n}.webm", root / "chromium" / f"{kind}_{n}.webm")
    found = {}
    for name in ("split", "restarted", "h264", "chromium"):
        result = run_take(root / name, root / f"{name}-run")
        assert result.warnings == [] and result.video is not None
        found[name] = Base(root / name, result.video["frames"], result.duration, result.audio)
    return found


# EBML elements a header may be patched in: ID, and whether the value is a float.
HEADER_FIELDS = {
    "PixelWidth": (b"\xb0", False),
    "PixelHeight": (b"\xba", False),
    "TimecodeScale": (b"\x2a\xd7\xb1", False),
    "Duration": (b"\x44\x89", True),
    "SamplingFrequency": (b"\xb5", True),
    "Channels": (b"\x9f", False),
}
HUGE_VALUES = [0, 1, 2, 3, 0x7FFF, 0xFFFF, 2**31, 2**64 - 1, -1.0, float("nan"), float("inf")]


def patch_element(data: bytes, element: bytes, is_float: bool, value: float, limit: int) -> bytes:
    """The first ``element`` before ``limit`` rewritten in place to ``value`` (clamped to
    its width; a float element gets a float), sizes unchanged."""
    at = data.find(element, 0, limit)
    while at >= 0:
        size_at = at + len(element)
        if size_at < len(data) and 0x81 <= data[size_at] <= 0x88:
            width = data[size_at] & 0x0F
            start = size_at + 1
            if is_float and width in (4, 8):
                packed = struct.pack(">f" if width == 4 else ">d", float(value))
            elif is_float:
                return data
            else:
                number = int(value) if value == value and abs(value) != float("inf") else 0
                packed = max(0, min(number, 256**width - 1)).to_bytes(width, "big")
            return data[:start] + packed + data[start + width :]
        at = data.find(element, at + 1, limit)
    return data


NON_MEDIA = [
    b"",
    b"\x00" * 4000,
    b"<html><body>502 Bad Gateway</body></html>",
    b'{"video_chunks": 3}',
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
    b"\x1a\x45\xdf\xa3",
    b"\x1f\x43\xb6\x75" * 100,
]

MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 9), st.floats(0, 1)),
    st.tuples(
        st.just("flip"), st.integers(0, 9), st.lists(st.floats(0, 1), min_size=1, max_size=8)
    ),
    st.tuples(
        st.just("header"),
        st.integers(0, 9),
        st.sampled_from(sorted(HEADER_FIELDS)),
        st.sampled_from(HUGE_VALUES),
    ),
    st.tuples(st.just("cluster_time"), st.integers(0, 9), st.sampled_from([0, 2**15, 2**40])),
    st.tuples(
        st.just("replace"), st.integers(0, 9), st.sampled_from(NON_MEDIA), st.binary(max_size=64)
    ),
    st.tuples(st.just("pad"), st.integers(0, 9), st.integers(1, 20_000)),
    st.tuples(st.just("debris"), st.integers(0, 9), st.integers(0, 2000)),
    st.tuples(st.just("swap"), st.integers(0, 9), st.integers(0, 9)),
)


def chunks_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def mutate(folder: Path, mutation: tuple[Any, ...]) -> None:
    """Apply one mutation to the take in ``folder``; the chunk is chosen by index."""
    op, which, *params = mutation
    chunks = chunks_of(folder)
    chunk = chunks[which % len(chunks)]
    data = chunk.read_bytes()
    if op == "truncate":
        chunk.write_bytes(data[: int(len(data) * params[0])])
    elif op == "flip":
        flipped = bytearray(data)
        for position in params[0]:
            if flipped:
                at = min(len(flipped) - 1, int(len(flipped) * position))
                flipped[at] ^= 1 << (at % 8)
        chunk.write_bytes(bytes(flipped))
    elif op == "header":
        element, is_float = HEADER_FIELDS[params[0]]
        limit = data.find(CLUSTER) if CLUSTER in data else len(data)
        chunk.write_bytes(patch_element(data, element, is_float, params[1], limit))
    elif op == "cluster_time":  # a Cluster's Timecode (0xE7): media jumps in time
        at = data.find(CLUSTER)
        limit = at + 24 if at >= 0 else 0
        chunk.write_bytes(patch_element(data, b"\xe7", False, params[0], limit))
    elif op == "replace":
        chunk.write_bytes(params[0] + params[1])
    elif op == "pad":
        chunk.write_bytes(data + bytes(params[0]))
    elif op == "debris":  # a last chunk that is a header only, zero-padded
        kind, suffix = chunk.name.split("_")[0], chunk.suffix
        last = max(int(p.stem.split("_")[1]) for p in folder.glob(f"{kind}_*"))
        try:
            head = header_only(data)
        except (IndexError, ValueError):  # a header already damaged: its first bytes
            head = data[:120]
        (folder / f"{kind}_{last + 1}{suffix}").write_bytes(head + bytes(params[0]))
    elif op == "swap":
        other = chunks[params[0] % len(chunks)]
        other_data = other.read_bytes()
        other.write_bytes(data)
        chunk.write_bytes(other_data)


# Names whisp's files have: one of them appearing outside the example's folders is a leak.
OWN_NAMES = re.compile(r"encoded|speech|\.f32$|audio\.wav|final_|subtitle_|transcript_|partial")


def own_files(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir() if OWN_NAMES.search(p.name)}
    except OSError:
        return set()


def tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def rss_start(bases: dict[str, Base]) -> float:
    """The process's peak memory once every base take has been made once."""
    return max_rss_mib()


@dataclass
class Outcome:
    result: TakeResult | None
    error: TakeError | None


def explained(base: Base, result: TakeResult) -> bool:
    """Whether a result that holds less than the undamaged take says why. Losses are
    told from a gap over 1 s or an end over 2 s short (``pipeline.losses``): a loss of
    more than those 2 s, in frames or in length, must be in the warnings."""
    frames = result.video["frames"] if result.video is not None else 0
    rate = base.frames / base.duration
    lost = max((base.frames - frames) / rate, base.duration - result.duration)
    if lost > MAX_SHORT_END + 0.25 or (base.audio and not result.audio):
        return bool(result.warnings)
    return True


@given(
    base=st.sampled_from(["split", "restarted", "h264", "chromium"]),
    mutations=st.lists(MUTATIONS, min_size=1, max_size=3),
)
@fuzz(60)
def test_mutated_media_ends_in_an_explained_result_or_a_clear_error(
    bases: dict[str, Base],
    rss_start: float,
    tmp_path_factory: pytest.TempPathFactory,
    base: str,
    mutations: list[tuple[Any, ...]],
) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    take = root / "in"
    shutil.copytree(bases[base].folder, take)
    for mutation in mutations:
        mutate(take, mutation)
    before = tree(root)
    outside = {folder: own_files(folder) for folder in (Path("/tmp"), Path.cwd())}
    started = time.monotonic()
    outcome = Outcome(None, None)
    try:
        outcome.result = run_take(take, root)
    except TakeError as e:
        outcome.error = e
    elapsed = time.monotonic() - started
    event(f"{base}: {type(outcome.error).__name__ if outcome.error else 'made'}")
    if outcome.result is not None and outcome.result.warnings:
        event(f"{base}: made, with warnings")
    after = tree(root)
    try:
        if outcome.error is not None:
            check_error(outcome.error, take)
        else:
            assert outcome.result is not None
            assert explained(bases[base], outcome.result), (outcome.result, mutations)
            for path in outcome.result.outputs.values():
                assert path.is_relative_to(root / "out")
            with av.open(str(outcome.result.outputs["video"])) as container:
                assert container.streams  # a whole MP4, never a half-written one
        new = {p for p in after if p not in before}
        assert all(p.startswith(("work/", "out/")) for p in new), new
        assert {p: s for p, s in after.items() if p.startswith("in/")} == {
            p: s for p, s in before.items() if p.startswith("in/")
        }
        for folder, names in outside.items():
            assert own_files(folder) <= names, folder
        assert elapsed < 30, elapsed
        assert max_rss_mib() - rss_start < 1024
    finally:
        shutil.rmtree(root)


def test_fuzz_bases_are_what_they_claim(bases: dict[str, Base]) -> None:
    """The undamaged takes the fuzzing starts from: frames and lengths as recorded."""
    assert [bases[n].frames for n in ("split", "restarted", "h264")] == [120, 120, 120]
    assert 80 < bases["chromium"].frames < 110 and bases["chromium"].duration > 5.5
