"""Run every error path with known secrets; none may appear in any output or file."""

from __future__ import annotations

import time
from pathlib import Path

from connectors.jenkins.standin import FakeJenkins
from poller.cli import main
from poller.standins.sei import FakeSei
from tests.conftest import write_config
from tests.connectors.jenkins.env import DAY, GUID

SEI_KEY = "SEI-KEY-s3cr3t-0001"
TOKEN = "JENKINS-TOKEN-s3cr3t-0002"
URL_PASSWORD = "URLPASS-s3cr3t-0003"
REMOTE_TOKEN = "ghp_REMOTE-s3cr3t-0004"
SECRETS = (SEI_KEY, TOKEN, URL_PASSWORD, REMOTE_TOKEN)
T0 = int(time.time() * 1000) - DAY


def test_no_secret_anywhere(tmp_path: Path, capsys) -> None:
    outputs: list[str] = []
    with FakeJenkins(token=TOKEN) as jenkins, FakeSei(api_key=SEI_KEY) as sei:
        jenkins.add_build(
            "team/api",
            1,
            timestamp=T0,
            duration=10,
            git={
                "sha": "a" * 40,
                "branch": "refs/remotes/origin/main",
                "remote": f"https://ci:{REMOTE_TOKEN}@github.com/acme/api",
            },
            parameters=[{"_class": "hudson.model.PasswordParameterValue", "name": "PW"}],
        )
        jenkins.add_build("team/api", 2, timestamp=T0 + 1, duration=10)
        host = jenkins.url.split("://", 1)[1]
        servers = [
            {
                "name": "main",
                "type": "jenkins",
                "url": jenkins.url,
                "username": jenkins.username,
                "token": TOKEN,
                "instance_guid": GUID,
                "instance_name": "J",
                "backfill_since": "all",
            },
            # credentials inside the URL, and a path that does not exist: an error path
            {
                "name": "urlcreds",
                "type": "jenkins",
                "url": f"http://x:{URL_PASSWORD}@{host}nope/",
                "instance_guid": GUID,
                "instance_name": "J2",
                "timeout": 2,
            },
        ]
        cfg = write_config(tmp_path / "c.toml", sei_url=sei.url, servers=servers, api_key=SEI_KEY)

        def run(*args: str) -> int:
            code = main(["-c", str(cfg), "--log-level", "debug", *args])
            captured = capsys.readouterr()
            outputs.extend([captured.out, captured.err])
            return code

        dry = tmp_path / "dry.jsonl"
        run("once", "--dry-run", "--output", str(dry))
        sei.refuse_key(True)
        run("once")  # SEI refuses the key
        sei.refuse_key(False)
        sei.reject("team/api", 1, status=400, body='{"payload":"rejected"}')
        run("once")  # dead letter
        run("dead-letters", "list")
        run("status")
        run("status", "--json")
        run("check")
        jenkins.token = "rotated"  # our token is now wrong: 401 on every request
        run("once")
        run("check")
        run("register", "--integration-id", "1", "--name", "n")
        bad_sei = write_config(
            tmp_path / "c2.toml",
            sei_url="http://127.0.0.1:9/x",
            servers=servers[:1],
            api_key=SEI_KEY,
            state="state2.db",
        )
        outputs.append(str(main(["-c", str(bad_sei), "once"])))
        captured = capsys.readouterr()
        outputs.extend([captured.out, captured.err, dry.read_text()])
    files = [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.glob("state*.db*")]
    assert len(files) >= 2
    text = "\n".join(outputs + files)
    # the error paths really ran: SEI refusing, a dead letter, Jenkins refusing our token
    assert "refused the API key" in text and "rejected" in text
    assert "refused the credentials (HTTP 401)" in text
    for secret in SECRETS:
        assert secret not in text, secret
