"""TOML configuration, validated once into typed objects.

Nothing downstream reads the raw TOML: every mistake is found here, reported as one line
naming the file and the key, and the CLI exits 2.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from poller.errors import ConfigError
from poller.model import ServerSpec
from poller.timeparse import parse_duration, parse_since

log = structlog.get_logger()

DEFAULT_CONFIG = "/etc/sei-poller/config.toml"
REGIONS = {
    "prod1": "https://app.harness.io/prod1/sei/api",
    "prod2": "https://app.harness.io/gratis/sei/api",
    "prod3": "https://app3.harness.io/sei/api",
    "prod4": "https://prod4.harness.io/sei/api",
    "eu1": "https://accounts.eu.harness.io/sei/api",
}
ENDPOINT = "/v1/custom-cicd"
SECRET_KEYS = ("api_key", "token", "password")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Duration = Annotated[float, BeforeValidator(parse_duration)]


def _duration_or_never(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() == "never":
        return None
    return parse_duration(value)


DurationOrNever = Annotated[float | None, BeforeValidator(_duration_or_never)]


def _check_since(value: Any) -> Any:
    parse_since(value)
    return value


Since = Annotated[str | Any, BeforeValidator(_check_since)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_verify(value: bool | str) -> bool | str:
    if isinstance(value, str) and not Path(value).is_file():
        raise ValueError(f"CA bundle {value!r} is not a readable file")
    return value


class SeiConfig(_Strict):
    environment: Literal["prod1", "prod2", "prod3", "prod4", "eu1"] | None = None
    url: str | None = None
    api_key: SecretStr
    timeout: Duration = 30.0
    connect_timeout: Duration = 10.0
    concurrency: int = Field(default=2, ge=1, le=64)
    retry_window: Duration = 120.0
    verify_tls: bool | str = True

    _v = field_validator("verify_tls")(_check_verify)

    @model_validator(mode="after")
    def _need_target(self) -> SeiConfig:
        if not self.environment and not self.url:
            raise ValueError("set either 'environment' (prod1..prod4, eu1) or 'url'")
        return self

    @property
    def endpoint(self) -> str:
        """The full POST URL: an explicit `url` wins over the region's base URL."""
        if self.url:
            url = self.url.rstrip("/")
            return url if url.endswith(ENDPOINT) else url + ENDPOINT
        return REGIONS[self.environment or "prod2"] + ENDPOINT


class StateConfig(_Strict):
    path: Path = Path("/var/lib/sei-poller/state.db")


class MetricsConfig(_Strict):
    listen: str | None = None


