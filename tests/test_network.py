"""Where companies run it (issue 21): HTTPS with a private CA, an egress proxy that wants a
password, client certificates, login pages, redirects elsewhere.

No network: a CA made at test time (`trustme`), the stand-ins serving HTTPS, a forward
proxy with Basic authentication and CONNECT on 127.0.0.1, and real `sei-poller` runs.
Jenkins, TeamCity and SEI are each shown through the same `poller.network` endpoint code, and
every other connector's demo server through the same route and trust.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from connectors.jenkins.standin import FakeJenkins
from connectors.teamcity.standin import FakeTeamCity
from poller.cli import main
from poller.demo import _stand_in
from poller.demo import write_config as write_demo_config
from poller.standins.faults import login_page
from poller.standins.forward_proxy import ForwardProxy
from poller.standins.sei import FakeSei
from poller.standins.tls import server_context
from tests.conftest import write_config
from tests.connectors.jenkins.env import jenkins_server

NOW = int(time.time() * 1000)
TC_GUID = "5b1f3c2a-9d4e-4f6a-8b7c-2e1d0a9f8c7b"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="Example Corp Internal CA")


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> Any:
    return server_context(ca.issue_cert("127.0.0.1", "localhost"))


@pytest.fixture()
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "corp-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@dataclass
class World:
    """Jenkins (one finished build), TeamCity (one finished build) and SEI, each over HTTP or
    HTTPS, and a config file pointing at them."""

    jenkins: FakeJenkins
    tc: FakeTeamCity
    sei: FakeSei
    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "config.toml"

    def write(self, *, sei: dict[str, Any] | None = None, **server: Any) -> None:
        servers = [
            jenkins_server(self.jenkins, **server),
            {
                "name": "tc-main",
                "type": "teamcity",
                "url": self.tc.url,
                "token": self.tc.token,
                "instance_guid": TC_GUID,
                "instance_name": "TeamCity-1",
                "backfill_since": "all",
                "timeout": 5,
                **server,
            },
        ]
        write_config(self.config, sei_url=self.sei.url, servers=servers, sei=sei)

    def run(self, *args: str) -> int:
        return main(["-c", str(self.config), *args])

    def delivered(self) -> list[tuple[str, int]]:
        return sorted((r["job_full_name"], r["build_number"]) for r in self.sei.received)

    def outbox(self) -> dict[str, int]:
        with sqlite3.connect(self.dir / "state.db") as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status"))


EXPECTED = [("Acme/Acme_Build", 1), ("app", 1)]


def _world(
    tmp_path: Path, *, ci_tls: Any = None, sei_tls: Any = None, jenkins_tls: Any = None
) -> World:
    jenkins = FakeJenkins(tls=jenkins_tls or ci_tls).start()
    jenkins.add_job("app", "freestyle")
    jenkins.add_build("app", 1, result="SUCCESS", timestamp=NOW - 60_000, duration=5_000)
    tc = FakeTeamCity(tls=ci_tls).start()
    tc.add_project("Acme", "Acme")
    tc.add_build_type("Acme_Build", "Build", "Acme")
    tc.add_build("Acme_Build", queued=NOW - 60_000, finished=NOW - 50_000)
    sei = FakeSei(tls=sei_tls).start()
    return World(jenkins, tc, sei, tmp_path)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    w = _world(tmp_path)
    yield w
    _stop(w)


@pytest.fixture()
def tls_world(tmp_path: Path, server_tls: Any) -> Iterator[World]:
    w = _world(tmp_path, ci_tls=server_tls, sei_tls=server_tls)
    yield w
    _stop(w)


def _stop(w: World) -> None:
    w.jenkins.stop()
    w.tc.stop()
    w.sei.stop()


@pytest.fixture()
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as p:
        yield p


def _hosts(proxy: ForwardProxy, method: str) -> set[str]:
    return {a.target for a in proxy.asked(method) if a.status == 200}


def _port(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


# -- one way out for every request ---------------------------------------------------------


def test_https_everywhere_through_the_proxy_named_by_https_proxy(
    tls_world: World, proxy: ForwardProxy, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's target: only HTTPS_PROXY and the company CA set, as in the unit file."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    tls_world.write()
    assert tls_world.run("once") == 0
    assert tls_world.delivered() == EXPECTED
    tunnels = _hosts(proxy, "CONNECT")
    for standin in (tls_world.jenkins.url, tls_world.tc.url, tls_world.sei.url):
        assert _port(standin) in tunnels
    # Delivery kept its pooled connections through the tunnel: no tunnel per POST.
    assert tls_world.sei.connections <= 4


def test_http_through_the_proxy_named_by_http_proxy(
    world: World, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url())  # lower case, as curl prefers
    world.write()
    assert world.run("once") == 0
    assert world.delivered() == EXPECTED
    asked = {a.target.split("/", 3)[2] for a in proxy.asked() if a.status < 400}
    assert {_port(world.jenkins.url), _port(world.tc.url), _port(world.sei.url)} <= asked
    assert any(a.method == "POST" and a.target == world.sei.url for a in proxy.asked())


def test_the_proxy_key_wins_and_none_goes_direct(
    world: World, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    world.write(proxy="none", sei={"proxy": proxy.url()})
    assert world.run("once") == 0
    assert world.delivered() == EXPECTED
    targets = [a.target for a in proxy.asked()]
    assert targets and all(t.startswith(world.sei.url) for t in targets)


def test_no_proxy_is_honoured(
    world: World, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    world.write()
    assert world.run("once") == 0
    assert world.delivered() == EXPECTED
    assert proxy.asked() == []


def test_a_proxy_refusing_the_password_is_one_line_and_loses_nothing(
    world: World, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url(credentials=False))
    world.write()
    assert world.run("once") == 1
    assert world.delivered() == []
    assert {a.status for a in proxy.asked()} == {407}
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    assert world.run("once") == 0
    assert world.delivered() == EXPECTED
    assert "Traceback" not in capsys.readouterr().err


# -- one trust decision for every request ---------------------------------------------------


def _hashed_dir(ca_file: Path, tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: cannot name a hashed CA directory")
    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder = tmp_path / "certs"
    folder.mkdir()
    shutil.copy(ca_file, folder / f"{digest}.0")
    return folder


@pytest.mark.parametrize(
    "source",
    ["config", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "system"],
)
def test_the_company_ca_from_each_place_an_operator_puts_it(
    tls_world: World,
    ca_file: Path,
    tmp_path: Path,
    source: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    if source == "config":
        tls_world.write(verify_tls=str(ca_file), sei={"verify_tls": str(ca_file)})
    elif source == "system":
        # The system store is OpenSSL's default paths, which honour SSL_CERT_FILE on Linux.
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        tls_world.write(verify_tls="system", sei={"verify_tls": "system"})
    else:
        where = _hashed_dir(ca_file, tmp_path) if source == "SSL_CERT_DIR" else ca_file
        monkeypatch.setenv(source, str(where))
        tls_world.write()
    assert tls_world.run("once") == 0
    assert tls_world.delivered() == EXPECTED
    capsys.readouterr()
    assert tls_world.run("check") == 0
    out = capsys.readouterr().out
    trust = {
        "config": f"CA bundle {ca_file} (verify_tls)",
        "system": 'the system trust store (verify_tls = "system")',
    }.get(source, f"({source})")
    assert out.count(trust) == 3  # two servers and SEI, each says where its trust comes from


def test_an_untrusted_certificate_is_one_line_never_retried_and_loses_nothing(
    tls_world: World, ca_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    tls_world.write()  # no CA given: the default bundle does not know the company's CA
    assert tls_world.run("once") == 1
    err = capsys.readouterr().err
    port = _port(tls_world.jenkins.url)
    line = (
        f"TLS: cannot trust {port}: unknown issuer (the server's CA is not trusted here); set"
        " servers[0] (jenkins-main).verify_tls to your CA bundle"
    )
    assert line in err and "Traceback" not in err
    assert tls_world.jenkins.handshake_failures == 1  # not retried within the poll
    assert tls_world.tc.handshake_failures == 1
    assert tls_world.delivered() == []
    capsys.readouterr()
    assert tls_world.run("check") == 1
    out = capsys.readouterr().out
    assert f"TLS: cannot trust {_port(tls_world.sei.url)}: unknown issuer" in out
    assert "set sei.verify_tls to your CA bundle" in out
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    assert tls_world.run("once") == 0
    assert tls_world.delivered() == EXPECTED  # once each


@pytest.mark.parametrize("ci", ["teamcity", "buildkite", "bamboo", "gocd"])
def test_every_connector_takes_the_same_route_and_trust(
    ci: str, tmp_path: Path, server_tls: Any, ca_file: Path, proxy: ForwardProxy, capsys: Any
) -> None:
    """Each connector's demo server over HTTPS behind the egress proxy, both named only by
    the server's own keys (no environment a bare session would read): without the company
    CA one line and one handshake (never retried), nothing sent; with it, everything,
    through the tunnel. A connector building its own session fails one or the other."""
    _, standin, keys = _stand_in(ci, tls=server_tls)
    with standin as server, FakeSei() as sei:
        route = f'{keys(server)}\nproxy = "{proxy.url()}"'
        config = str(write_demo_config(tmp_path, sei, route, ci))
        assert main(["-c", config, "once"]) == 1
        err = capsys.readouterr().err
        assert f"TLS: cannot trust {_port(server.url)}: unknown issuer" in err
        assert "Traceback" not in err
        assert server.handshake_failures == 1
        assert sei.received == []
        write_demo_config(tmp_path, sei, f'{route}\nverify_tls = "{ca_file}"', ci)
        assert main(["-c", config, "once"]) == 0
        assert len(sei.received) > 0
        assert _port(server.url) in _hosts(proxy, "CONNECT")


def test_the_daemon_says_it_once_per_poll_and_keeps_the_other_servers_going(
    tmp_path: Path, server_tls: Any
) -> None:
    w = _world(tmp_path, jenkins_tls=server_tls)
    try:
        w.write(poll_interval="1s")
        proc = subprocess.Popen(
            [sys.executable, "-m", "poller", "-c", str(w.config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while w.delivered() != [("Acme/Acme_Build", 1)] and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2.5)  # a few more polls
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert w.delivered() == [("Acme/Acme_Build", 1)]  # TeamCity went on
        polls = err.count('"event": "poll finished", "server": "jenkins-main"')
        tls_lines = err.count("TLS: cannot trust")
        assert polls >= 2 and tls_lines == polls  # one line per poll, not per request
        assert w.jenkins.handshake_failures == polls
        assert "Traceback" not in err
    finally:
        _stop(w)


def test_sei_behind_an_untrusted_certificate_keeps_every_build_pending(
    tmp_path: Path, server_tls: Any, ca_file: Path, capsys: Any
) -> None:
    w = _world(tmp_path, sei_tls=server_tls)
    try:
        w.write()
        assert w.run("once") == 1
        err = capsys.readouterr().err
        assert err.count("TLS: cannot trust") == 1  # one line, not one per payload or retry
        assert "delivery stopped for this cycle" in err
        assert w.outbox() == {"pending": 2}
        assert w.sei.handshake_failures <= 4  # at most the POSTs sent at once, then it stops
        w.write(sei={"verify_tls": str(ca_file)})
        assert w.run("once") == 0
        assert w.delivered() == EXPECTED
        assert w.outbox() == {"sent": 2}
    finally:
        _stop(w)


# -- client certificates ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA(organization_name="Example Corp Client CA")


def _client_files(client_ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    leaf = client_ca.issue_cert("sei-poller@example.com")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def test_mutual_tls_for_a_ci_server_and_for_sei(
    tmp_path: Path, ca: trustme.CA, client_ca: trustme.CA, ca_file: Path, capsys: Any
) -> None:
    wants_client = server_context(ca.issue_cert("127.0.0.1"), client_ca=client_ca)
    w = _world(tmp_path, ci_tls=wants_client, sei_tls=wants_client)
    try:
        w.write(verify_tls=str(ca_file), sei={"verify_tls": str(ca_file)})
        assert w.run("once") == 1
        err = capsys.readouterr().err
        port = _port(w.tc.url)
        assert (
            f"TLS: {port} refused our client certificate" in err  # the alert arrived
            or f"TLS: {port} ended the handshake (does it want a client certificate?)" in err
        )
        assert "set servers[1] (tc-main).client_cert and" in err
        assert w.delivered() == []
        cert, key = _client_files(client_ca, tmp_path)
        both = {"verify_tls": str(ca_file), "client_cert": str(cert), "client_key": str(key)}
        w.write(sei=both, **both)
        assert w.run("once") == 0
        assert w.delivered() == EXPECTED
    finally:
        _stop(w)


def test_a_client_key_that_does_not_match_is_a_config_error(
    world: World, client_ca: trustme.CA, tmp_path: Path, capsys: Any
) -> None:
    cert, _ = _client_files(client_ca, tmp_path)
    other = tmp_path / "other.key"
    client_ca.issue_cert("someone-else").private_key_pem.write_to_path(str(other))
    world.write(sei={"client_cert": str(cert), "client_key": str(other)})
    assert world.run("status") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"sei-poller: {world.config}: sei.client_key: the key in {other} does not match the"
        f" certificate in {cert}"
    ]
    world.write(client_cert=str(tmp_path / "missing.pem"))
    assert world.run("status") == 2
    assert "servers[0] (jenkins-main).client_cert: expected the path of a PEM file" in (
        capsys.readouterr().err
    )


# -- not JSON is a clear error, and never an acceptance ---------------------------------------


def test_a_login_page_in_front_of_ci_servers_is_one_line_each(world: World, capsys: Any) -> None:
    world.jenkins.faults.page(".*")
    world.tc.faults.page(".*", body=login_page("TeamCity - Log in"))
    world.write()
    assert world.run("once") == 1
    err = capsys.readouterr().err
    assert (
        "answered HTTP 200 with an HTML page titled 'Sign in - Example Corp SSO', not JSON from"
        " Jenkins: a login page, a proxy or a captive portal in front of it?"
    ) in err
    assert "with an HTML page titled 'TeamCity - Log in', not JSON from TeamCity" in err
    assert "Traceback" not in err and "JSONDecodeError" not in err
    assert not (world.dir / "state.db").exists() or world.outbox() == {}


@pytest.mark.parametrize("redirect", [False, True])
def test_a_login_page_in_front_of_sei_marks_nothing_sent(
    world: World, capsys: Any, redirect: bool
) -> None:
    if redirect:  # a gateway sending everyone to its SSO
        world.sei.portal = (302, b"", [("Location", "https://sso.example.com/login?next=/")])
    else:  # a captive portal answering every POST with its page and a 200
        world.sei.portal = (200, login_page("Wi-Fi Portal"), [])
    world.write()
    assert world.run("once") == 1
    err = capsys.readouterr().err
    if redirect:
        assert "redirected (HTTP 302) to https://sso.example.com/login" in err
    else:
        assert "answered HTTP 200 with an HTML page titled 'Wi-Fi Portal', not JSON from SEI" in err
    assert err.count("delivery stopped for this cycle") == 1  # no retry storm
    assert world.outbox() == {"pending": 2}
    world.sei.portal = None
    assert world.run("once") == 0
    assert world.delivered() == EXPECTED


# -- requests go only where the config points ----------------------------------------------


def test_a_redirect_to_another_host_names_both_and_sends_it_nothing(
    world: World, capsys: Any
) -> None:
    with FakeJenkins() as elsewhere:
        target = elsewhere.url.replace("127.0.0.1", "localhost") + "login"
        world.jenkins.faults.page(".*", status=302, location=target)
        world.tc.faults.page(".*", status=302, location=target)
        world.write()
        assert world.run("once") == 1
        err = capsys.readouterr().err
        ours = _port(world.jenkins.url)
        theirs = _port(target)
        assert f"redirected to another host, {theirs} (from {ours}); not followed" in err
        assert elsewhere.requests == []  # no request, so no credentials, went there
    assert world.delivered() == []


# -- secrets stay secret ----------------------------------------------------------------------


def test_no_proxy_password_in_any_output(world: World, proxy: ForwardProxy, capsys: Any) -> None:
    world.write(proxy=proxy.url(), sei={"proxy": proxy.url()})
    outputs = []
    for args in (
        ["--log-level", "debug", "once"],
        ["check"],
        ["status"],
        ["status", "--json"],
        ["explain", "jenkins-main", "app", "1"],
    ):
        world.run(*args)
        got = capsys.readouterr()
        outputs.append(got.out + got.err)
    text = "\n".join(outputs)
    assert world.delivered() == EXPECTED
    assert f"via proxy http://127.0.0.1:{proxy.port} (proxy key)" in text
    for secret in (proxy.password, "proxy-p%40ss%3Aword"):
        assert secret not in text
        assert secret.encode() not in (world.dir / "state.db").read_bytes()
