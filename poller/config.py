"""TOML configuration, validated once into typed objects.

Nothing downstream reads the raw TOML: every mistake is found here, reported as one line
naming the file and the key, what is wrong and what would be right, and the CLI exits 2.
Pydantic does the validation; its own wording never reaches the operator: every field says
what it expects (its `description`), and `_problems` turns each error into
`file: key: expected <that>, got <the value>`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import structlog
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from poller import network
from poller import rules as rulebook
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
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HTTP_URL = re.compile(r"^https?://[^/\s]+")

# What each kind of value should look like, in the words the messages use.
WHOLE_1_64 = "a whole number from 1 to 64"
DURATION = 'a duration: seconds, or a string like "90s", "5m", "1h", "30d"'
POSITIVE_DURATION = 'a duration above 0: seconds, or a string like "90s", "5m", "1h"'
GLOBS = 'a glob or a list of globs over job full names, like ["team/**"]'
VERIFY_TLS = 'true, false, "system", or the path of a CA bundle file'
PROXY = 'a proxy URL like "http://user:pass@proxy.example.com:3128", or "none" for direct'
PEM_FILE = "the path of a PEM file in quotes"
SINCE = '"all", an ISO date like "2025-01-01", or a duration back from now like "30d"'
GUID = (
    'the SEI instance GUID that `sei-poller register` prints, like "666ba79b-3f3d-4236-'
    'ac04-4686ce526705"'
)


def _invalid(detail: str = "") -> PydanticCustomError:
    """A value of the wrong shape: the message is built from the field's description."""
    return PydanticCustomError("invalid", "invalid value{detail}", {"detail": detail})


def _not_bool(value: Any) -> Any:
    """`concurrency = true` is a mistake, not the number 1 (pydantic's lax mode allows it)."""
    if isinstance(value, bool):
        raise _invalid()
    return value


def _duration(positive: bool) -> Any:
    def check(value: Any) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise _invalid() from None
        if positive and seconds <= 0:
            raise _invalid()
        return seconds

    return BeforeValidator(check)


