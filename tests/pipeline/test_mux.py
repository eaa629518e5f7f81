"""The second pass's small parts: the subtitle language code and the cue text."""

from __future__ import annotations

from faster_whisper.tokenizer import _LANGUAGE_CODES

from pipeline.mux import ass_dialogue, iso639_2


def test_every_whisper_language_has_the_code_mp4_players_read() -> None:
    """ISO 639-2/T as pycountry gave it before (deu, zho, fra), for all of Whisper's."""
    assert [iso639_2(c) for c in ("en", "de", "zh", "fr", "he", "nl")] == [
        "eng",
        "deu",
        "zho",
        "fra",
        "heb",
        "nld",
    ]
    codes = {code: iso639_2(code) for code in _LANGUAGE_CODES}
    assert all(len(c) == 3 and c != "und" for c in codes.values()), codes
    assert codes["jw"] == "jav" and codes["yue"] == "yue"


def test_unknown_or_missing_language_is_undetermined() -> None:
    assert iso639_2(None) == "und"
    assert iso639_2("") == "und"
    assert iso639_2("xx") == "und"


def test_cue_text_cannot_open_an_ass_override() -> None:
    """Braces start ASS override tags and a backslash an escape: neither gets through."""
    line = ass_dialogue("a {\\b1} b\nnext")
    assert line == "0,0,Default,,0,0,0,,a (/b1) b\\Nnext"
