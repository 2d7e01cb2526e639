"""`rewardkit serve`: real server processes on free ports, driven by a real HTTP client (httpx)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from rewardkit import BradleyTerryRM, DPOImplicitRM, LengthPenalizedRM, RemoteRewardModel, load_reward_model  # noqa: E402
from rewardkit.synthetic import make_synthetic_preferences  # noqa: E402

SCRIPT = str(Path(sys.executable).parent / "rewardkit")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(*args: str, env: dict | None = None, verify=None):
    """A `rewardkit serve` process; yields (url, process) once /health answers 200 (https, checked
    against ``verify``, when ``--ssl-certfile`` is given)."""
    port = _free_port()
    proc = subprocess.Popen(
        [SCRIPT, "serve", "--port", str(port), "--dtype", "float32", *args],  # as the local models load
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    url = f"{'https' if '--ssl-certfile' in args else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stderr.read()}")
            try:
                if httpx.get(f"{url}/health", timeout=1, verify=verify or True).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                raise AssertionError("server did not become ready")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def models(tiny_lm, tmp_path_factory):
    from rewardkit.tiny import build_tiny_model

    d = tmp_path_factory.mktemp("serve")
    BradleyTerryRM.from_pretrained(tiny_lm, head_seed=7).save(d / "rm")
    ref = build_tiny_model(d / "ref", seed=3)
    DPOImplicitRM.from_pretrained(tiny_lm, ref, beta=0.5).save(d / "dporm")
    return d


def test_rewards_equal_local_scoring_and_the_client_is_a_reward_model(models, tmp_path, capsys):
    pairs = make_synthetic_preferences(24, seed=4)
    conv = [[{"role": "user", "content": "tell me about pasta"}]] * 2
    for kind in ("rm", "dporm"):
        local = load_reward_model(models / kind)
        with server("--rm", str(models / kind)) as (url, _):
            remote = RemoteRewardModel(url, chunk=10)  # several requests per call
            a, b = remote.score_pairs(pairs), local.score_pairs(pairs)
            assert np.abs(a.chosen - b.chosen).max() <= 1e-5 and np.abs(a.rejected - b.rejected).max() <= 1e-5
            np.testing.assert_allclose(
                remote.score(conv, ["good", "bad"]), local.score(conv, ["good", "bad"]), atol=1e-5
            )
            trl = remote(prompts=["tell me", "tell me"], completions=[" good", " bad"])
            np.testing.assert_allclose(
                trl, local(prompts=["tell me", "tell me"], completions=[" good", " bad"]), atol=1e-5
            )
            info = remote.info()
            assert (
                info["kind"] == ("explicit" if kind == "rm" else "implicit")
                and info["chat_template"] == "auto"
            )
            if kind == "rm":
                remote.save(tmp_path / "remote")
                assert isinstance(load_reward_model(tmp_path / "remote", allow_remote=url), RemoteRewardModel)
                data = tmp_path / "d.jsonl"
                pairs.save_jsonl(data)
                from rewardkit.cli import main

                main(["score", "--server", url, "--data", str(data), "--out", str(tmp_path / "remote.jsonl")])
                main(
                    [
                        "score",
                        "--rm",
                        str(models / kind),
                        "--data",
                        str(data),
                        "--out",
                        str(tmp_path / "local.jsonl"),
                        "--dtype",
                        "float32",  # as the server was started (score's auto may pick bf16 on this CPU)
                    ]
                )
                r = [json.loads(x)["margin"] for x in (tmp_path / "remote.jsonl").read_text().splitlines()]
                lo = [json.loads(x)["margin"] for x in (tmp_path / "local.jsonl").read_text().splitlines()]
                assert np.abs(np.array(r) - np.array(lo)).max() <= 1e-5
                capsys.readouterr()
                main(
                    [
                        "eval",
                        "--rm",
                        f"served={url}",
                        "--rm",
                        f"local={models / kind}",
                        "--data",
                        str(data),
                        "--dtype",
                        "float32",
                    ]
                )
                table = capsys.readouterr().out
                first = table.split("\n\n")[0]  # the accuracy table (the paired tests follow)
                rows = {
                    line.split("|")[1].strip(): line.split("|")[2]
                    for line in first.splitlines()
                    if line.startswith("| ")
                }
                assert rows["served"] == rows["local"]


def test_concurrent_requests_are_pooled_and_each_gets_its_own_results(models):
    local = load_reward_model(models / "rm")
    pairs = make_synthetic_preferences(48, seed=5)
    requests = [(pairs.prompts[i : i + 4], [p.chosen for p in pairs][i : i + 4]) for i in range(0, 48, 4)]
    with server("--rm", str(models / "rm"), "--max-wait-ms", "300") as (url, _):
        results: dict[int, list] = {}

        def call(i):
            p, r = requests[i]
            results[i] = httpx.post(f"{url}/score", json={"prompts": p, "responses": r}, timeout=60).json()[
                "rewards"
            ]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, (p, r) in enumerate(requests):
            np.testing.assert_allclose(results[i], local.score(p, r), atol=1e-5)
        metrics = httpx.get(f"{url}/metrics").text
    count = float(
        next(x for x in metrics.splitlines() if x.startswith("rewardkit_pool_requests_count")).split()[-1]
    )
    alone = float(
        next(
            x for x in metrics.splitlines() if x.startswith('rewardkit_pool_requests_bucket{le="1.0"}')
        ).split()[-1]
    )
    assert count < len(requests) and alone < count  # engine calls pooled several requests
    assert "rewardkit_sequences_total 48.0" in metrics and "rewardkit_batch_sequences_count" in metrics


def test_openrlhf_request_shape(models):
    """A query is final text: scored as it is, so the query of a plain (prompt, response) carries the
    EOS that rewardkit's plain-text convention appends, and the two rewards are equal."""
    local = load_reward_model(models / "rm")
    eos = local.tokenizer.eos_token
    prompts, responses = ["tell me about pasta", "explain the star"], [" good clear", " bad"]
    with server("--rm", str(models / "rm")) as (url, _):
        body = {
            "query": [p + r + eos for p, r in zip(prompts, responses)],
            "prompts": prompts,
            "labels": ["x", "y"],
        }
        out = httpx.post(f"{url}/get_reward", json=body).json()
        np.testing.assert_allclose(out["rewards"], local.score(prompts, responses), atol=1e-5)
        assert out["scores"] == out["rewards"]
        whole = httpx.post(f"{url}/get_reward", json={"query": body["query"]}).json()["rewards"]
        np.testing.assert_allclose(whole, out["rewards"], atol=1e-5)  # an explicit RM needs no boundary


