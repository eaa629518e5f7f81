"""The second pass: the finished MP4 (and M4A) from the intermediate, with the captions.

``mux_final`` stream-copies the first pass's MPEG-TS into the MP4, moving its times back
by ``LEAD``, and adds the caption cues as a ``mov_text`` track with its language, with
``faststart``. A stream copy runs hundreds of times faster than real time, so
transcription can run between the passes without holding up the encode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import av
from av.container import OutputContainer
from av.stream import Stream
from av.subtitles.stream import SubtitleStream
from av.subtitles.subtitle import SubtitleSet

from pipeline.captions import Cue
from pipeline.sinks import LEAD

S = TypeVar("S", bound=Stream)

# The header the mov_text encoder needs; without a Default style it writes <font> tags.
ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n"
    "ScaledBorderAndShadow: yes\n\n[V4+ Styles]\n"
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0"
    "\n\n[Events]\n"
    "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)

# Whisper's languages (``whisper.tokenizer.LANGUAGES``, the same in faster-whisper), from
# its two-letter codes to the ISO 639-2/T codes MP4 players read ("deu", not "ger").
# Whisper names Javanese by the withdrawn code "jw" (ISO 639-1 "jv"). Its three-letter
# codes ("haw", "yue") are used as they are.
_ISO639_2_TABLE = (
    "en=eng zh=zho de=deu es=spa ru=rus ko=kor fr=fra ja=jpn pt=por tr=tur pl=pol ca=cat "
    "nl=nld ar=ara sv=swe it=ita id=ind hi=hin fi=fin vi=vie he=heb uk=ukr el=ell ms=msa "
    "cs=ces ro=ron da=dan hu=hun ta=tam no=nor th=tha ur=urd hr=hrv bg=bul lt=lit la=lat "
    "mi=mri ml=mal cy=cym sk=slk te=tel fa=fas lv=lav bn=ben sr=srp az=aze sl=slv kn=kan "
    "et=est mk=mkd br=bre eu=eus is=isl hy=hye ne=nep mn=mon bs=bos kk=kaz sq=sqi sw=swa "
    "gl=glg mr=mar pa=pan si=sin km=khm sn=sna yo=yor so=som af=afr oc=oci ka=kat be=bel "
    "tg=tgk sd=snd gu=guj am=amh yi=yid lo=lao uz=uzb fo=fao ht=hat ps=pus tk=tuk nn=nno "
    "mt=mlt sa=san lb=ltz my=mya bo=bod tl=tgl mg=mlg as=asm tt=tat ln=lin ha=hau ba=bak "
    "jw=jav su=sun"
)
ISO639_2: dict[str, str] = dict(re.findall(r"(\w+)=(\w+)", _ISO639_2_TABLE))


def iso639_2(language: str | None) -> str:
    """The three-letter code MP4 wants ("eng") for a Whisper language ("en")."""
    if not language:
        return "und"
    if len(language) == 3:
        return language
    return ISO639_2.get(language, "und")


def ass_dialogue(text: str) -> str:
    """A cue's text as the ASS dialogue line the mov_text encoder takes."""
    escaped = text.replace("\\", "/").replace("{", "(").replace("}", ")")
    return "0,0,Default,,0,0,0,," + escaped.replace("\n", "\\N")


def mux_final(
    encoded: Path,
    out_path: Path,
    cues: Sequence[Cue],
    language: str | None = None,
) -> None:
    """Second pass: the MP4, stream-copied from ``encoded`` with the cues as a mov_text
    track, faststart. Only this MP4's own sample index grows with the take's length."""
    tmp = out_path.with_suffix(".partial.mp4")
    with (
        av.open(str(encoded)) as src,
        av.open(str(tmp), "w", format="mp4", container_options={"movflags": "+faststart"}) as out,
    ):
        mapping = {s.index: out.add_stream_from_template(s) for s in src.streams}
        subs = None
        if cues:
            subs = out.add_stream("mov_text")
            subs.codec_context.subtitle_header = ASS_HEADER.encode()
            subs.metadata["language"] = iso639_2(language)
        out.start_encoding()
        pending = list(cues)

        def put_cues(until: float) -> None:
            while subs is not None and pending and pending[0].start <= until:
                _mux_cue(out, subs, pending.pop(0))

        for packet in _unlead(src.demux()):
            assert packet.dts is not None  # _unlead keeps timed packets only
            put_cues(float(packet.dts * packet.time_base))
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
        put_cues(float("inf"))
    tmp.replace(out_path)


def remux_audio(encoded: Path, out_path: Path) -> None:
    """The encoded AAC track, copied into an M4A file."""
    with (
        av.open(str(encoded)) as src,
        av.open(
            str(out_path), "w", format="ipod", container_options={"movflags": "+faststart"}
        ) as out,
    ):
        stream = src.streams.audio[0]
        target = out.add_stream_from_template(stream)
        for packet in _unlead(src.demux(stream)):
            packet.stream = target
            out.mux(packet)


def _unlead(packets: Iterable[av.Packet[S]]) -> Iterator[av.Packet[S]]:
    """The intermediate's packets with their times moved back by ``LEAD``."""
    for packet in packets:
        if packet.size == 0 or packet.dts is None or packet.time_base is None:
            continue
        lead = round(LEAD / packet.time_base)
        packet.dts -= lead
        if packet.pts is not None:
            packet.pts -= lead
        yield packet


def _mux_cue(out: OutputContainer, stream: SubtitleStream, cue: Cue) -> None:
    """One cue as a mov_text packet; times in the stream's time base (read after
    ``start_encoding``)."""
    tb = stream.time_base
    assert tb is not None
    start = round(cue.start / tb)
    end = round(cue.end / tb)
    subtitle = SubtitleSet.create(
        text=ass_dialogue(cue.text).encode(), start=0, end=end - start, pts=start
    )
    packet = stream.codec_context.encode_subtitle(subtitle)
    packet.stream = stream
    packet.pts = packet.dts = start
    packet.duration = end - start
    packet.time_base = tb
    out.mux(packet)
