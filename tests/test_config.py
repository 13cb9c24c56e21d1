"""Every config mistake exits 2 with one line naming the file, the key and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda t: t.replace(
                'instance_name = "Jenkins-1"', 'instance_name = "J"\ncolour = "red"'
            ),
            "servers[0] (main).colour: unknown key",
        ),
        (
            lambda t: t.replace('instance_guid = "666ba79b-3f3d-4236-ac04-4686ce526705"\n', ""),
            "servers[0] (main).instance_guid: missing required key",
        ),
        (
            lambda t: t.replace('poll_interval = "5m"', 'poll_interval = "soon"'),
            "poll_interval: 'soon' is not a duration",
        ),
        (
            lambda t: t.replace('backfill_since = "2025-01-01"', 'backfill_since = "yesterday"'),
            "backfill_since",
        ),
        (
            lambda t: t.replace("${SEI_TEST_KEY}", "${SEI_NOT_SET_ANYWHERE}"),
            "sei.api_key: environment variable ${SEI_NOT_SET_ANYWHERE} is not set",
        ),
        (
            lambda t: t.replace("jenkins.token", "missing.token"),
            "servers[0].token_file: cannot read",
        ),
        (
            lambda t: t + t[t.index("[[servers]]") :],
            "servers[1] (main).name: duplicate server name",
        ),
        (
            lambda t: t.replace('type = "jenkins"', 'type = "gitlb"'),
            'servers[0] (main).type: no connector "gitlb" installed',
        ),
        (lambda t: t.replace("[sei]", "[sei\n"), "broken TOML"),
        (lambda t: t.replace('environment = "prod2"\n', ""), "sei: set either 'environment'"),
        (
            lambda t: t.replace('url = "https://jenkins.example.com/ci"', "url = 42"),
            "servers[0] (main).url: Input should be a valid string",
        ),
        (lambda t: t.replace("[[servers]]", "[sei2]\nx=1\n[[servers]]"), "sei2: unknown key"),
        (
            lambda t: t.replace(
                'instance_name = "Jenkins-1"', 'instance_name = "J"\nverify_tls = "/no/such/ca.pem"'
            ),
            "servers[0] (main).verify_tls: CA bundle '/no/such/ca.pem' is not a readable file",
        ),
        (lambda t: t.replace('environment = "prod2"', 'environment = "prod9"'), "sei.environment"),
    ],
)
def test_mistakes_exit_2_naming_the_key(
    cfgdir: Path, capsys: pytest.CaptureFixture[str], mutate, expected: str
) -> None:
    path = _write(cfgdir, mutate(GOOD))
    assert main(["-c", str(path), "status"]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert str(path) in err
    assert "Traceback" not in err


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
