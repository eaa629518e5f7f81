"""Where things are: the repository, and the real Chromium take with the script of its speech."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "chromium-vp8-timeslice"
if not FIXTURE.is_dir():  # a checkout without ../shared: the demo's take is the same one
    FIXTURE = Path(str(files("consumer") / "demo_take"))
SCRIPT = (
    "Good morning everyone. This is the weekly engineering sync. First item on the agenda "
    "is the release schedule. We plan to ship version two point one next Tuesday. Second "
    "item is the database migration, which finished last night without errors. Third, we "
    "need volunteers for the on call rotation in December."
)
