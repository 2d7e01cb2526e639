"""safetensors_io.py: the numpy reader and streaming writer against the safetensors library itself."""

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as np_save
from safetensors.torch import load_file, save_file

from rewardkit.errors import ModelError
from rewardkit.safetensors_io import (
    ALIGN,
    CheckpointReader,
    StreamingShardWriter,
    aligned_empty,
    read_header,
    to_torch,
)


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(5, 3, generator=g),
        "b.bias": torch.randn(7, generator=g).to(torch.bfloat16),
        "c.half": torch.randn(2, 2, generator=g).half(),
        "d.ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    }


def test_reader_equals_the_safetensors_library(tmp_path):
    ts = _tensors()
    save_file(ts, tmp_path / "model.safetensors")
    n, header = read_header(tmp_path / "model.safetensors")
    assert n == struct.unpack("<Q", (tmp_path / "model.safetensors").read_bytes()[:8])[0]
    assert {k: v["dtype"] for k, v in header.items() if k != "__metadata__"} == {
        "a.weight": "F32",
        "b.bias": "BF16",
        "c.half": "F16",
        "d.ids": "I64",
    }
    with CheckpointReader(tmp_path) as r:
        assert sorted(r.keys()) == sorted(ts) and r.meta("a.weight") == ((5, 3), "F32")
        for k, t in ts.items():
            assert torch.equal(r.get_tensor(k), t), k
        assert torch.equal(to_torch(r.get_rows("a.weight", 1, 4), "F32"), ts["a.weight"][1:4])


def test_streaming_writer_shards_and_the_library_reads_them(tmp_path):
    arrays = {f"layer{i}": np.arange(i * 100, i * 100 + 64, dtype=np.float32).reshape(8, 8) for i in range(3)}
    specs = [(k, v.shape, "F32") for k, v in arrays.items()]
    w = StreamingShardWriter(tmp_path, specs, shard_bytes=2 * 64 * 4)  # two tensors per shard
    for k in w.order:
        w.write(k, arrays[k])
    w.close()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 3 * 64 * 4
    assert index["weight_map"] == {
        "layer0": "model-00001-of-00002.safetensors",
        "layer1": "model-00001-of-00002.safetensors",
        "layer2": "model-00002-of-00002.safetensors",
    }
    loaded = {
        **load_file(tmp_path / "model-00001-of-00002.safetensors"),
        **load_file(tmp_path / "model-00002-of-00002.safetensors"),
    }
    for k, v in arrays.items():
        np.testing.assert_array_equal(loaded[k].numpy(), v)
    with CheckpointReader(tmp_path) as r:  # and rewardkit's own reader follows the index
        np.testing.assert_array_equal(r.get("layer2"), arrays["layer2"])


def test_writer_refuses_out_of_order_and_missing_tensors(tmp_path):
    specs = [("x", (2,), "F32"), ("y", (2,), "F32")]
    w = StreamingShardWriter(tmp_path, specs, shard_bytes=1 << 20)
    with pytest.raises(RuntimeError, match="'y' written out of order"):
        w.write("y", np.zeros(2, np.float32))
    w.write("x", np.zeros(2, np.float32))
    with pytest.raises(RuntimeError, match="1 tensors were never written"):
        w.close()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:5], "not a safetensors file"),
        (lambda b: b[:-4], "truncated: tensor 'x'"),
        (lambda b: b + b"\0" * 4, "4 bytes after the last tensor"),
        (lambda b: struct.pack("<Q", 10**9) + b[8:], "corrupt safetensors header"),
    ],
)
def test_a_damaged_file_is_one_line_naming_it(tmp_path, damage, message):
    np_save({"x": np.arange(4, dtype=np.float32)}, str(tmp_path / "ok.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(damage((tmp_path / "ok.safetensors").read_bytes()))
    with pytest.raises(ModelError, match=message) as e:
        read_header(bad)
    assert str(e.value).startswith(str(bad))


def test_aligned_buffers_start_on_a_cache_line():
    for n in (1, 63, 4096):
        buf = aligned_empty(n)
        assert buf.nbytes == n and buf.ctypes.data % ALIGN == 0
