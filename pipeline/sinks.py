"""Where the first pass's frames go: the video and audio encoders, the WAV output, and
Whisper's 16 kHz samples.

Timestamps: real ones are kept (variable frame rate, no duplicated frames); video frames
whose time does not increase are dropped; audio is resampled with ``async`` so gaps
become silence and overlaps are trimmed, padded with silence from the take's start.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.container import OutputContainer

from pipeline.errors import reason
from pipeline.letterbox import fit_into
from pipeline.options import MediaOptions
from pipeline.speech import SpeechWriter
from pipeline.timeline import MS, Packet

AUDIO_RATE = 48_000
# The intermediate (MPEG-TS) cannot hold negative times, and encoders start below zero
# (B-frame reordering, AAC priming). Everything is written this much later and moved
# back when the MP4 is made, so the muxer never shifts anything on its own.
LEAD = 1  # seconds


class AudioSink:
    """Continuous audio from decoded frames: AAC into the MP4, WAV, and Whisper samples."""

    def __init__(
        self,
        out: OutputContainer,
        work: Path,
        channel_layout: str,
        options: MediaOptions,
        warnings: list[str],
        on_speech: Callable[[int], None] | None = None,
    ) -> None:
        self.channel_layout = channel_layout if channel_layout in ("mono", "stereo") else "stereo"
        self.resampler = av.AudioResampler(
            format="fltp",
            layout=self.channel_layout,
            rate=AUDIO_RATE,
            # A frame size also keeps PyAV from passing matching frames through untouched,
            # which would skip the gap filling; 1024 is AAC's own frame size.
            frame_size=1024,
            options={"async": "1", "first_pts": "0"},
        )
        self.out = out
        self.stream = out.add_stream("aac", rate=AUDIO_RATE)
        self.stream.layout = self.channel_layout
        self.stream.bit_rate = options.audio_bitrate
        self.samples = 0
        self.wav: OutputContainer | None = None
        self.wav_stream: av.AudioStream | None = None
        self.wav_path: Path | None = None
        if options.audio_output == "wav":
            self.wav_path = work / "audio.wav"
            self.wav = av.open(str(self.wav_path), "w", format="wav")
            self.wav_stream = self.wav.add_stream("pcm_s16le", rate=AUDIO_RATE)
            self.wav_stream.layout = self.channel_layout
        self.speech = SpeechWriter(work / "speech.f32", on_speech) if options.speech else None
        self.warnings = warnings

    def write(self, frame: av.AudioFrame, seconds: float) -> None:
        rate = frame.sample_rate or AUDIO_RATE
        frame.pts = round(seconds * rate)
        frame.time_base = Fraction(1, rate)
        try:
            resampled = self.resampler.resample(frame)
        except (av.error.FFmpegError, ValueError) as e:
            self.warnings.append(f"an audio frame could not be resampled ({reason(e)})")
            return
        self._emit(resampled)

    def _emit(self, frames: list[av.AudioFrame]) -> None:
        for f in frames:
            self.samples += f.samples
            assert f.pts is not None
            f.pts += LEAD * AUDIO_RATE
            self.out.mux(self.stream.encode(f))
            if self.wav is not None and self.wav_stream is not None:
                self.wav.mux(self.wav_stream.encode(f))
            if self.speech is not None:
                self.speech.write(f)

    def close(self) -> None:
        self._emit(self.resampler.resample(None))
        self.out.mux(self.stream.encode(None))
        if self.wav is not None and self.wav_stream is not None:
            self.wav.mux(self.wav_stream.encode(None))
            self.wav.close()
        if self.speech is not None:
            self.speech.close()

    def abort(self) -> None:
        if self.wav is not None:
            self.wav.close()
        if self.speech is not None:
            self.speech.abort()


class VideoSink:
    """H.264 from decoded frames, or H.264 packets copied; times strictly increasing.
    Decoded frames of another size than the first are fitted into it (``letterbox``)."""

    def __init__(
        self,
        out: OutputContainer,
        size: tuple[int, int],
        copy_from: av.VideoStream | None,
        options: MediaOptions,
    ) -> None:
        self.out = out
        self.copy = copy_from is not None
        self.frames = 0
        self.dropped = 0
        self.damaged = 0  # copied packets the muxer refused
        self.last_ms = -1
        if copy_from is not None:
            self.stream = out.add_stream_from_template(copy_from)
            self.width, self.height = size
            return
        # libx264 with yuv420p needs even dimensions.
        self.width, self.height = max(2, size[0] & ~1), max(2, size[1] & ~1)
        self.stream = out.add_stream(
            "libx264", rate=30, options={"preset": options.preset, "crf": str(options.crf)}
        )
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        # VFR frames rescaled to 1/30 collide, and the MP4 muxer then refuses them
        # ("non monotonically increasing dts"): keep milliseconds.
        self.stream.codec_context.time_base = MS
        self.stream.codec_context.thread_type = "AUTO"

    def write(self, item: av.VideoFrame | Packet, seconds: float) -> None:
        ms = 0 if self.frames == 0 and not self.copy else round(seconds * 1000)
        if ms <= self.last_ms:
            self.dropped += 1
            return
        self.last_ms = ms
        self.frames += 1
        if isinstance(item, av.Packet):
            assert item.dts is not None and item.pts is not None  # set by demux._shifted
            shift = item.dts - ms
            item.dts = ms + LEAD * 1000
            item.pts = max(item.pts - shift, ms) + LEAD * 1000
            item.stream = self.stream
            try:
                self.out.mux(item)
            except av.error.FFmpegError:
                # The MPEG-TS muxer turns H.264's length-prefixed units into start codes,
                # and refuses a damaged packet whose lengths run past its end: left out.
                self.frames -= 1
                self.damaged += 1
            return
        # A picture of another size (a camera switch, a window resize) is fitted into
        # the take's first size, aspect kept and padded, never stretched.
        frame = fit_into(item, self.width, self.height)
        frame.pts = ms + LEAD * 1000
        frame.time_base = MS
        self.out.mux(self.stream.encode(frame))

    def close(self) -> None:
        if not self.copy:
            self.out.mux(self.stream.encode(None))