class ServerConfig(BaseModel):
    """Keys every server has, whatever its type; the rest belong to its connector."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    type: str = Field(min_length=1)
    url: str = Field(min_length=1)
    instance_guid: str = Field(min_length=1)
    instance_name: str = Field(min_length=1)
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()
    cd_jobs: tuple[str, ...] = ()
    stages: bool = True
    project_name: str = ""
    verify_tls: bool | str = True
    poll_interval: Duration = 60.0
    backfill_since: Since = "30d"
    timeout: Duration = 30.0
    max_concurrency: int = Field(default=4, ge=1, le=64)
    requests_per_second: float | None = Field(default=None, gt=0)
    # A build whose details keep failing is sent without them after this long ("never":
    # it waits for the operator). 6 h outlasts a controller restart or a bad deploy.
    give_up_after: DurationOrNever = 6 * 3600.0

    _v = field_validator("verify_tls")(_check_verify)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value if value.endswith("/") else value + "/"


class _Root(_Strict):
    sei: SeiConfig
    state: StateConfig = StateConfig()
    metrics: MetricsConfig = MetricsConfig()
    defaults: dict[str, Any] = {}
    servers: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True)
class Server:
    """A validated server: the common keys, and the spec handed to its connector."""

    config: ServerConfig
    spec: ServerSpec

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Config:
    path: Path
    sei: SeiConfig
    state_path: Path
    metrics: MetricsConfig
    servers: tuple[Server, ...]
    secrets: frozenset[str]

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        names = ", ".join(s.name for s in self.servers)
        raise ConfigError(f"no server named {name!r} (configured: {names})", where="--server")


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, interpolate and validate the config file; raise ConfigError on any mistake."""
    file = Path(path or os.environ.get("SEI_POLLER_CONFIG") or DEFAULT_CONFIG)
    raw = _read_toml(file)
    raw = _interpolate(raw, str(file), "")
    errors: list[str] = []
    _resolve_secret_files(raw.get("sei"), file, "sei", errors)
    try:
        root = _Root.model_validate(_resolve_all_secret_files(raw, file, errors))
    except ValidationError as exc:
        raise ConfigError(_format(exc, str(file))) from None
    servers = _servers(root, file, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    secrets = _collect_secrets(root.sei, servers)
    _warn_literal_secrets(file, raw)
    state_path = root.state.path if root.state.path.is_absolute() else file.parent / root.state.path
    return Config(file, root.sei, state_path, root.metrics, servers, secrets)


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            "config file not found (set -c/--config or SEI_POLLER_CONFIG)", where=str(file)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", where=str(file)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"broken TOML: {exc}", where=str(file)) from None


def _interpolate(value: Any, file: str, key: str) -> Any:
    """Replace `${VAR}` with the environment's value; an unset variable is an error."""
    if isinstance(value, dict):
        return {k: _interpolate(v, file, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(
                    f"environment variable ${{{m.group(1)}}} is not set", where=f"{file}: {key}"
                )
            return os.environ[m.group(1)]

        return _VAR.sub(sub, value)
    return value


def _resolve_secret_files(table: Any, file: Path, where: str, errors: list[str]) -> None:
    """`token_file = "..."` reads the secret from a file, so it needs no place in the config."""
    if not isinstance(table, dict):
        return
    for key in SECRET_KEYS:
        ref = table.pop(f"{key}_file", None)
        if ref is None:
            continue
        if key in table:
            errors.append(f"{file}: {where}.{key}: set either {key} or {key}_file, not both")
            continue
        secret_path = Path(str(ref))
        if not secret_path.is_absolute():
            secret_path = file.parent / secret_path
        try:
            table[key] = secret_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            errors.append(f"{file}: {where}.{key}_file: cannot read {secret_path}: {exc.strerror}")


def _resolve_all_secret_files(raw: dict[str, Any], file: Path, errors: list[str]) -> dict[str, Any]:
    for i, server in enumerate(raw.get("servers") or []):
        _resolve_secret_files(server, file, f"servers[{i}]", errors)
    _resolve_secret_files(raw.get("defaults"), file, "defaults", errors)
    return raw


def _servers(root: _Root, file: Path, errors: list[str]) -> tuple[Server, ...]:
    from poller.registry import connector_class  # late: the registry loads entry points

    seen: set[str] = set()
    out = []
    for i, table in enumerate(root.servers):
        merged = {**root.defaults, **table}
        label = f"servers[{i}]" + (
            f" ({table['name']})" if isinstance(table.get("name"), str) else ""
        )
        try:
            common = ServerConfig.model_validate(merged)
        except ValidationError as exc:
            errors.append(_format(exc, str(file), prefix=label))
            continue
        if common.name in seen:
            errors.append(f"{file}: {label}.name: duplicate server name {common.name!r}")
            continue
        seen.add(common.name)
        try:
            cls = connector_class(common.type)
        except ConfigError as exc:
            errors.append(f"{file}: {label}.type: {exc}")
            continue
        try:
            settings = cls.Settings.model_validate(common.model_extra or {})
        except ValidationError as exc:
            errors.append(_format(exc, str(file), prefix=label))
            continue
        out.append(Server(common, _spec(common, settings)))
    return tuple(out)


def _spec(common: ServerConfig, settings: Any) -> ServerSpec:
    return ServerSpec(
        name=common.name,
        type=common.type,
        url=common.url,
        include=common.include,
        exclude=common.exclude,
        stages=common.stages,
        verify_tls=common.verify_tls,
        timeout=common.timeout,
        max_concurrency=common.max_concurrency,
        requests_per_second=common.requests_per_second,
        settings=settings,
    )


def _format(exc: ValidationError, file: str, prefix: str = "") -> str:
    """One line per problem: `file: servers[0] (main).url: Field required`."""
    lines = []
    for err in exc.errors():
        parts = [prefix] if prefix else []
        for part in err["loc"]:
            if isinstance(part, int):
                parts[-1:] = [f"{parts[-1]}[{part}]" if parts else f"[{part}]"]
            else:
                parts.append(str(part))
        key = ".".join(parts) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "missing required key"
        msg = msg.removeprefix("Value error, ")
        lines.append(f"{file}: {key}: {msg}")
    return "\n".join(lines)


def _collect_secrets(sei: SeiConfig, servers: tuple[Server, ...]) -> frozenset[str]:
    """Every secret value, so the log redactor needs no hand-kept list of field names."""
    found = {sei.api_key.get_secret_value()}
    for server in servers:
        settings = server.spec.settings
        for name in type(settings).model_fields if settings is not None else ():
            value = getattr(settings, name)
            if isinstance(value, SecretStr):
                found.add(value.get_secret_value())
        found.update(_url_passwords(server.config.url))
    return frozenset(s for s in found if s and len(s) >= 4)


def _url_passwords(url: str) -> set[str]:
    m = re.match(r"^[a-z]+://[^/@:]*:([^/@]+)@", url)
    return {m.group(1)} if m else set()


def _warn_literal_secrets(file: Path, raw: dict[str, Any]) -> None:
    """A secret written into a file others can read deserves a warning, not a refusal."""
    try:
        mode = file.stat().st_mode
    except OSError:
        return
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return
    text = file.read_text(encoding="utf-8", errors="replace")
    for key in SECRET_KEYS:
        for m in re.finditer(rf"^\s*{key}\s*=\s*\"([^\"]*)\"", text, re.M):
            if m.group(1) and "${" not in m.group(1):
                log.warning(
                    "literal secret in a group- or world-readable config file",
                    file=str(file),
                    key=key,
                    hint="use ${VAR} or *_file, or chmod 600 the file",
                )
                return
