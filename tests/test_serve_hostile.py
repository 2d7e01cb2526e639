"""A real `rewardkit serve` process under hostile traffic: each row a status and a one-line error, the
server healthy after each, its memory bounded; trickling, disconnecting and large clients; TLS, client
networks, and what an unauthenticated /health may say."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from rewardkit import BradleyTerryRM, load_reward_model  # noqa: E402
from rewardkit.base import RewardModel  # noqa: E402
from rewardkit.templating import Texts  # noqa: E402
from tests.test_serve import server  # noqa: E402

MiB = 2**20


@pytest.fixture(scope="module")
def rm_dir(tiny_lm, tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile") / "rm"
    BradleyTerryRM.from_pretrained(tiny_lm, head_seed=7).save(d)
    return d


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return float(next(x for x in text.splitlines() if x.startswith(name + " ")).split()[-1])


def probe(url: str, health_ms: list) -> None:
    """Time /health (run while another request's body is read and parsed)."""
    t0 = time.perf_counter()
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200
    health_ms.append(1000 * (time.perf_counter() - t0))


def test_hostile_table(rm_dir):
    ok = {"prompts": ["tell me"], "responses": [" good"]}
    expected = load_reward_model(rm_dir).score(ok["prompts"], ok["responses"])
    cap = 16 * 512  # 16 characters a token x the tiny model's context
    rows = [  # (what, path, body bytes, status, message in the error)
        (
            "4 MiB text",
            "/score",
            {"prompts": ["x"], "responses": ["a" * 4 * MiB]},
            413,
            "field 'responses.0'",
        ),
        ("1 MiB query", "/get_reward", {"query": ["q" * MiB]}, 413, "field 'query.0'"),
        ("just over the cap", "/score", {"prompts": ["p" * (cap + 1)], "responses": ["a"]}, 413, f"{cap}"),
        ("1 MiB vLLM input", "/pooling", {"input": "i" * MiB}, 413, "field 'input.0'"),
        (
            "1 MiB pair",
            "/score_pairs",
            {"pairs": [{"prompt": "x", "chosen": "c" * MiB, "rejected": "r"}]},
            413,
            "field 'pairs.chosen.0'",
        ),  # fmt: skip
        (
            "400k messages",
            "/score",
            {"prompts": [[{"role": "user", "content": ""}] * 400_000], "responses": ["a"]},
            413,
            "JSON values",
        ),  # fmt: skip
        (
            "17 MiB body",
            "/score",
            {"prompts": ["x"], "responses": ["a" * 17 * MiB]},
            413,
            "exceeds the limit",
        ),
        ("no messages", "/pooling", {"messages": []}, 400, "'messages' is empty"),
        ("no messages (classify)", "/classify", {"messages": []}, 400, "'messages' is empty"),
        ("invalid JSON", "/score", b"{not json", 400, "invalid JSON"),
        ("a JSON list", "/score", b"[1, 2]", 400, "field 'body'"),
        ("not UTF-8", "/score", b"\xff\xfe", 400, "invalid JSON"),
        ("wrong type", "/get_reward", {"query": [3]}, 400, "field 'query.0'"),
        ("unknown field", "/score", {**ok, "extra": 1}, 400, "field 'extra'"),
        ("deeply nested", "/score", b'{"prompts": ' + b"[" * 100_000, 400, "nested too deeply"),
        (
            "lone surrogate",
            "/score",
            b'{"prompts": ["q \\ud800 x"], "responses": ["a"]}',
            400,
            "lone surrogate",
        ),
    ]
    with server("--rm", str(rm_dir)) as (url, proc):
        base = rss_mib(proc.pid)
        client = httpx.Client(timeout=60)
        for what, path, body, status, message in rows:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            health_ms: list[float] = []

            t = threading.Timer(0.05, probe, args=(url, health_ms))
            t.start()
            r = client.post(f"{url}{path}", content=content, headers={"content-type": "application/json"})
            t.join()
            assert r.status_code == status and message in r.json()["error"]["message"], (
                what,
                r.status_code,
                r.text[:300],
            )
            assert "\n" not in r.json()["error"]["message"] and len(r.json()["error"]["message"]) < 300, what
            assert health_ms[0] < 1000, (what, health_ms)  # the event loop was never blocked for long
            np.testing.assert_allclose(
                client.post(f"{url}/score", json=ok).json()["rewards"], expected, atol=1e-5
            )
        for i in range(60):  # distinct 1 MiB prompts: refused, and nothing of them kept
            r = client.post(f"{url}/score", json={"prompts": [f"{i} " + "p" * MiB], "responses": ["a"]})
            assert r.status_code == 413
        for i in range(60):  # distinct prompts just under the cap: scored, the prompt cache stays bounded
            r = client.post(
                f"{url}/score", json={"prompts": [f"{i} " + "tell me " * (cap // 8 - 1)], "responses": ["a"]}
            )
            assert r.status_code == 200, r.text
        grown = rss_mib(proc.pid) - base
        assert grown < 400, f"the server grew by {grown:.0f} MiB"
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_a_trickling_client_is_cut_off_and_others_are_served(rm_dir):
    with server("--rm", str(rm_dir), "--receive-timeout", "2") as (url, _):
        port = int(url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        sock.settimeout(0.25)
        t0, answer = time.perf_counter(), b""
        while time.perf_counter() - t0 < 20:
            try:
                sock.sendall(b" ")
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
            except TimeoutError:
                pass
            except OSError:  # the server closed the connection
                break
            assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        elapsed = time.perf_counter() - t0
        sock.close()
        assert b" 408 " in answer.split(b"\r\n")[0] and b"did not arrive within 2 s" in answer
        assert 1.5 < elapsed < 6, elapsed


def test_a_client_that_gives_up_is_not_scored(rm_dir):
    with server("--rm", str(rm_dir), "--max-wait-ms", "1500") as (url, _):
        before = _metric(url, "rewardkit_sequences_total")
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{url}/score", json={"prompts": ["x"] * 5, "responses": [" a"] * 5}, timeout=0.4)
        time.sleep(2.0)  # the pool it waited in has run
        assert _metric(url, "rewardkit_dropped_jobs_total") == 1.0
        assert _metric(url, "rewardkit_sequences_total") == before


def test_a_large_request_does_not_hold_up_a_single_sequence(rm_dir):
    big = {"prompts": ["tell me about it"] * 3000, "responses": [" good clear answer"] * 3000}
    done: dict[str, float] = {}
    args = ("--max-pool-sequences", "16", "--max-wait-ms", "0", "--max-request-sequences", "4000")
    with server("--rm", str(rm_dir), *args) as (url, _):

        def call(name, body):
            r = httpx.post(f"{url}/score", json=body, timeout=120)
            assert r.status_code == 200
            done[name] = time.perf_counter()

        t = threading.Thread(target=call, args=("big", big))
        t.start()
        time.sleep(0.3)
        call("single", {"prompts": ["tell me"], "responses": [" good"]})
        t.join()
    assert done["single"] < done["big"]


def self_signed(folder) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files in ``folder``: (cert, key)."""
    pytest.importorskip("cryptography")
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(folder / "cert.pem"), str(folder / "key.pem")


def test_tls(rm_dir, tmp_path):
    self_signed(tmp_path)
    import ssl

    ca = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    args = (
        "--rm",
        str(rm_dir),
        "--ssl-keyfile",
        str(tmp_path / "key.pem"),
        "--ssl-certfile",
        str(tmp_path / "cert.pem"),
    )
    with server(*args, verify=ca) as (url, _):
        assert url.startswith("https://")
        r = httpx.post(f"{url}/get_reward", json={"query": ["tell me good"]}, verify=ca)
        assert r.status_code == 200 and len(r.json()["rewards"]) == 1
        with pytest.raises(httpx.TransportError):
            httpx.get(url.replace("https://", "http://") + "/health", timeout=5)
        with pytest.raises(httpx.TransportError):  # a certificate the client does not trust
            httpx.get(f"{url}/health", timeout=5)


def test_client_networks_and_keys(rm_dir):
    body = {"query": ["tell me good"]}
    with server("--rm", str(rm_dir), "--allow-from", "10.0.0.0/8,127.0.0.1/32") as (url, _):
        assert httpx.post(f"{url}/get_reward", json=body).status_code == 200  # no key needed
    with server("--rm", str(rm_dir), "--allow-from", "127.0.0.1", env={"REWARDKIT_API_KEY": "k"}) as (url, _):
        r = httpx.post(f"{url}/get_reward", json=body)
        assert r.status_code == 401 and "bearer token" in r.json()["error"]["message"]
        assert (
            httpx.post(f"{url}/get_reward", json=body, headers={"Authorization": "Bearer k"}).status_code
            == 200
        )


def test_refused_networks_answer_403(rm_dir):
    from starlette.testclient import TestClient

    from rewardkit.serve.app import build_app
    from rewardkit.serve.settings import ServeSettings

    def app():
        return build_app(lambda: load_reward_model(rm_dir), ServeSettings(allow_from=("10.0.0.0/8",)))

    with TestClient(app(), client=("192.168.1.5", 5000)) as c:
        r = c.get("/health")
        assert r.status_code == 403 and "--allow-from" in r.json()["error"]["message"]
    with TestClient(app(), client=("10.1.2.3", 5000)) as c:
        for _ in range(200):
            if c.get("/health").status_code == 200:
                break
            time.sleep(0.05)
        assert c.post("/get_reward", json={"query": ["tell me good"]}).status_code == 200


class Flaky(RewardModel):
    """Fails (as a broken device would) while ``broken`` is set."""

    kind = "test_flaky"
    broken = True

    def score_texts(self, texts: Texts) -> np.ndarray:
        if Flaky.broken:
            raise RuntimeError("CUDA error: an illegal memory access at /secret/path")
        return np.zeros(len(texts), dtype=np.float32)

    def save(self, path, *, force=False):
        raise NotImplementedError

    @classmethod
    def _load(cls, path, manifest, **kwargs):
        raise NotImplementedError


def test_health_reports_engine_faults_and_never_internal_paths():
    from starlette.testclient import TestClient

    from rewardkit.errors import ModelError
    from rewardkit.serve.app import build_app

    def failing_load():
        raise ModelError("/secret/path/rm/config.json: invalid JSON")

    with TestClient(build_app(failing_load)) as c:
        for _ in range(100):
            r = c.get("/health")
            if r.status_code != 503:
                break
            time.sleep(0.05)
        assert r.status_code == 500 and "/secret" not in r.text
    with TestClient(build_app(Flaky)) as c:
        for _ in range(100):
            if c.get("/health").status_code == 200:
                break
            time.sleep(0.05)
        r = c.post("/score", json={"prompts": ["x"], "responses": ["y"]})
        assert r.status_code == 500
        h = c.get("/health")
        assert (
            h.status_code == 503
            and "RuntimeError" in h.json()["error"]["message"]
            and "/secret" not in h.text
        )
        Flaky.broken = False
        assert c.post("/score", json={"prompts": ["x"], "responses": ["y"]}).json()["rewards"] == [0.0]
        assert c.get("/health").json() == {"status": "ok", "queue_sequences": 0, "engine_faults": 1}


def test_ray_replica_health_check_without_ray():
    """The check Ray Serve calls on each replica (check_health), on the same app objects."""
    from rewardkit.errors import ModelError
    from rewardkit.serve.runners import _replica_app, replica_health
    from rewardkit.serve.settings import ServeSettings

    def failing_load():
        raise ModelError("no weights")

    bad = _replica_app(failing_load, ServeSettings(), {})
    bad.state.ready.wait(30)
    assert replica_health(bad) == "the model failed to load: no weights"
    Flaky.broken = True
    flaky = _replica_app(Flaky, ServeSettings(), {})
    flaky.state.ready.wait(30)
    assert replica_health(flaky) is None
    with pytest.raises(RuntimeError):
        flaky.state.server._score(Texts(["x"], ["y"]), False)
    flaky.state.server.batcher.fault = "RuntimeError"  # what a faulting pooled call records
    assert replica_health(flaky) == "the last engine call failed (RuntimeError)"
    flaky.state.server.batcher.stopping.set()
    flaky.state.server.batcher.join(5)
    assert replica_health(flaky) == "the scoring thread stopped"


def test_one_health_rule_behind_the_gate_health_info_and_ray():
    """Server.problem is the one health rule: a failed load answers 500 on /health, /info and a request
    alike; /health and the request hide the load error (it may name paths), /info and Ray's check give it."""
    from starlette.testclient import TestClient

    from rewardkit.errors import ModelError
    from rewardkit.serve.app import build_app
    from rewardkit.serve.runners import replica_health

    def failing_load():
        raise ModelError("/secret/rm: no weights")

    app = build_app(failing_load)
    with TestClient(app) as c:
        for _ in range(100):
            if c.get("/health").status_code != 503:
                break
            time.sleep(0.05)
        found = app.state.server.problem(engine_faults=True)
        assert (found.kind, found.status, found.detail) == ("load_failed", 500, "/secret/rm: no weights")
        health, info = c.get("/health"), c.get("/info")
        score = c.post("/score", json={"prompts": ["x"], "responses": ["y"]})
        assert [r.status_code for r in (health, info, score)] == [500, 500, 500]
        assert "/secret" not in health.text and "/secret" not in score.text
        assert info.json()["error"]["message"] == "the model failed to load: /secret/rm: no weights"
        assert replica_health(app) == "the model failed to load: /secret/rm: no weights"
