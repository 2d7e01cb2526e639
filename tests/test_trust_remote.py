"""A model folder never reaches the network or reads $REWARDKIT_API_KEY unless the user named the endpoint.

A loopback server counts every request (and the Authorization header it carried): a folder holding a remote
model, alone, as an ensemble member or inside a length-penalty wrapper, sends nothing unless the URL was
named (``--allow-remote URL`` / ``allow_remote=[url]``), and the key goes only to the URL it was named for.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("httpx")

from rewardkit import EnsembleRM, LengthPenalizedRM, RemoteRewardModel, load_reward_model  # noqa: E402
from rewardkit.cli import main  # noqa: E402
from rewardkit.errors import ModelError  # noqa: E402

KEY = "sk-secret-key-123"


class Counter(BaseHTTPRequestHandler):
    """Answers rewardkit's /info, /score (2.0) and /score_pairs (chosen 2.0, rejected 0.5); records every
    request's path and Authorization header."""

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self.server.seen.append((self.path, self.headers.get("authorization")))
        self._answer({"limits": {"max_request_sequences": 64}})

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(n) or b"{}")
        self.server.seen.append((self.path, self.headers.get("authorization")))
        if self.path == "/score":
            return self._answer({"rewards": [2.0] * len(body.get("prompts", []))})
        pairs = body.get("pairs", [])
        self._answer({"chosen": [2.0] * len(pairs), "rejected": [0.5] * len(pairs)})

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    """Two loopback servers (the one a user names, and another a folder might point at)."""
    out = []
    for _ in range(2):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Counter)
        srv.seen = []
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        out.append(srv)
    yield [(f"http://127.0.0.1:{s.server_address[1]}", s.seen) for s in out]
    for s in out:
        s.shutdown()
        s.server_close()


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _folders(tmp_path: Path, url: str) -> dict[str, Path]:
    """A remote folder, an ensemble holding one, and a length-penalty wrapper around one."""
    out = {k: tmp_path / k for k in ("remote", "ensemble", "wrapped")}
    RemoteRewardModel(url).save(out["remote"])
    EnsembleRM([RemoteRewardModel(url), RemoteRewardModel(url)]).save(out["ensemble"])
    LengthPenalizedRM(RemoteRewardModel(url), 0.5, 100.0, "chars").save(out["wrapped"])
    return out


def _data(tmp_path: Path) -> Path:
    f = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad"} for i in range(3)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


COMMANDS = {
    "score": lambda rm, data, out: ["score", "--rm", rm, "--data", data, "--out", out / "s.jsonl"],
    "eval": lambda rm, data, out: ["eval", "--rm", rm, "--data", data, "--json", out / "e.json"],
}


@pytest.mark.parametrize("folder", ["remote", "ensemble", "wrapped"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_remote_folder_sends_nothing_unless_named(servers, tmp_path, monkeypatch, capsys, folder, command):
    monkeypatch.setenv("REWARDKIT_API_KEY", KEY)
    (url, seen), _ = servers
    folders = _folders(tmp_path / "models", url)
    data, out = _data(tmp_path), tmp_path / "out"
    out.mkdir()
    before = _digest(tmp_path)
    code, _, err = _run(COMMANDS[command](folders[folder], data, out), capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert f"sends every input to {url!r}" in err and "--allow-remote" in err
    assert seen == []  # nothing reached the server
    assert _digest(tmp_path) == before  # no input changed, no output written
    # named on the command line: it runs, the key goes to that endpoint, the summary names it
    code, stdout, err = _run([*COMMANDS[command](folders[folder], data, out), "--allow-remote", url], capsys)
    assert code == 0, err
    assert f"remote endpoints used: {url}" in stdout
    assert seen and all(auth == f"Bearer {KEY}" for _, auth in seen)
    if command == "score":
        rows = [json.loads(x) for x in (out / "s.jsonl").read_text().splitlines()]
        assert [r["index"] for r in rows] == [0, 1, 2]
        assert rows[0]["margin"] == pytest.approx(1.5)  # 2.0 - 0.5; the penalty is 0 under 100 chars


def test_naming_another_endpoint_is_not_enough(servers, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REWARDKIT_API_KEY", KEY)
    (named, seen_named), (other, seen_other) = servers
    folders = _folders(tmp_path / "models", other)
    code, _, err = _run(
        [*COMMANDS["score"](folders["ensemble"], _data(tmp_path), tmp_path), "--allow-remote", named], capsys
    )
    assert code == 2 and f"sends every input to {other!r}" in err
    assert seen_named == [] and seen_other == []


def test_the_url_named_on_the_command_line_is_used_and_named(servers, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REWARDKIT_API_KEY", KEY)
    (url, seen), _ = servers
    code, stdout, err = _run(COMMANDS["score"](url, _data(tmp_path), tmp_path), capsys)
    assert code == 0, err
    assert f"remote endpoints used: {url}" in stdout
    assert {path for path, _ in seen} == {"/info", "/score_pairs"}
    assert all(auth == f"Bearer {KEY}" for _, auth in seen)


def test_python_api(servers, tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDKIT_API_KEY", KEY)
    (url, seen), (other, seen_other) = servers
    folders = _folders(tmp_path / "models", url)
    for folder in folders.values():
        with pytest.raises(ModelError, match="a folder does not reach the network unless asked"):
            load_reward_model(folder)
        with pytest.raises(ModelError):
            load_reward_model(folder, allow_remote=[other])
    assert seen == [] and seen_other == []
    # allow_remote=True: any endpoint the folder names, but never with the key (it was not given for it)
    rm = load_reward_model(folders["ensemble"], allow_remote=True)
    assert rm.score(["q"], ["a"]).tolist() == [2.0]  # a bare /score is answered like chosen
    assert seen and all(auth is None for _, auth in seen)
    seen.clear()
    rm = load_reward_model(folders["wrapped"], allow_remote=url + "/")  # named: the key goes to it
    rm.score_pairs([{"prompt": "q", "chosen": "a", "rejected": "b"}])
    assert seen and all(auth == f"Bearer {KEY}" for _, auth in seen)
    assert seen_other == []
    # the permission ends with the call
    with pytest.raises(ModelError):
        load_reward_model(folders["remote"])
