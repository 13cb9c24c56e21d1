"""SEI delivery direct and through an authenticated egress proxy, over HTTP and HTTPS.

The same `Sender` (urllib3 pool, as `once` and `run` use it) posts N payloads from 8
threads to the SEI stand-in, directly and through `ForwardProxy` (absolute-form for
http://, a CONNECT tunnel for https://). Prints POSTs per second and the TCP connections
the SEI stand-in accepted: a proxy must cost neither the pooled connections nor the
concurrency.

    python -m benchmarks.proxy --posts 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import trustme

from poller import network
from poller.sei import Sender
from poller.standins.forward_proxy import ForwardProxy
from poller.standins.sei import FakeSei
from poller.standins.tls import server_context

THREADS = 8


def payload(n: int) -> bytes:
    return json.dumps(
        {
            "pipeline": "app",
            "job_full_name": "team/app",
            "qualified_name": "team/app",
            "instance_name": "Jenkins-1",
            "instance_guid": "666ba79b-3f3d-4236-ac04-4686ce526705",
            "build_number": n,
            "result": "SUCCESS",
            "start_time": 1_700_000_000_000 + n,
            "duration": 1000,
        }
    ).encode()


def measure(posts: int, *, tls: bool, proxied: bool, ca: trustme.CA, ca_file: str) -> dict:
    sei = FakeSei(tls=server_context(ca.issue_cert("127.0.0.1")) if tls else None).start()
    proxy = ForwardProxy().start() if proxied else None
    ep = network.endpoint(
        sei.url,
        proxy=proxy.url() if proxy else "none",
        verify_tls=ca_file if tls else True,
        key="sei",
    )
    sender = Sender(sei.url, sei.api_key, concurrency=THREADS, net=ep)
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        kinds = list(pool.map(lambda n: sender.post(payload(n)).kind, range(posts)))
    seconds = time.perf_counter() - started
    sender.close()
    row = {
        "scheme": "https" if tls else "http",
        "route": "proxy" if proxied else "direct",
        "posts": posts,
        "accepted": kinds.count("sent"),
        "posts_per_second": round(posts / seconds),
        "sei_connections": sei.connections,
        "proxy_tunnels": len(proxy.asked("CONNECT")) if proxy else 0,
    }
    sei.stop()
    if proxy:
        proxy.stop()
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=2000)
    args = ap.parse_args()
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = str(Path(tmp) / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        rows = [
            measure(args.posts, tls=tls, proxied=proxied, ca=ca, ca_file=ca_file)
            for tls in (False, True)
            for proxied in (False, True)
        ]
    print("| scheme | route | accepted | POSTs/s | connections to SEI | CONNECT tunnels |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['scheme']} | {r['route']} | {r['accepted']} of {r['posts']} "
            f"| {r['posts_per_second']} | {r['sei_connections']} | {r['proxy_tunnels']} |"
        )


if __name__ == "__main__":
    main()
