"""Where each request goes and whom it trusts: one route and one trust decision per endpoint.

Every outbound request — each connector's, SEI delivery's, `register`'s and `check`'s — is
made through an `Endpoint` built here from the same keys (`proxy`, `verify_tls`,
`client_cert`, `client_key`, in `[sei]` and on every server) and the same environment
variables, so no request finds its own way out:

- **Route**: `proxy = "http://user:pass@proxy:3128"` or `"none"` (direct), else the
  environment as requests and curl read it (`HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`,
  either case, and `NO_PROXY`). HTTPS goes through a proxy by `CONNECT`.
- **Trust**: `verify_tls = true` is the default bundle (certifi), or `REQUESTS_CA_BUNDLE`,
  `CURL_CA_BUNDLE`, `SSL_CERT_FILE` or `SSL_CERT_DIR` when set (in that order), as other
  Python tools do; a path is that CA bundle alone; `"system"` is the operating system's
  store (OpenSSL's default paths, which honour `SSL_CERT_FILE` on Linux); `false` trusts
  anyone (and says so at start).

Nothing here knows SEI or a CI system. The failures that are the operator's to fix (a
certificate, a page that is not the API's JSON) get one line each from `tls_problem` and
`not_json`, never a traceback and never a retry.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import certifi
import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.util import make_headers

TRUST_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
# urllib3 sets TCP_NODELAY on direct connections but not on those it opens to a proxy, and
# there Nagle's algorithm holds a POST's body back for the proxy's delayed ACK: 40 ms per
# POST (`benchmarks/proxy.py`: 181 POSTs/s through a proxy instead of 1,500). Said always.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class NetworkConfigError(ValueError):
    """A route or trust setting that cannot work (a file missing, a key not matching);
    `key` names the setting."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Endpoint:
    """How requests to one configured URL go out: through which proxy, trusting whom."""

    url: str
    proxy: str | None  # the proxy URL, credentials included; None: direct
    route: str  # for `check` and logs: "direct", "proxy http://host:3128 (HTTPS_PROXY)"
    context: ssl.SSLContext
    verify: bool
    trust: str  # for `check`: where trust comes from
    key: str = ""  # the config table it came from, for messages: "sei", "servers[0] (main)"

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc.rsplit("@", 1)[-1]

    def proxy_headers(self) -> dict[str, str]:
        """`Proxy-Authorization` for a proxy URL with credentials."""
        if not self.proxy:
            return {}
        parts = urlsplit(self.proxy)
        if parts.username is None:
            return {}
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        return dict(make_headers(proxy_basic_auth=auth))

    def tls_options(self) -> dict[str, Any]:
        """urllib3's connection keywords for trusting what this endpoint trusts (its context
        holds the CAs and the client certificate), with Nagle off."""
        options: dict[str, Any] = {
            "ssl_context": self.context,
            "cert_reqs": "CERT_REQUIRED" if self.verify else "CERT_NONE",
            "socket_options": NODELAY,
        }
        if not self.verify:
            options["assert_hostname"] = False
        return options

    def pool(self, *, maxsize: int, timeout: urllib3.Timeout) -> urllib3.PoolManager:
        """A urllib3 pool for this endpoint: through the proxy (CONNECT for https) or not."""
        common: dict[str, Any] = {
            "num_pools": 2,
            "maxsize": maxsize,
            "retries": False,
            "timeout": timeout,
            **self.tls_options(),
        }
        if self.proxy:
            return urllib3.ProxyManager(
                _without_userinfo(self.proxy),
                proxy_headers=self.proxy_headers(),
                proxy_ssl_context=self.context,
                **common,
            )
        return urllib3.PoolManager(**common)

    def mount(self, session: requests.Session, **adapter: Any) -> requests.Session:
        """Send `session` this endpoint's way and no other: its proxy and its trust, the
        environment read once (by `endpoint`), not again by requests on each request.
        `adapter` goes to `EndpointAdapter` (retries, pool sizes)."""
        session.trust_env = False
        session.verify = self.verify
        session.proxies = {"http": self.proxy, "https": self.proxy} if self.proxy else {}
        mounted = EndpointAdapter(self, **adapter)
        session.mount("http://", mounted)
        session.mount("https://", mounted)
        return session


