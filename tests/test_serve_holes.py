"""The holes of issue #30, each a row against a real `rewardkit serve` on loopback (bounded in count and
time): forwarded headers, header trickling (slowloris), a restart right after kill -9, TLS handshakes
and certificates, and the small ones (lower-case bearer, a bad PEM)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from rewardkit import RemoteRewardModel, load_reward_model  # noqa: E402
from rewardkit.errors import RewardkitError  # noqa: E402
from tests.test_serve import SCRIPT, _free_port, server  # noqa: E402
from tests.test_serve_hostile import rm_dir, self_signed  # noqa: E402, F401

BODY = {"query": ["tell me good"]}


def test_forwarded_for_is_ignored_unless_the_proxy_is_named(rm_dir):  # noqa: F811
    """--allow-from 10.0.0.0/8 and a loopback client (an ssh tunnel, a sidecar) claiming 10.1.2.3."""
    fake = {"X-Forwarded-For": "10.1.2.3"}
    for proxies, status in (((), 403), (("--forwarded-allow-ips", "127.0.0.1"), 200)):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = _start(port, str(rm_dir), "--allow-from", "10.0.0.0/8", *proxies)
        try:
            _healthy(url, proc, headers=fake, ok=(200, 403))  # 403 from the network check alone
            _healthy(url, proc, headers=fake, ok=(status,))
            r = httpx.post(f"{url}/get_reward", json=BODY, headers=fake)
            assert r.status_code == status, r.text
            assert httpx.post(f"{url}/get_reward", json=BODY).status_code == 403  # loopback is not allowed
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def _trickle(port: int, socks: list, closed: dict, stop: threading.Event) -> None:
    """Open connections that send a request line and then one header byte at a time."""
    t0 = time.perf_counter()
    for i in range(len(socks)):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        socks[i] = s
    while not stop.is_set() and len(closed) < len(socks):
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                s.send(b"X")  # never a complete header line
                if s.recv(1024) == b"":
                    closed[i] = time.perf_counter() - t0
            except BlockingIOError:
                pass
            except OSError:
                closed[i] = time.perf_counter() - t0
        time.sleep(0.2)


def test_header_trickling_connections_are_cut_and_others_served(rm_dir):  # noqa: F811
    """70 connections trickling header bytes against --max-connections 64: each is cut within the
    header timeout (the oldest earlier, when a newcomer needs their place) and a normal client gets 200
    throughout."""
    timeout = 2.0
    args = ("--max-connections", "64", "--header-timeout", str(timeout))
    with server("--rm", str(rm_dir), *args) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        socks: list = [None] * 70
        closed: dict[int, float] = {}
        stop = threading.Event()
        t = threading.Thread(target=_trickle, args=(port, socks, closed, stop))
        t.start()
        statuses = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout + 2:
            statuses.append(httpx.post(f"{url}/get_reward", json=BODY, timeout=5).status_code)
            time.sleep(0.1)
        stop.set()
        t.join()
        for s in socks:
            s.close()
    assert set(statuses) == {200} and len(statuses) >= 10, statuses
    assert len(closed) == 70 and max(closed.values()) < timeout + 1.5, sorted(closed.values())[-5:]


def test_idle_connections_are_closed_after_keep_alive(rm_dir):  # noqa: F811
    with server("--rm", str(rm_dir), "--keep-alive", "1", "--header-timeout", "30") as (url, _):
        port = int(url.rsplit(":", 1)[1])
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        t0, data = time.perf_counter(), b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and 0.8 < time.perf_counter() - t0 < 3


def _start(port: int, rm: str, *args: str) -> subprocess.Popen:
    cmd = [SCRIPT, "serve", "--rm", rm, "--port", str(port), "--dtype", "float32", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def _healthy(url: str, proc: subprocess.Popen, seconds: float = 60, headers=None, ok=(200,)) -> None:
    """Wait until /health answers one of ``ok``."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(f"{url}/health", timeout=1, headers=headers).status_code in ok:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("not healthy")


def test_a_restart_right_after_kill_9_binds(rm_dir):  # noqa: F811
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    first = _start(port, str(rm_dir))
    try:
        _healthy(url, first)
        with httpx.Client() as client:  # connections the dead server leaves in TIME_WAIT
            for _ in range(3):
                assert client.post(f"{url}/get_reward", json=BODY).status_code == 200
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        second = _start(port, str(rm_dir))
        try:
            _healthy(url, second)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()


def test_tls_certificates_handshakes_and_bad_pem(rm_dir, tmp_path):  # noqa: F811
    cert, key = self_signed(tmp_path)
    local = load_reward_model(rm_dir)
    args = ("--rm", str(rm_dir), "--ssl-keyfile", key, "--ssl-certfile", cert, "--tls-handshake-timeout", "1")
    import ssl

    with server(*args, verify=ssl.create_default_context(cafile=cert)) as (url, _):
        t0 = time.perf_counter()
        with pytest.raises(RewardkitError, match="TLS: .*ca="):  # no retry can fix an untrusted certificate
            RemoteRewardModel(url).score(["tell me"], [" good"])
        assert time.perf_counter() - t0 < 5
        for remote in (RemoteRewardModel(url, ca=cert), RemoteRewardModel(url, verify=cert)):
            np.testing.assert_allclose(
                remote.score(["tell me"], [" good"]), local.score(["tell me"], [" good"]), atol=1e-5
            )
        port = int(url.rsplit(":", 1)[1])
        silent = socket.create_connection(("127.0.0.1", port))  # never starts its handshake
        silent.settimeout(5)
        t0 = time.perf_counter()
        assert silent.recv(16) == b"" and time.perf_counter() - t0 < 3
        silent.close()
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    run = subprocess.run([SCRIPT, "serve", "--rm", str(rm_dir), "--ssl-keyfile", str(bad), "--ssl-certfile",
                          str(bad), "--port", str(_free_port())], capture_output=True, text=True, timeout=60)  # fmt: skip
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    assert run.returncode == 2 and len(lines) == 1 and str(bad) in lines[0], run.stderr


def test_lower_case_bearer_and_strict_token_ids(rm_dir):  # noqa: F811
    with server("--rm", str(rm_dir), env={"REWARDKIT_API_KEY": "k"}) as (url, _):
        for header in ("Bearer k", "bearer k", "BEARER  k"):
            assert (
                httpx.post(f"{url}/get_reward", json=BODY, headers={"Authorization": header}).status_code
                == 200
            )
        for header in ("Bearer kk", "Basic k", "k"):
            assert (
                httpx.post(f"{url}/get_reward", json=BODY, headers={"Authorization": header}).status_code
                == 401
            )
        auth = {"Authorization": "Bearer k"}
        r = httpx.post(f"{url}/detokenize", json={"tokens": [True]}, headers=auth)
        assert r.status_code == 400 and "field 'tokens.0'" in r.json()["error"]["message"]