def test_errors_answer_with_their_status_and_the_server_keeps_serving(models):
    key = {"Authorization": "Bearer s3cret"}
    ok = {"prompts": ["tell me"], "responses": [" good"]}
    with server(
        "--rm",
        str(models / "rm"),
        "--max-request-sequences",
        "8",
        "--max-request-bytes",
        "2KB",
        "--max-queue",
        "10",
        "--max-wait-ms",
        "200",
        env={"REWARDKIT_API_KEY": "s3cret"},
    ) as (url, _):
        cases = [
            (dict(content=b"{not json"), 400, "invalid JSON"),
            (dict(json={"prompts": ["x"]}), 400, "field 'responses': Field required"),
            (dict(json={"prompts": ["x", "y"], "responses": [" a"]}), 400, "have 2 and 1 items"),
            (dict(json={"prompts": ["x"], "responses": [3]}), 400, "field 'responses.0"),
            (dict(json={"prompts": [[{"role": "user"}]], "responses": [" a"]}), 400, "field 'prompts.0"),
            (dict(json={"prompts": ["x"], "responses": [{"content": "a"}]}), 400, "field 'responses.0"),
            (
                dict(json={"prompts": ["x"] * 9, "responses": [" a"] * 9}),
                413,
                "9 sequences exceed the limit of 8",
            ),
            (dict(json={"prompts": ["x" * 3000], "responses": [" a"]}), 413, "exceeds the limit of 2048"),
        ]
        for kwargs, status, message in cases:
            r = httpx.post(f"{url}/score", headers=key, **kwargs)
            assert r.status_code == status and message in r.json()["error"]["message"], (
                r.status_code,
                r.text,
            )
            assert "\n" not in r.json()["error"]["message"]
            assert httpx.post(f"{url}/score", headers=key, json=ok).status_code == 200
        r = httpx.post(f"{url}/score", json=ok)
        assert r.status_code == 401 and "bearer token" in r.json()["error"]["message"]
        assert httpx.get(f"{url}/health").status_code == 200  # health needs no token
        statuses, retry = [], []

        def burst():
            r = httpx.post(
                f"{url}/score",
                headers=key,
                json={"prompts": ["tell me"] * 8, "responses": [" good"] * 8},
                timeout=60,
            )
            statuses.append(r.status_code)
            retry.append(r.headers.get("retry-after"))

        threads = [threading.Thread(target=burst) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 200 in statuses and 503 in statuses and "1" in retry  # a full queue sheds load
        assert httpx.post(f"{url}/score", headers=key, json=ok).status_code == 200


def test_a_failing_request_does_not_affect_the_others(models, tmp_path):
    local = LengthPenalizedRM(load_reward_model(models / "rm"), length_penalty=0.5, unit="words")
    with server(
        "--rm",
        str(models / "rm"),
        "--length-penalty",
        "0.5",
        "--length-unit",
        "words",
        "--max-wait-ms",
        "300",
    ) as (url, _):
        out: dict[int, httpx.Response] = {}

        def call(i):
            meta = [{"reference": "a b"}] if i != 3 else [{}]  # request 3 lacks its reference
            out[i] = httpx.post(
                f"{url}/score",
                json={"prompts": ["tell me"], "responses": [" good " * (i + 1)], "metadata": meta},
                timeout=60,
            )

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert out[3].status_code == 400 and "no reference field 'reference'" in out[3].json()["error"]["message"]
    for i in (0, 1, 2, 4, 5):
        expected = local.score(["tell me"], [" good " * (i + 1)], references=["a b"])
        np.testing.assert_allclose(out[i].json()["rewards"], expected, atol=1e-5)


def test_sigterm_drains_every_accepted_request(models):
    pairs = make_synthetic_preferences(64, seed=6)
    local = load_reward_model(models / "rm")
    with server("--rm", str(models / "rm"), "--max-wait-ms", "100") as (url, proc):
        results: dict[int, httpx.Response] = {}
        client = httpx.Client(timeout=60)

        def call(i):
            results[i] = client.post(
                f"{url}/score", json={"prompts": pairs.prompts, "responses": [p.chosen for p in pairs]}
            )

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # the requests are accepted and queued
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join()
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after draining
    expected = local.score(pairs.prompts, [p.chosen for p in pairs])
    assert len(results) == 8
    for r in results.values():
        assert r.status_code == 200
        np.testing.assert_allclose(r.json()["rewards"], expected, atol=1e-5)


def test_health_is_503_until_the_model_is_loaded(models):
    from starlette.testclient import TestClient

    from rewardkit.serve.app import build_app

    release = threading.Event()

    def slow_load():
        release.wait(30)
        return load_reward_model(models / "rm")

    app = build_app(slow_load)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 503
        r = client.post("/score", json={"prompts": ["x"], "responses": [" good"]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        release.set()
        for _ in range(100):
            if client.get("/health").status_code == 200:
                break
            time.sleep(0.05)
        assert client.post("/score", json={"prompts": ["x"], "responses": [" good"]}).status_code == 200


def test_saved_wrappers_without_a_config_are_served(models, tmp_path):
    """An ensemble folder holds members and a manifest but no config.json of its own; the start-up
    check must pass it (as loading does) and the server score as the local ensemble."""
    from rewardkit import load_ensemble

    load_ensemble([models / "rm", models / "dporm"], aggregation="mean").save(tmp_path / "ens")
    local = load_reward_model(tmp_path / "ens")
    prompts, responses = ["tell me about pasta", "explain the star"], [" good clear", " bad"]
    with server("--rm", str(tmp_path / "ens")) as (url, _):
        out = httpx.post(f"{url}/score", json={"prompts": prompts, "responses": responses}).json()
    np.testing.assert_allclose(out["rewards"], local.score(prompts, responses), atol=1e-5)


def test_a_model_that_fails_to_load_is_one_error_line(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    r = subprocess.run(
        [SCRIPT, "serve", "--rm", str(tmp_path / "bad"), "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        r.returncode == 2
        and r.stderr.strip().splitlines()[-1].startswith("error: ")
        and "config.json: invalid JSON" in r.stderr
    )


@pytest.mark.skipif(not __import__("importlib").util.find_spec("ray"), reason="ray is not installed")
def test_ray_serve_replicas(models):
    """The same app as Ray Serve replicas (runs when ray[serve] is installed)."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            SCRIPT,
            "serve",
            "--rm",
            str(models / "rm"),
            "--port",
            str(port),
            "--num-replicas",
            "2",
            "--dtype",
            "float32",
        ]
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        local = load_reward_model(models / "rm")
        r = httpx.post(
            f"{url}/score", json={"prompts": ["tell me"], "responses": [" good"]}, timeout=60
        ).json()
        np.testing.assert_allclose(r["rewards"], local.score(["tell me"], [" good"]), atol=1e-5)
    finally:
        proc.send_signal(signal.SIGINT)
        try:  # Ray Serve's own teardown of its controller, proxy and replicas: over 60 s on a busy host
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