def endpoint(
    url: str,
    *,
    proxy: str | None = None,
    verify_tls: bool | str = True,
    client_cert: str | None = None,
    client_key: str | None = None,
    key: str = "",
) -> Endpoint:
    """The route and trust for `url`; raises NetworkConfigError on a setting that cannot work."""
    chosen, route = _route(url, proxy)
    context, verify, trust = _trust(verify_tls)
    if client_cert:
        try:
            context.load_cert_chain(client_cert, client_key)
        except ssl.SSLError as exc:
            mismatch = "KEY_VALUES_MISMATCH" in str(exc).upper()
            raise NetworkConfigError(
                _cert_chain_problem(exc, client_cert, client_key),
                "client_key" if mismatch else "client_cert",
            ) from None
        except OSError as exc:
            raise NetworkConfigError(
                f"cannot read {exc.filename or client_cert}: {exc.strerror}", "client_cert"
            ) from None
        trust += f"; client certificate {client_cert}"
    return Endpoint(url, chosen, route, context, verify, trust, key)


def _route(url: str, proxy: str | None) -> tuple[str | None, str]:
    if proxy is not None:
        if proxy.strip().lower() == "none":
            return None, 'direct (proxy = "none")'
        return proxy, f"proxy {redact(proxy)} (proxy key)"
    scheme = urlsplit(url).scheme
    found = get_environ_proxies(url)  # *_proxy in either case, NO_PROXY honoured
    chosen = found.get(scheme) or found.get("all")
    if not chosen:
        return None, "direct"
    if "://" not in chosen:
        chosen = "http://" + chosen
    name = next(
        (
            n
            for n in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY")
            if os.environ.get(n)
        ),
        "environment",
    )
    return chosen, f"proxy {redact(chosen)} ({name})"


def _trust(verify_tls: bool | str) -> tuple[ssl.SSLContext, bool, str]:
    if verify_tls is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context, False, "none: verify_tls = false, any certificate is accepted"
    if verify_tls == "system":
        return ssl.create_default_context(), True, 'the system trust store (verify_tls = "system")'
    if isinstance(verify_tls, str):
        return _bundle(verify_tls), True, f"CA bundle {verify_tls} (verify_tls)"
    for name in TRUST_ENV:
        value = os.environ.get(name)
        if value:
            return _bundle(value), True, f"CA bundle {value} ({name})"
    return _bundle(certifi.where()), True, "the default CA bundle (certifi)"


def _bundle(path: str) -> ssl.SSLContext:
    """A context trusting `path` alone (a file, or an OpenSSL hashed directory)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks names, trusts none
    try:
        if Path(path).is_dir():
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise NetworkConfigError(f"no such CA bundle: {path}", "verify_tls") from None
    except (ssl.SSLError, OSError):
        raise NetworkConfigError(
            f"{path} holds no certificate in PEM form (-----BEGIN CERTIFICATE-----)", "verify_tls"
        ) from None
    return context


def _cert_chain_problem(exc: ssl.SSLError, cert: str, key: str | None) -> str:
    text = str(exc).upper()
    if "KEY_VALUES_MISMATCH" in text:
        return f"the key in {key or cert} does not match the certificate in {cert}"
    if "PEM" in text or "NO_START_LINE" in text:
        return f"{cert} (and {key or cert}) must hold a PEM certificate and its private key"
    return f"{cert}: {exc.reason or exc}"


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}"


def redact(url: str) -> str:
    """A URL without its credentials: for `check`, logs and error lines."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path if parts.path != '/' else ''}"


def proxy_secrets(endpoints: list[Endpoint]) -> set[str]:
    """Proxy passwords (raw and decoded), for the log redactor."""
    found = set()
    for ep in endpoints:
        if ep.proxy:
            password = urlsplit(ep.proxy).password
            if password:
                found.update({password, unquote(password)})
    return found


class EndpointAdapter(HTTPAdapter):
    """A requests adapter that trusts what the endpoint trusts, through its proxy too.

    requests would otherwise add its own CA bundle to every connection (`cert_verify`);
    here the endpoint's `SSLContext` is the whole decision.
    """

    def __init__(self, ep: Endpoint, **kwargs: Any) -> None:
        self.endpoint = ep
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **kwargs: Any
    ) -> None:
        super().init_poolmanager(
            connections, maxsize, block, **kwargs, **self.endpoint.tls_options()
        )

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        return super().proxy_manager_for(
            proxy, proxy_ssl_context=self.endpoint.context, **kwargs, **self.endpoint.tls_options()
        )

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """The context already holds the trust and the client certificate."""

    def build_connection_pool_key_attributes(
        self, request: Any, verify: Any, cert: Any = None
    ) -> Any:
        host, _pool = super().build_connection_pool_key_attributes(request, verify, cert)
        return host, self.endpoint.tls_options()


