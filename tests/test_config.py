"""Every config mistake exits 2 with one line naming the file, the key and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from poller import config
from poller.cli import main

GOOD = """
[sei]
environment = "prod2"
api_key = "${SEI_TEST_KEY}"

[state]
path = "state.db"

[defaults]
poll_interval = "5m"
backfill_since = "2025-01-01"

[[servers]]
name = "main"
type = "jenkins"
url = "https://jenkins.example.com/ci"
username = "bot"
token_file = "jenkins.token"
instance_guid = "666ba79b-3f3d-4236-ac04-4686ce526705"
instance_name = "Jenkins-1"
"""


@pytest.fixture()
def cfgdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEI_TEST_KEY", "key-from-env")
    (tmp_path / "jenkins.token").write_text("tok-from-file\n")
    return tmp_path


def _write(d: Path, text: str) -> Path:
    p = d / "config.toml"
    p.write_text(text)
    p.chmod(0o600)
    return p


def test_good_config_is_typed(cfgdir: Path) -> None:
    cfg = config.load(_write(cfgdir, GOOD))
    assert cfg.sei.endpoint == "https://app.harness.io/gratis/sei/api/v1/custom-cicd"
    assert cfg.sei.api_key.get_secret_value() == "key-from-env"
    server = cfg.servers[0]
    assert server.config.poll_interval == 300.0
    assert server.config.url == "https://jenkins.example.com/ci/"
    assert server.spec.settings.token.get_secret_value() == "tok-from-file"
    assert cfg.state_path == cfgdir / "state.db"
    assert {"key-from-env", "tok-from-file"} <= cfg.secrets


def test_explicit_url_overrides_environment(cfgdir: Path) -> None:
    text = GOOD.replace(
        'environment = "prod2"', 'environment = "eu1"\nurl = "http://127.0.0.1:9/x/"'
    )
    assert config.load(_write(cfgdir, text)).sei.endpoint == "http://127.0.0.1:9/x/v1/custom-cicd"


def _sub(old: str, new: str):
    def mutate(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return mutate


def _sei(lines: str):
    """Add keys to [sei]."""
    return _sub('api_key = "${SEI_TEST_KEY}"', 'api_key = "${SEI_TEST_KEY}"\n' + lines)


def _server(lines: str):
    """Add keys to the [[servers]] table (the last table of GOOD)."""
    return lambda text: text + lines + "\n"


DURATION_ABOVE_0 = 'a duration above 0: seconds, or a string like "90s", "5m", "1h"'
GLOBS = 'a glob or a list of globs over job full names, like ["team/**"]'
GUID_WORDS = (
    'the SEI instance GUID that `sei-poller register` prints, like "666ba79b-3f3d-4236-'
    'ac04-4686ce526705"'
)
SEI_URL = 'an http(s) URL, like "https://app.harness.io/gratis/sei/api/v1/custom-cicd"'
SERVER_URL = 'the server\'s http(s) URL, like "https://jenkins.example.com/"'
API_KEY = 'the SEI API key in quotes (or "${VAR}", or api_key_file = "path")'
SERVERS = "[[servers]] tables, one per CI server"

# One mistake of every kind a key can hold, with the one line the operator reads for it.
MISTAKES = [
    # whole numbers
    (
        _sei('concurrency = "four"'),
        'sei.concurrency: expected a whole number from 1 to 64, got "four"',
    ),
    (_sei("concurrency = 0"), "sei.concurrency: expected a whole number from 1 to 64, got 0"),
    (_sei("concurrency = 2.5"), "sei.concurrency: expected a whole number from 1 to 64, got 2.5"),
    (_sei("concurrency = true"), "sei.concurrency: expected a whole number from 1 to 64, got true"),
    (
        _server("max_concurrency = 100"),
        "servers[0] (main).max_concurrency: expected a whole number from 1 to 64, got 100",
    ),
    # numbers
    (
        _server('requests_per_second = "fast"'),
        "servers[0] (main).requests_per_second: expected a number of requests per second above 0,"
        ' got "fast"',
    ),
    (
        _server("requests_per_second = 0"),
        "servers[0] (main).requests_per_second: expected a number of requests per second above 0,"
        " got 0",
    ),
    # booleans
    (
        _server('stages = "yes please"'),
        'servers[0] (main).stages: expected true or false, got "yes please"',
    ),
    # durations
    (
        _sub('poll_interval = "5m"', 'poll_interval = "soon"'),
        f'defaults.poll_interval: expected {DURATION_ABOVE_0}, got "soon"',
    ),
    (
        _server("poll_interval = 0"),
        f"servers[0] (main).poll_interval: expected {DURATION_ABOVE_0}, got 0",
    ),
    (_sei("timeout = true"), f"sei.timeout: expected {DURATION_ABOVE_0}, got true"),
    (
        _sei('retry_window = "-5s"'),
        'sei.retry_window: expected a duration: seconds, or a string like "90s", "5m", "1h", "30d",'
        ' got "-5s"',
    ),
    # dates / since
    (
        _sub('backfill_since = "2025-01-01"', 'backfill_since = "yesterday"'),
        'defaults.backfill_since: expected "all", an ISO date like "2025-01-01", or a duration back'
        ' from now like "30d", got "yesterday"',
    ),
    (
        _server("backfill_since = true"),
        'servers[0] (main).backfill_since: expected "all", an ISO date like "2025-01-01", or a'
        ' duration back from now like "30d", got true',
    ),
    # URLs
    (
        _sub('url = "https://jenkins.example.com/ci"', "url = 42"),
        f"servers[0] (main).url: expected {SERVER_URL}, got 42",
    ),
    (
        _sub('url = "https://jenkins.example.com/ci"', 'url = "jenkins.example.com"'),
        f'servers[0] (main).url: expected {SERVER_URL}, got "jenkins.example.com" (not an http://'
        " or https:// URL)",
    ),
    (
        _sub('environment = "prod2"', 'url = "app.harness.io"'),
        f'sei.url: expected {SEI_URL}, got "app.harness.io" (not an http:// or https:// URL)',
    ),
    # enums
    (
        _sub('environment = "prod2"', 'environment = "prod9"'),
        'sei.environment: expected one of "prod1", "prod2", "prod3", "prod4", "eu1", got "prod9"',
    ),
    (
        _sub('environment = "prod2"', "environment = 2"),
        'sei.environment: expected one of "prod1", "prod2", "prod3", "prod4", "eu1", got 2',
    ),
    # lists of globs
    (_server("include = [1]"), f"servers[0] (main).include: expected {GLOBS}, got [1]"),
    (_server("exclude = 5"), f"servers[0] (main).exclude: expected {GLOBS}, got 5"),
    (_server("cd_jobs = {a = 1}"), f"servers[0] (main).cd_jobs: expected {GLOBS}, got a table"),
    # text
    (_server("project_name = 5"), "servers[0] (main).project_name: expected text in quotes, got 5"),
    (
        _sub('instance_name = "Jenkins-1"', 'instance_name = ""'),
        'servers[0] (main).instance_name: expected the SEI instance name, in quotes, got ""',
    ),
    (
        _sub('username = "bot"', "username = 5"),
        "servers[0] (main).username: expected text in quotes, got 5",
    ),
    # the instance GUID
    (
        _sub("666ba79b-3f3d-4236-ac04-4686ce526705", "not-a-guid"),
        f'servers[0] (main).instance_guid: expected {GUID_WORDS}, got "not-a-guid"',
    ),
    (
        _sub('instance_guid = "666ba79b-3f3d-4236-ac04-4686ce526705"\n', ""),
        f"servers[0] (main).instance_guid: missing required key; expected {GUID_WORDS}",
    ),
    # secrets: never echoed
    (
        _sub('api_key = "${SEI_TEST_KEY}"', "api_key = 12345"),
        f"sei.api_key: expected {API_KEY}, got a number",
    ),
    (_sub('"${SEI_TEST_KEY}"', '"  "'), f"sei.api_key: expected {API_KEY}, got an empty string"),
    (
        _sub('token_file = "jenkins.token"', "token = 98765"),
        "servers[0] (main).token: expected text in quotes, got a number",
    ),
    (
        _sub('api_key = "${SEI_TEST_KEY}"\n', ""),
        f"sei.api_key: missing required key; expected {API_KEY}",
    ),
    (
        _sei('api_key_file = "sei.key"'),
        "sei.api_key: set either api_key or api_key_file, not both",
    ),
    (
        _sub("${SEI_TEST_KEY}", "${SEI_NOT_SET_ANYWHERE}"),
        "sei.api_key: environment variable ${SEI_NOT_SET_ANYWHERE} is not set",
    ),
    (
        _sub("jenkins.token", "missing.token"),
        "servers[0].token_file: cannot read {dir}/missing.token: No such file or directory",
    ),
    # TLS
    (
        _sei("verify_tls = 5"),
        'sei.verify_tls: expected true, false, "system", or the path of a CA bundle file, got 5',
    ),
    (
        _server('verify_tls = "/no/such/ca.pem"'),
        'servers[0] (main).verify_tls: expected true, false, "system", or the path of a CA bundle'
        " file, got"
        ' "/no/such/ca.pem" (no such file: /no/such/ca.pem)',
    ),
    (
        _server('verify_tls = "certs"'),
        'servers[0] (main).verify_tls: expected true, false, "system", or the path of a CA bundle'
        " file, got"
        ' "certs" (no such file: {dir}/certs)',
    ),
    # paths, addresses, tables
    (_sub('path = "state.db"', "path = 5"), "state.path: expected a file path in quotes, got 5"),
    (
        _sub("[state]", '[metrics]\nlisten = "9464"\n\n[state]'),
        'metrics.listen: expected an address like "127.0.0.1:9464", got "9464" (host:port, the'
        " port a number from 1 to 65535)",
    ),
    (
        _sub("[[servers]]", "[servers]"),
        f"servers: expected {SERVERS}, got a table (a single [servers] table: write [[servers]],"
        " with two brackets)",
    ),
    (lambda t: t[: t.index("[[servers]]")], f"servers: missing required key; expected {SERVERS}"),
    (
        lambda t: "servers = []\n" + t[: t.index("[[servers]]")],
        f"servers: expected {SERVERS}, got []",
    ),
    (
        _sub("[sei]", "[sie]"),
        (
            "sei: missing required key; expected a [sei] table",
            'sie: unknown key (did you mean "sei"?)',
        ),
    ),
    (lambda t: "sei = 5\n" + t[t.index("[state]") :], "sei: expected a [sei] table, got 5"),
    (
        lambda t: "defaults = 1\n" + t.replace("[defaults]", "[other]"),
        ("defaults: expected a [defaults] table of server keys, got 1", "other: unknown key"),
    ),
    # unknown and missing keys
    (_sei("timout = 5"), 'sei.timout: unknown key (did you mean "timeout"?)'),
    (
        _server('colour = "red"'),
        'servers[0] (main).colour: unknown key for a "jenkins" server',
    ),
    (
        _server('pol_interval = "5m"'),
        'servers[0] (main).pol_interval: unknown key for a "jenkins" server (did you mean'
        ' "poll_interval"?)',
    ),
    (
        _server('tokne_file = "x"'),
        'servers[0] (main).tokne_file: unknown key for a "jenkins" server (did you mean'
        ' "token_file"?)',
    ),
    (
        _sub("[defaults]", "[defaults]\ncolour = 1"),
        'defaults.colour: unknown key for a "jenkins" server',
    ),
    (_sub("[[servers]]", "[sei2]\nx=1\n[[servers]]"), 'sei2: unknown key (did you mean "sei"?)'),
    (
        _sub('environment = "prod2"\n', ""),
        "sei: set either 'environment' (prod1..prod4, eu1) or 'url'",
    ),
    # across servers, types, TOML
    (
        lambda t: t + t[t.index("[[servers]]") :],
        "servers[1] (main).name: duplicate server name 'main'",
    ),
    (
        _sub('type = "jenkins"', 'type = "gitlb"'),
        'servers[0] (main).type: no connector "gitlb" installed'
        " (installed: bamboo, buildbot, buildkite, gocd, jenkins, teamcity)",
    ),
    (
        _sub('type = "jenkins"', 'type = "buildbot"'),
        'servers[0] (main).token_file: unknown key for a "buildbot" server',
    ),
    (
        lambda t: _sub('token_file = "jenkins.token"\n', "")(t).replace("jenkins", "buildbot"),
        "servers[0] (main): set both 'username' and 'password', or neither",
    ),
    (
        _sub("[sei]", "[sei\n"),
        "broken TOML: Expected ']' at the end of a table declaration (at line 2, column 5)",
    ),
]
PYDANTIC_WORDS = (
    "Input should",
    "Value error",
    "valid tuple",
    "String should",
    "pydantic",
    "List should",
)


@pytest.mark.parametrize(("mutate", "expected"), MISTAKES)
def test_mistakes_exit_2_with_one_line_in_the_operators_words(
    cfgdir: Path, capsys: pytest.CaptureFixture[str], mutate, expected: str
) -> None:
    path = _write(cfgdir, mutate(GOOD))
    assert main(["-c", str(path), "status"]) == 2
    err = capsys.readouterr().err
    lines = [expected] if isinstance(expected, str) else list(expected)
    lines = [f"{path}: {line.replace('{dir}', str(cfgdir))}" for line in lines]
    assert err.splitlines() == [f"sei-poller: {line}" for line in lines]
    assert not any(word in err for word in PYDANTIC_WORDS), err
    assert "98765" not in err and "12345" not in err


def test_several_mistakes_one_line_each_in_a_real_process(cfgdir: Path) -> None:
    text = _sei('concurrency = "four"')(GOOD)
    text = _server('cd_jobs = 5\ncolour = "red"')(text.replace("not-a-guid", ""))
    path = _write(cfgdir, _sub("666ba79b-3f3d-4236-ac04-4686ce526705", "not-a-guid")(text))
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "-c", str(path), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line.removeprefix("sei-poller: ") for line in proc.stderr.splitlines()]
    assert lines == [f'{path}: sei.concurrency: expected a whole number from 1 to 64, got "four"']
    # [sei] is checked first; fixed, the server's mistakes show, all of them at once
    path = _write(cfgdir, _sub('concurrency = "four"\n', "")(path.read_text()))
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "-c", str(path), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert [line.removeprefix("sei-poller: ") for line in proc.stderr.splitlines()] == [
        f'{path}: servers[0] (main).instance_guid: expected {GUID_WORDS}, got "not-a-guid"',
        f"{path}: servers[0] (main).cd_jobs: expected {GLOBS}, got 5",
    ]


def test_unknown_guid_is_refused_by_the_cli(cfgdir: Path) -> None:
    """SEI would answer 202 to runs with this GUID and then drop them: refuse it at load."""
    path = _write(cfgdir, _sub("666ba79b-3f3d-4236-ac04-4686ce526705", "not-a-guid")(GOOD))
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "-c", str(path), "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"sei-poller: {path}: servers[0] (main).instance_guid: expected {GUID_WORDS},"
        ' got "not-a-guid"\n'
    )


@pytest.mark.parametrize(
    "guid", ["666BA79B-3F3D-4236-AC04-4686CE526705", "00000000-0000-4000-8000-000000000000"]
)
def test_any_well_formed_guid_is_accepted_as_written(cfgdir: Path, guid: str) -> None:
    path = _write(cfgdir, _sub("666ba79b-3f3d-4236-ac04-4686ce526705", guid)(GOOD))
    assert config.load(path).servers[0].config.instance_guid == guid


@pytest.mark.parametrize(
    "guid",
    [
        "666ba79b3f3d4236ac044686ce526705",  # uuid.UUID takes it; SEI's register never prints it
        "{666ba79b-3f3d-4236-ac04-4686ce526705}",
        "666ba79b-3f3d-4236-ac04-4686ce52670",
        " 666ba79b-3f3d-4236-ac04-4686ce526705",
    ],
)
def test_guid_must_be_the_canonical_form(cfgdir: Path, guid: str) -> None:
    path = _write(cfgdir, _sub("666ba79b-3f3d-4236-ac04-4686ce526705", guid)(GOOD))
    with pytest.raises(config.ConfigError, match="instance_guid: expected the SEI instance GUID"):
        config.load(path)


def test_a_byte_order_mark_is_accepted(cfgdir: Path) -> None:
    """Windows editors start UTF-8 files with a BOM; tomllib alone refuses it."""
    path = cfgdir / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    path.chmod(0o600)
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "-c", str(path), "dead-letters", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "0 dead letter(s)\n"
    assert config.load(path).servers[0].name == "main"


def test_a_secret_file_with_a_byte_order_mark(cfgdir: Path) -> None:
    (cfgdir / "jenkins.token").write_bytes(b"\xef\xbb\xbftok-from-file\r\n")
    cfg = config.load(_write(cfgdir, GOOD))
    assert cfg.servers[0].spec.settings.token.get_secret_value() == "tok-from-file"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (GOOD.encode("utf-16"), "the file is UTF-16 text: save it as UTF-8"),
        (
            GOOD.replace("Jenkins-1", "Jenkins-\xe9").encode("latin-1"),
            "not UTF-8 text (byte 0xe9 on line 20): save it as UTF-8",
        ),
    ],
)
def test_other_encodings_are_named(
    cfgdir: Path, capsys: pytest.CaptureFixture[str], data: bytes, expected: str
) -> None:
    path = cfgdir / "config.toml"
    path.write_bytes(data)
    assert main(["-c", str(path), "status"]) == 2
    assert capsys.readouterr().err == f"sei-poller: {path}: {expected}\n"


def test_a_single_glob_is_a_list_of_one(cfgdir: Path) -> None:
    text = _server('include = "team/**"\nexclude = "team/old-*"\ncd_jobs = "**/deploy-*"')(GOOD)
    path = _write(cfgdir, text)
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "-c", str(path), "dead-letters", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    server = config.load(path).servers[0]
    assert server.config.include == ("team/**",) == server.spec.include
    assert server.config.exclude == ("team/old-*",) == server.spec.exclude
    assert server.config.cd_jobs == ("**/deploy-*",)


def test_a_relative_ca_bundle_is_relative_to_the_config_file(cfgdir: Path) -> None:
    trustme.CA().cert_pem.write_to_path(str(cfgdir / "ca.pem"))
    cfg = config.load(_write(cfgdir, _server('verify_tls = "ca.pem"')(GOOD)))
    assert cfg.servers[0].spec.verify_tls == str(cfgdir / "ca.pem")
    assert cfg.servers[0].spec.network.trust == f"CA bundle {cfgdir / 'ca.pem'} (verify_tls)"


def test_a_file_that_is_no_ca_bundle_exits_2(cfgdir: Path, capsys) -> None:
    (cfgdir / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = _write(cfgdir, _server('verify_tls = "ca.pem"')(GOOD))
    assert main(["-c", str(path), "status"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"sei-poller: {path}: servers[0] (main).verify_tls: {cfgdir / 'ca.pem'} holds no"
        " certificate in PEM form (-----BEGIN CERTIFICATE-----)"
    ]


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(tmp_path / "nope.toml"), "once"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_unreadable_file_exits_2_without_traceback(cfgdir: Path) -> None:
    """Run as a real process: what an operator sees is one line, never a traceback."""
    path = _write(cfgdir, GOOD.replace('type = "jenkins"', 'type = "jenkins"\nbogus = 1'))
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "-c", str(path), "once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "servers[0] (main).bogus: unknown key" in proc.stderr


def test_literal_secret_in_readable_file_warns(
    cfgdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace('api_key = "${SEI_TEST_KEY}"', 'api_key = "literal-key-123"')
    path = _write(cfgdir, text)
    path.chmod(0o644)
    config.load(path)
    out = capsys.readouterr()
    assert "literal secret" in out.err + out.out
    assert "literal-key-123" not in out.err + out.out


def test_the_shipped_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEI_API_KEY", "k")
    monkeypatch.setenv("JENKINS_TOKEN", "t")
    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    cfg = config.load(example)
    assert cfg.servers[0].name == "jenkins-main"
    assert cfg.sei.endpoint.endswith("/gratis/sei/api/v1/custom-cicd")
