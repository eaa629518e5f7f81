"""Settings: defaults that run locally, one clear line per bad value (all of them),
secrets hidden."""

from __future__ import annotations

import pytest

from consumer.logs import RedactSecrets
from consumer.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    for name in (
        "SOURCE",
        "CF_QUEUE_ID",
        "SQS_QUEUE_URL",
        "WEBHOOK_URL",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "METRICS_PORT",
        "VIDEO_PRESET",
        "S3_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_no_cloud_settings_means_the_local_source() -> None:
    settings = load_settings()
    assert settings.source == "local" and settings.sweep_interval == 5.0


def test_the_sweep_is_on_by_default_for_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQS_QUEUE_URL", "http://q")
    monkeypatch.setenv("S3_BUCKET_NAME", "b")
    assert load_settings().sweep_interval == 300.0
    monkeypatch.setenv("SWEEP_INTERVAL_SECONDS", "0")
    assert load_settings().sweep_interval == 0.0
    assert load_settings(source="local").sweep_interval == 5.0  # local always sweeps


def test_r2_jurisdiction_builds_its_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCOUNT_ID", "abc123")
    assert load_settings().endpoint_url == "https://abc123.r2.cloudflarestorage.com"
    monkeypatch.setenv("R2_JURISDICTION", "eu")
    assert load_settings().endpoint_url == "https://abc123.eu.r2.cloudflarestorage.com"
    monkeypatch.setenv("R2_JURISDICTION", "fedramp")
    assert load_settings().endpoint_url == "https://abc123.fedramp.r2.cloudflarestorage.com"
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:9000")
    assert load_settings().endpoint_url == "http://minio:9000"
    monkeypatch.setenv("R2_JURISDICTION", "mars")
    with pytest.raises(SettingsError, match="R2_JURISDICTION"):
        load_settings()


def test_missing_setting_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE", "cloudflare")
    with pytest.raises(SettingsError, match="CF_QUEUE_ID is required when SOURCE=cloudflare"):
        load_settings()


def test_invalid_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCURRENCY", "lots")
    with pytest.raises(SettingsError, match=r"^CONCURRENCY: "):
        load_settings()


def test_dotenv_is_read_and_r2_endpoint_built(tmp_path: object) -> None:
    from pathlib import Path

    Path(".env").write_text("ACCOUNT_ID=abc123\nS3_BUCKET_NAME=b\nSQS_QUEUE_URL=http://q\n")
    settings = load_settings()
    assert settings.source == "sqs"
    assert settings.endpoint_url == "https://abc123.r2.cloudflarestorage.com"


def test_batch_size_is_one_setting_for_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """BATCH_SIZE sizes every source's batches; CF_BATCH_SIZE, its former name, still works."""
    assert load_settings().batch_size == 10
    monkeypatch.setenv("CF_BATCH_SIZE", "3")
    assert load_settings().batch_size == 3
    monkeypatch.setenv("BATCH_SIZE", "7")
    assert load_settings().batch_size == 7
    monkeypatch.setenv("BATCH_SIZE", "0")
    with pytest.raises(SettingsError, match="BATCH_SIZE"):
        load_settings()


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "very-secret-key-123")
    monkeypatch.setenv("CF_API_TOKEN", "cf-token-456789")
    settings = load_settings()
    assert "very-secret-key-123" not in repr(settings) + str(settings.model_dump())
    redact = RedactSecrets(settings.secrets)
    event = redact(
        None, "info", {"event": "url https://x?t=cf-token-456789", "n": ["very-secret-key-123"]}
    )
    assert "cf-token-456789" not in str(event) and "very-secret-key-123" not in str(event)


def test_every_bad_setting_is_reported_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """Field errors and the checks across settings, all in one go: one line each."""
    monkeypatch.setenv("METRICS_PORT", "99999")
    monkeypatch.setenv("LOG_LEVEL", "loud")
    monkeypatch.setenv("VIDEO_PRESET", "nosuch")
    monkeypatch.setenv("SOURCE", "cloudflare")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    problems = caught.value.problems
    assert str(caught.value).splitlines() == problems
    assert [p.split(":")[0].split()[0] for p in problems] == [
        "VIDEO_PRESET",
        "LOG_LEVEL",
        "METRICS_PORT",
        "CF_QUEUE_ID",
        "CF_API_TOKEN",
        "ACCOUNT_ID",
        "S3_BUCKET_NAME",
        "S3_ACCESS_KEY_ID",
    ]
    assert "METRICS_PORT: Input should be less than or equal to 65535 (got '99999')" in problems


@pytest.mark.parametrize(
    ("given", "level"),
    [("info", "INFO"), ("debug", "DEBUG"), ("Warning", "WARNING"), ("warn", "WARNING")],
)
def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch, given: str, level: str) -> None:
    monkeypatch.setenv("LOG_LEVEL", given)
    assert load_settings().log_level == level


@pytest.mark.parametrize(("name", "value"), [("METRICS_PORT", "0"), ("METRICS_PORT", "65536")])
def test_metrics_port_is_a_port(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=rf"^{name}: "):
        load_settings()


def test_metrics_default_to_off_and_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PORT", "")
    settings = load_settings()
    assert settings.metrics_port is None and settings.metrics_host == "127.0.0.1"
    monkeypatch.setenv("METRICS_PORT", "9100")
    assert load_settings().metrics_port == 9100


def test_video_preset_is_one_of_libx264s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEO_PRESET", "Medium")
    assert load_settings().video_preset == "medium"
    monkeypatch.setenv("VIDEO_PRESET", "fastest")
    with pytest.raises(SettingsError, match=r"^VIDEO_PRESET: .*'ultrafast'.*\(got 'fastest'\)$"):
        load_settings()


def test_an_empty_webhook_secret_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_URL", "https://example.invalid/{take}")
    monkeypatch.setenv("WEBHOOK_SECRET", "")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == ["WEBHOOK_SECRET is required when WEBHOOK_URL is set"]