def _duration_or_never(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() == "never":
        return None
    try:
        return parse_duration(value)
    except ValueError:
        raise _invalid() from None


def _globs(value: Any) -> tuple[str, ...]:
    """A single glob is a list of one: `cd_jobs = "**/deploy-*"` means what it says."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _invalid()


def _check_since(value: Any) -> Any:
    if isinstance(value, bool | time) or not isinstance(value, str | int | float | date):
        raise _invalid()
    try:
        parse_since(value)
    except ValueError:
        raise _invalid() from None
    return value


def _check_verify(value: Any, info: ValidationInfo) -> bool | str:
    """A CA bundle path, relative to the config file like every other path in it."""
    if isinstance(value, bool):
        return value
    if value == "system":
        return "system"
    return _check_file(value, info)


def _check_file(value: Any, info: ValidationInfo) -> str:
    """A readable file, relative to the config file's folder."""
    if not isinstance(value, str) or not value:
        raise _invalid()
    path = Path(value)
    if not path.is_absolute() and info.context and info.context.get("dir"):
        path = Path(info.context["dir"]) / path
    if path.is_dir():
        raise _invalid(f" ({path} is a directory)")
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise _invalid(f" (no such file: {path})") from None
    except OSError as exc:
        raise _invalid(f" ({path}: {exc.strerror})") from None
    return str(path)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise _invalid()


def _check_proxy(value: Any) -> Any:
    if not isinstance(value, str) or value.strip().lower() == "none":
        return value
    if value.lower().startswith("socks"):
        raise _invalid(" (SOCKS proxies are not supported: use an HTTP proxy)")
    if not _HTTP_URL.match(value):
        raise _invalid(" (not an http:// or https:// URL)")
    return value


def _check_url(value: Any) -> Any:
    if isinstance(value, str) and not _HTTP_URL.match(value):
        raise _invalid(" (not an http:// or https:// URL)")
    return value


Whole = Annotated[int, BeforeValidator(_not_bool)]
Number = Annotated[float, BeforeValidator(_not_bool)]
Duration = Annotated[float, _duration(positive=False)]
PositiveDuration = Annotated[float, _duration(positive=True)]
DurationOrNever = Annotated[float | None, BeforeValidator(_duration_or_never)]
Globs = Annotated[tuple[str, ...], BeforeValidator(_globs)]
Since = Annotated[str | Any, BeforeValidator(_check_since)]
VerifyTls = Annotated[bool | str, BeforeValidator(_check_verify)]
PemFile = Annotated[str, BeforeValidator(_check_file)]
Proxy = Annotated[str, BeforeValidator(_check_proxy)]
Url = Annotated[str, BeforeValidator(_check_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeiConfig(_Strict):
    environment: Literal["prod1", "prod2", "prod3", "prod4", "eu1"] | None = Field(
        default=None, description='one of "prod1", "prod2", "prod3", "prod4", "eu1"'
    )
    url: Url | None = Field(
        default=None,
        description='an http(s) URL, like "https://app.harness.io/gratis/sei/api/v1/custom-cicd"',
    )
    api_key: SecretStr = Field(
        description='the SEI API key in quotes (or "${VAR}", or api_key_file = "path")'
    )
    timeout: PositiveDuration = Field(default=30.0, description=POSITIVE_DURATION)
    connect_timeout: PositiveDuration = Field(default=10.0, description=POSITIVE_DURATION)
    # The most POSTs in flight; with `adaptive` the deliverer finds how many SEI takes.
    concurrency: Whole = Field(default=16, ge=1, le=64, description=WHOLE_1_64)
    adaptive: bool = Field(default=True, description="true or false")
    retry_window: Duration = Field(default=120.0, description=DURATION)
    verify_tls: VerifyTls = Field(default=True, description=VERIFY_TLS)
    proxy: Proxy | None = Field(default=None, description=PROXY)
    client_cert: PemFile | None = Field(default=None, description=PEM_FILE)
    client_key: PemFile | None = Field(default=None, description=PEM_FILE)

    @field_validator("api_key")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise _invalid()
        return value

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
    path: Path = Field(
        default=Path("/var/lib/sei-poller/state.db"), description="a file path in quotes"
    )


class MetricsConfig(_Strict):
    listen: str | None = Field(default=None, description='an address like "127.0.0.1:9464"')

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        _host, colon, port = value.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise _invalid(" (host:port, the port a number from 1 to 65535)")
        return value


class RuleConfig(_Strict):
    """One `[[servers.rules]]` / `[[defaults.rules]]` table (see poller/rules.py)."""

    jobs: Globs = Field(description=GLOBS)
    project_name: str | None = Field(
        default=None,
        description="text in quotes; {1}, {2}, ... and {name} take the job name's parts",
    )
    themes: Annotated[tuple[str, ...], BeforeValidator(_strings)] | None = Field(
        default=None, description='a list of themes in quotes, like ["platform", "backend"]'
    )
    cd: StrictBool | None = Field(default=None, description="true or false")
    cfr_status: StrictBool | Literal["result"] | None = Field(
        default=None, description='true, false, or "result"'
    )


_RULES_TYPE = tuple[RuleConfig, ...]


class ServerConfig(BaseModel):
    """Keys every server has, whatever its type; the rest belong to its connector."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, description="a non-empty name in quotes, unique per server")
    type: str = Field(min_length=1, description='a connector type in quotes, like "jenkins"')
    url: Url = Field(
        min_length=1, description='the server\'s http(s) URL, like "https://jenkins.example.com/"'
    )
    instance_guid: str = Field(description=GUID)
    instance_name: str = Field(min_length=1, description="the SEI instance name, in quotes")
    include: Globs = Field(default=("**",), description=GLOBS)
    exclude: Globs = Field(default=(), description=GLOBS)
    cd_jobs: Globs = Field(default=(), description=GLOBS)
    rules: tuple[RuleConfig, ...] = Field(default=(), description="[[servers.rules]] tables")
    stages: bool = Field(default=True, description="true or false")
    project_name: str = Field(default="", description="text in quotes")
    verify_tls: VerifyTls = Field(default=True, description=VERIFY_TLS)
    proxy: Proxy | None = Field(default=None, description=PROXY)
    client_cert: PemFile | None = Field(default=None, description=PEM_FILE)
    client_key: PemFile | None = Field(default=None, description=PEM_FILE)
    poll_interval: PositiveDuration = Field(default=60.0, description=POSITIVE_DURATION)
    backfill_since: Since = Field(default="30d", description=SINCE)
    timeout: PositiveDuration = Field(default=30.0, description=POSITIVE_DURATION)
    max_concurrency: Whole = Field(default=4, ge=1, le=64, description=WHOLE_1_64)
    requests_per_second: Number | None = Field(
        default=None, gt=0, description="a number of requests per second above 0"
    )
    # A build whose details keep failing is sent without them after this long ("never":
    # it waits for the operator). 6 h outlasts a controller restart or a bad deploy.
    give_up_after: DurationOrNever = Field(
        default=6 * 3600.0, description=DURATION.replace("a duration", 'a duration or "never"')
    )

    @field_validator("instance_guid")
    @classmethod
    def _guid(cls, value: str) -> str:
        # SEI answers 202 to a run whose GUID it does not know, then drops it silently.
        if not _GUID.match(value):
            raise _invalid()
        return value

    @field_validator("url")
    @classmethod
    def _slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    _inherited_rules: int = PrivateAttr(default=0)  # how many of `rules` are `[defaults]`'

    def payload_rules(self) -> list[rulebook.Rule]:
        """`cd_jobs` and `project_name` first, then the rules (`[defaults]`' before ours)."""
        out = rulebook.legacy(self.cd_jobs, self.project_name)
        shared = self._inherited_rules
        for i, r in enumerate(self.rules):
            where = f"defaults.rules[{i}]" if i < shared else f"rules[{i - shared}]"
            out.append(
                rulebook.Rule(
                    jobs=r.jobs,
                    project_name=r.project_name,
                    themes=r.themes,
                    cd=r.cd,
                    cfr_status=r.cfr_status,
                    where=where,
                )
            )
        return out


def _servers_list(value: Any) -> Any:
    if isinstance(value, dict):
        raise _invalid(" (a single [servers] table: write [[servers]], with two brackets)")
    return value


class _Root(_Strict):
    sei: SeiConfig = Field(description="a [sei] table")
    state: StateConfig = Field(default=StateConfig(), description="a [state] table")
    metrics: MetricsConfig = Field(default=MetricsConfig(), description="a [metrics] table")
    defaults: dict[str, Any] = Field(default={}, description="a [defaults] table of server keys")
    servers: Annotated[list[dict[str, Any]], BeforeValidator(_servers_list)] = Field(
        min_length=1, description="[[servers]] tables, one per CI server"
    )


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
    sei_network: network.Endpoint

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        names = ", ".join(s.name for s in self.servers)
        raise ConfigError(f"no server named {name!r} (configured: {names})", where="--server")


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, interpolate and validate the config file; raise ConfigError on any mistake."""
    file = Path(path or os.environ.get("SEI_POLLER_CONFIG") or DEFAULT_CONFIG)
    raw, text = _read_toml(file)
    raw = _interpolate(raw, str(file), "")
    errors: list[str] = []
    from_files = _resolve_all_secret_files(raw, file, errors)
    context = {"dir": str(file.parent)}
    try:
        root = _Root.model_validate(raw, context=context)
    except ValidationError as exc:
        raise ConfigError("\n".join(_problems(exc, _Root, str(file)))) from None
    servers = _servers(root, file, errors, context, from_files)
    sei_network = _endpoint(root.sei.endpoint, root.sei, "sei", file, errors)
    if errors or sei_network is None:
        raise ConfigError("\n".join(dict.fromkeys(errors)))
    secrets = _collect_secrets(root.sei, servers, sei_network)
    _warn_literal_secrets(file, text)
    state_path = root.state.path if root.state.path.is_absolute() else file.parent / root.state.path
    return Config(file, root.sei, state_path, root.metrics, servers, secrets, sei_network)


def _endpoint(
    url: str, table: SeiConfig | ServerConfig, key: str, file: Path, errors: list[str]
) -> network.Endpoint | None:
    """The route and trust for one configured URL, or None with the problem in `errors`."""
    if table.client_key and not table.client_cert:
        errors.append(f"{file}: {key}.client_key: set client_cert too (the certificate it signs)")
        return None
    try:
        return network.endpoint(
            url,
            proxy=table.proxy,
            verify_tls=table.verify_tls,
            client_cert=table.client_cert,
            client_key=table.client_key,
            key=key,
        )
    except network.NetworkConfigError as exc:
        errors.append(f"{file}: {key}.{exc.key}: {exc}")
        return None


def _read_toml(file: Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text. A byte-order mark (Windows editors write one) is fine."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "config file not found (set -c/--config or SEI_POLLER_CONFIG)", where=str(file)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", where=str(file)) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError("the file is UTF-16 text: save it as UTF-8", where=str(file))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): save it as UTF-8",
            where=str(file),
        ) from None
    try:
        return tomllib.loads(text), text
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


def _resolve_secret_files(table: Any, file: Path, where: str, errors: list[str]) -> set[str]:
    """`token_file = "..."` reads the secret from a file, so it needs no place in the config.

    Returns the keys so filled, for messages to name what the operator wrote (`token_file`).
    """
    filled: set[str] = set()
    if not isinstance(table, dict):
        return filled
    for key in SECRET_KEYS:
        ref = table.pop(f"{key}_file", None)
        if ref is None:
            continue
        if key in table:
            errors.append(f"{file}: {where}.{key}: set either {key} or {key}_file, not both")
            continue
        if not isinstance(ref, str) or not ref:
            errors.append(
                f"{file}: {where}.{key}_file: expected the path of a file holding the secret, "
                f"got {_show(ref)}"
            )
            continue
        secret_path = Path(ref)
        if not secret_path.is_absolute():
            secret_path = file.parent / secret_path
        try:
            table[key] = secret_path.read_text(encoding="utf-8-sig").strip()
            filled.add(key)
        except OSError as exc:
            errors.append(f"{file}: {where}.{key}_file: cannot read {secret_path}: {exc.strerror}")
        except UnicodeDecodeError:
            errors.append(f"{file}: {where}.{key}_file: {secret_path} is not UTF-8 text")
    return filled


def _resolve_all_secret_files(
    raw: dict[str, Any], file: Path, errors: list[str]
) -> dict[str, set[str]]:
    """Read every `*_file` secret in place; returns the keys filled, per table."""
    filled = {"sei": _resolve_secret_files(raw.get("sei"), file, "sei", errors)}
    servers = raw.get("servers")
    for i, server in enumerate(servers if isinstance(servers, list) else []):
        filled[f"servers[{i}]"] = _resolve_secret_files(server, file, f"servers[{i}]", errors)
    filled["defaults"] = _resolve_secret_files(raw.get("defaults"), file, "defaults", errors)
    return filled


def _servers(
    root: _Root,
    file: Path,
    errors: list[str],
    context: dict[str, Any],
    from_files: dict[str, set[str]],
) -> tuple[Server, ...]:
    from poller.registry import connector_class  # late: the registry loads entry points

    seen: set[str] = set()
    out = []
    shared = _default_rules(root.defaults.get("rules"), file, errors)
    for i, table in enumerate(root.servers):
        merged = {**{k: v for k, v in root.defaults.items() if k != "rules"}, **table}
        name = table.get("name")
        label = f"servers[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")
        inherited = frozenset(root.defaults) - frozenset(table) - {"rules"}
        filled = from_files.get(f"servers[{i}]", set()) | (from_files["defaults"] & inherited)
        renamed = {k: f"{k}_file" for k in filled}
        if "url" not in merged and isinstance(merged.get("type"), str):
            # A hosted CI's connector may name its one public API (`default_url`).
            try:
                default_url = getattr(connector_class(merged["type"]), "default_url", None)
            except ConfigError:
                default_url = None  # reported below, under `type`
            if default_url:
                merged["url"] = default_url
        try:
            common = ServerConfig.model_validate(merged, context=context)
        except ValidationError as exc:
            errors.extend(_problems(exc, ServerConfig, str(file), label, inherited, renamed))
            continue
        if common.name in seen:
            errors.append(f"{file}: {label}.name: duplicate server name {common.name!r}")
            continue
        if shared:  # `[defaults]`' rules come first, each server's after them
            common = common.model_copy(update={"rules": (*shared, *common.rules)})
            common._inherited_rules = len(shared)
        seen.add(common.name)
        try:
            cls = connector_class(common.type)
        except ConfigError as exc:
            errors.append(f"{file}: {label}.type: {exc}")
            continue
        try:
            settings = cls.Settings.model_validate(common.model_extra or {}, context=context)
        except ValidationError as exc:
            also = frozenset(ServerConfig.model_fields)
            errors.extend(
                _problems(
                    exc, cls.Settings, str(file), label, inherited, renamed, also, common.type
                )
            )
            continue
        ep = _endpoint(common.url, common, label, file, errors)
        if ep is not None:
            out.append(Server(common, _spec(common, settings, ep)))
    return tuple(out)


_RULES: TypeAdapter[tuple[RuleConfig, ...]] = TypeAdapter(_RULES_TYPE)


def _default_rules(raw: Any, file: Path, errors: list[str]) -> tuple[RuleConfig, ...]:
    """`[[defaults.rules]]`, checked once, so a mistake is named where it was written."""
    if raw is None:
        return ()
    try:
        return _RULES.validate_python(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            key = "defaults.rules" + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc
            )
            leaf = next((str(p) for p in reversed(loc) if isinstance(p, str)), "rules")
            field = RuleConfig.model_fields.get(leaf)
            known = frozenset(RuleConfig.model_fields)
            errors.append(f"{file}: {key}: {_message(err, leaf, field, known, '')}")
        return ()


def _spec(common: ServerConfig, settings: Any, ep: network.Endpoint) -> ServerSpec:
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
        network=ep,
    )


# -- turning pydantic's errors into the operator's words ----------------------------------

# For fields that do not describe themselves (a third-party connector's Settings).
_BY_TYPE = {
    "string_type": "text in quotes",
    "string_too_short": "non-empty text in quotes",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "too_short": "at least one entry",
    "literal_error": "one of {expected}",
    "greater_than": "a number above {gt}",
    "greater_than_equal": "a number ≥ {ge}",
    "less_than": "a number below {lt}",
    "less_than_equal": "a number ≤ {le}",
}


def _problems(
    exc: ValidationError,
    model: type[BaseModel],
    file: str,
    prefix: str = "",
    inherited: frozenset[str] = frozenset(),
    renamed: dict[str, str] | None = None,
    also: frozenset[str] = frozenset(),
    kind: str = "",
) -> list[str]:
    """One line per problem: `file: servers[0] (main).url: expected ..., got 42`.

    `inherited` names the keys a server took from `[defaults]`: their mistakes are reported
    once, as `defaults.<key>`. `renamed` maps a key filled from a file to the key written
    (`token` → `token_file`). `also` are further keys valid at the model's level (a
    connector's Settings sit beside the common server keys), used to suggest a spelling.
    """
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        origin = loc[0] if loc else None
        if err["type"] == "extra_forbidden" and renamed and origin in renamed:
            loc = (renamed[str(origin)], *loc[1:])
        key, leaf, field, known = _locate(model, loc, also)
        if prefix and origin in inherited:
            where = f"defaults.{key}"
        else:
            where = ".".join(p for p in (prefix, key) if p) or "(top level)"
        lines.append(f"{file}: {where}: {_message(err, leaf, field, known, kind)}")
    return list(dict.fromkeys(lines))


def _locate(
    model: type[BaseModel], loc: tuple[int | str, ...], also: frozenset[str]
) -> tuple[str, str, FieldInfo | None, frozenset[str]]:
    """The dotted key an error is about, its last name, its field, the keys valid beside it.

    Walks the location through nested models; once it reaches a plain field, further
    string parts are pydantic's names for union members (`verify_tls.bool`), not keys.
    """
    parts: list[str] = []
    leaf = ""
    current: type[BaseModel] | None = model
    field: FieldInfo | None = None
    known = frozenset(model.model_fields) | also
    for part in loc:
        if isinstance(part, int):
            if parts:
                parts[-1] = f"{parts[-1]}[{part}]"
            else:
                parts.append(f"[{part}]")
            continue
        if current is None:
            continue
        known = frozenset(current.model_fields) | (also if current is model else frozenset())
        parts.append(part)
        leaf = part
        field = current.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        args = get_args(annotation)
        if get_origin(annotation) in (tuple, list) and args:
            annotation = args[0]  # a list of tables: the index comes next, then its keys
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        current = annotation if nested else None  # type: ignore[assignment]
    return ".".join(parts), leaf, field, known


def _message(err: Any, name: str, field: FieldInfo | None, known: frozenset[str], kind: str) -> str:
    kind_type = err["type"]
    if kind_type == "extra_forbidden":
        valid = known | {f"{k}_file" for k in SECRET_KEYS if k in known}
        close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
        where = f' for a "{kind}" server' if kind else ""
        return f"unknown key{where}" + (f' (did you mean "{close[0]}"?)' if close else "")
    expected = field.description if field is not None and field.description else None
    if kind_type == "missing":
        return "missing required key" + (f"; expected {expected}" if expected else "")
    if kind_type in ("value_error", "assertion_error"):
        # A check across several keys (a model validator): its message says it all.
        return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if expected is None:
        template = _BY_TYPE.get(kind_type)
        if template is None:
            return str(err["msg"]).removeprefix("Value error, ")
        expected = template.format(**_ctx(err))
    detail = (err.get("ctx") or {}).get("detail", "") if kind_type == "invalid" else ""
    shown = _show(err.get("input"), secret=name in SECRET_KEYS)
    return f"expected {expected}, got {shown}{detail}"


def _ctx(err: Any) -> dict[str, Any]:
    return {k: str(v) for k, v in (err.get("ctx") or {}).items()}


def _show(value: Any, *, secret: bool = False, limit: int = 60) -> str:
    """A value as it would appear in TOML (a secret only by its kind)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if secret:
        if isinstance(value, str):
            return "an empty string" if not value.strip() else "a string"
        return _kind(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_show(v, limit=limit) for v in value) + "]"
    elif isinstance(value, dict):
        return "a table"
    else:
        return _kind(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date"
    return "a value of another kind"


# -- secrets ------------------------------------------------------------------------------


def _collect_secrets(
    sei: SeiConfig, servers: tuple[Server, ...], sei_network: network.Endpoint
) -> frozenset[str]:
    """Every secret value, so the log redactor needs no hand-kept list of field names."""
    found = {sei.api_key.get_secret_value()}
    endpoints = [sei_network, *(s.spec.network for s in servers if s.spec.network is not None)]
    found.update(network.proxy_secrets(endpoints))
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


def _warn_literal_secrets(file: Path, text: str) -> None:
    """A secret written into a file others can read deserves a warning, not a refusal."""
    try:
        mode = file.stat().st_mode
    except OSError:
        return
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return
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