# -- the operator's failures, in one line each -----------------------------------------------

# OpenSSL's verify codes (x509_vfy.h) worth naming, in words an operator acts on.
_VERIFY = {
    2: "unknown issuer (the server's CA is not trusted here)",
    10: "the certificate has expired",
    9: "the certificate is not valid yet (check the clocks)",
    18: "a self-signed certificate",
    19: "a self-signed certificate in its chain (a private or intercepting CA)",
    20: "unknown issuer (the server's CA is not trusted here)",
    21: "unknown issuer (the server sent an incomplete chain)",
    62: "the certificate does not name this host",
    64: "the certificate does not name this IP address",
}


def tls_problem(exc: BaseException, ep: Endpoint | None, url: str) -> str:
    """One line for a failed TLS handshake: the host, the reason, what to set."""
    host = urlsplit(url).netloc.rsplit("@", 1)[-1]
    err = _innermost_ssl(exc)
    key = f"{ep.key}." if ep is not None and ep.key else ""
    code = getattr(err, "verify_code", None)
    if isinstance(err, ssl.SSLCertVerificationError) and code in _VERIFY:
        reason = _VERIFY[code]
        if code in (62, 64):
            hint = f"use the host name the certificate names in {key or ''}url"
        elif code in (9, 10):
            hint = "renew the server's certificate"
        else:
            hint = f'set {key}verify_tls to your CA bundle (or "system"), or REQUESTS_CA_BUNDLE'
        return f"TLS: cannot trust {host}: {reason}; {hint}"
    text = str(err).upper()
    if any(s in text for s in ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA")):
        return (
            f"TLS: {host} refused our client certificate (or wanted one); set {key}client_cert"
            f" and {key}client_key to a certificate it accepts"
        )
    if isinstance(err, ssl.SSLEOFError) or "UNEXPECTED_EOF" in text or "EOF OCCURRED" in text:
        # TLS 1.3 sends the refusal after the client thinks it is done: it reads an EOF.
        return (
            f"TLS: {host} ended the handshake (does it want a client certificate?); set"
            f" {key}client_cert and {key}client_key to a certificate it accepts"
        )
    if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER" in text:
        return (
            f"TLS: {host} does not speak TLS on that port; is the URL http:// rather than https://?"
        )
    reason = getattr(err, "reason", None) or getattr(err, "verify_message", None) or str(err)
    return f"TLS: handshake with {host} failed: {reason}; check {key}verify_tls and the URL"


def is_tls_failure(exc: BaseException) -> bool:
    return _innermost_ssl(exc) is not None


def _innermost_ssl(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    stack: list[Any] = [exc]
    found = None
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLError):
            found = e  # keep going: the innermost is the most specific
        stack.extend(
            [getattr(e, "reason", None), e.__cause__, e.__context__, *getattr(e, "args", ())]
        )
        stack = [x for x in stack if isinstance(x, BaseException) or x is None]
    return found


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


def page_title(body: bytes) -> str | None:
    m = _TITLE.search(body[:65536])
    if not m:
        return None
    title = " ".join(unescape(m.group(1).decode("utf-8", "replace")).split())
    return title[:80] or None


def looks_like_html(body: bytes, content_type: str | None = None) -> bool:
    head = body[:512].lstrip().lower()
    return "html" in (content_type or "").lower() or head.startswith((b"<!doctype", b"<html"))


def not_json(url: str, status: int, content_type: str | None, body: bytes, what: str) -> str:
    """One line for an answer that is not the API's JSON (a login page, a proxy's page)."""
    where = redact(url)
    if looks_like_html(body, content_type):
        title = page_title(body)
        shown = f"an HTML page titled {title!r}" if title else "an HTML page"
        return (
            f"{where} answered HTTP {status} with {shown}, not JSON from {what}: a login page,"
            " a proxy or a captive portal in front of it? check the url, the credentials and"
            " the proxy"
        )
    sample = body[:60].decode("utf-8", "replace").strip()
    shown = f"{sample!r}" if sample else "an empty body"
    return f"{where} answered HTTP {status} with {shown}, not JSON from {what} (cut short?)"
