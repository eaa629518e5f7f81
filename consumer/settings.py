"""Every setting of the service: one pydantic-settings class, from the environment and .env.

Every missing or invalid setting stops start-up with one line naming it: ``load_settings``
collects them all into one ``SettingsError`` (an operator fixes them in one go, not one
restart at a time). Secrets are ``SecretStr``: they print as ``**********`` wherever
they end up.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

Source = Literal["cloudflare", "sqs", "local"]
# libx264's presets (x264 --fullhelp); anything else fails only when the encoder opens.
Preset = Literal[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
]
X264_PRESETS: tuple[str, ...] = get_args(Preset)
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
# What WEBHOOK_URL may name: the take's ids, nothing else (a client never picks the URL).
WEBHOOK_FIELDS = ("meeting_id", "take", "user_id")


class SettingsError(Exception):
    """Settings that stop start-up: one line per problem, each naming its setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # The bucket (names kept from the original service).
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    account_id: str | None = None
    s3_bucket_name: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "auto"
    # An R2 bucket in a jurisdiction (eu, fedramp) has an endpoint of its own.
    r2_jurisdiction: Literal["eu", "fedramp"] | None = None

    # Where events come from; unset means local unless a queue is configured.
    source: Source | None = None
    cf_queue_id: str | None = None
    cf_api_token: SecretStr | None = None
    cf_api_base: str = "https://api.cloudflare.com/client/v4"
    # Messages asked for at once, whatever the source; CF_BATCH_SIZE is its former name.
    batch_size: int = Field(
        10, ge=1, le=100, validation_alias=AliasChoices("batch_size", "cf_batch_size")
    )
    cf_visibility_timeout_ms: int = Field(900_000, ge=1_000, le=43_200_000)
    sqs_queue_url: str | None = None
    sqs_wait_seconds: int = Field(20, ge=0, le=20)
    sqs_endpoint_url: str | None = None
    sqs_region: str = "us-east-1"
    local_root: Path = Path("whisp-data")
    work_dir: Path = Path(tempfile.gettempdir()) / "whisp"

    # Layout and the service's behaviour.
    recordings_prefix: str = "recordings"
    marker_name: str = "done.json"
    concurrency: int = Field(1, ge=1, le=64)
    lease_seconds: float = Field(120, gt=0)
    chunk_wait_seconds: float = Field(600, ge=0)
    retry_delay_seconds: float = Field(10, ge=0, le=3600)
    drain_seconds: float = Field(60, ge=0)
    sweep_interval_seconds: float = Field(300, ge=0)
    poll_interval_seconds: float = Field(1.0, gt=0)
    # Following takes while they are recorded (issue 13): on unless turned off; a followed
    # take's prefix is listed this often for new chunks and its marker.
    follow_takes: bool = True
    follow_poll_seconds: float = Field(2.0, gt=0, le=60)

    # Media and transcription.
    whisper_engine: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    whisper_model: str = "tiny.en"
    whisper_device: str = "auto"
    whisper_compute_type: str | None = None
    whisper_threads: int = Field(0, ge=0)
    whisper_model_dir: Path | None = None
    language: str | None = None
    audio_output: Literal["wav", "m4a", "none"] = "wav"
    video_preset: Preset = "veryfast"
    video_crf: int = Field(23, ge=0, le=51)

    # Limits, checked before heavy work.
    max_duration_seconds: float = Field(4 * 3600, gt=0)
    max_width: int = Field(3840, gt=0)
    max_height: int = Field(2160, gt=0)
    max_total_bytes: int = Field(20 * 1024**3, gt=0)

    # Operation.
    # LOG_FORMAT unset: a console view on a terminal, JSON lines otherwise.
    log_format: Literal["json", "console"] | None = None
    log_level: LogLevel = "INFO"
    # Health (/healthz, /readyz) and /metrics; loopback only unless METRICS_HOST says.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    @field_validator("log_format", "video_preset", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _webhook_template(cls, value: Any) -> Any:
        """Checked here, not when a take is done: a template that cannot be filled in
        would otherwise fail every take after all its work (issue 16)."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            check_webhook_template(value)
        return value

    @model_validator(mode="after")
    def _choose_source(self) -> Settings:
        if self.source is None:
            if self.cf_queue_id:
                self.source = "cloudflare"
            elif self.sqs_queue_url:
                self.source = "sqs"
            else:
                self.source = "local"
        needs: dict[str, list[str]] = {
            "cloudflare": ["cf_queue_id", "cf_api_token", "account_id", "s3_bucket_name"],
            "sqs": ["sqs_queue_url", "s3_bucket_name"],
            "local": [],
        }
        problems = [
            f"{name.upper()} is required when SOURCE={self.source}"
            for name in needs[self.source]
            if not getattr(self, name)
        ]
        if self.source == "cloudflare" and not (
            self.s3_access_key_id and self.s3_secret_access_key
        ):
            problems.append("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are required for R2")
        if self.webhook_url and not self.webhook_secret:
            problems.append("WEBHOOK_SECRET is required when WEBHOOK_URL is set")
        if problems:
            # One error carrying every line: pydantic stops at a model validator's first.
            raise ValueError("\n".join(problems))
        return self

    @property
    def endpoint_url(self) -> str | None:
        """S3_ENDPOINT_URL, else the R2 endpoint of ACCOUNT_ID (and R2_JURISDICTION), else AWS's."""
        if self.s3_endpoint_url:
            return self.s3_endpoint_url
        if self.account_id and self.r2_jurisdiction:
            return f"https://{self.account_id}.{self.r2_jurisdiction}.r2.cloudflarestorage.com"
        if self.account_id:
            return f"https://{self.account_id}.r2.cloudflarestorage.com"
        return None

    @property
    def sweep_interval(self) -> float:
        """The reconcile sweep's interval (0 turns it off); the local folder relies on it to
        catch what its watch misses, so there it is always on, every 5 s unless set."""
        if self.source == "local" and (
            not self.sweep_interval_seconds or "sweep_interval_seconds" not in self.model_fields_set
        ):
            return 5.0
        return self.sweep_interval_seconds

    @property
    def secrets(self) -> list[str]:
        """Every secret value, for the log filter that makes sure none is ever printed."""
        values = [self.s3_secret_access_key, self.cf_api_token, self.webhook_secret]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def check_webhook_template(template: str) -> None:
    """``ValueError`` unless ``template`` is an http(s) URL with a host whose only
    placeholders are ``WEBHOOK_FIELDS`` (no literal brace, no format spec)."""
    allowed = ", ".join("{" + name + "}" for name in WEBHOOK_FIELDS)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:  # a single "{" or "}"
        raise ValueError(f"not a template ({e}); placeholders allowed: {allowed}") from None
    for literal, name, spec, conversion in parts:
        if "{" in literal or "}" in literal:  # "{{" or "}}": a brace in a URL is a slip
            raise ValueError(f"a literal brace; placeholders allowed: {allowed}")
        if name is not None and (name not in WEBHOOK_FIELDS or spec or conversion):
            raise ValueError(f"unknown placeholder {{{name}}}; allowed: {allowed}")
    example = template.format(**{name: "x" for name in WEBHOOK_FIELDS})
    try:
        url = urlsplit(example)
        scheme, host = url.scheme, url.hostname
    except ValueError:
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        raise ValueError("not an http(s) URL with a host")


SECRET_FIELDS = frozenset(
    {"s3_access_key_id", "s3_secret_access_key", "cf_api_token", "webhook_secret"}
)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; every bad one is a line of one ``SettingsError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = _problems(e)
        bad = {str(error["loc"][0]) for error in e.errors() if error["loc"]}
    # The checks across settings (a queue needs its token) run only once every field is
    # valid: try again with the bad fields at their defaults, to report those too.
    defaults = {name: Settings.model_fields[name].default for name in bad}
    try:
        Settings(**{**overrides, **defaults})
    except ValidationError as e:
        problems += [p for p in _problems(e) if p not in problems]
    raise SettingsError(problems)


def _problems(error: ValidationError) -> list[str]:
    lines: list[str] = []
    for item in error.errors():
        name = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if not name:
            lines += message.splitlines()
            continue
        given = item.get("input")
        if name not in SECRET_FIELDS and isinstance(given, str | int | float):
            message += f" (got {str(given)[:60]!r})"
        lines.append(f"{name.upper()}: {message}")
    return lines
