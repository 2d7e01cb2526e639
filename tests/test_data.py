import gzip
import json

import pytest

from rewardkit import DataError, PreferencePair, load_preferences
from rewardkit.data import PreferenceDataset

from .conftest import SHARED_DATA

EXPLICIT = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "subset": "math", "annotator": "a"},
    {
        "prompt": "Capital of France?",
        "chosen": "Paris",
        "rejected": "Rome",
        "subset": "geo",
        "annotator": "b",
    },
]


def _write_jsonl(path, records, gz=False):
    text = "".join(json.dumps(r) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz", "json", "parquet", "csv"])
def test_file_formats_load_the_same_pairs(tmp_path, suffix):
    path = tmp_path / f"prefs.{suffix}"
    if suffix.startswith("jsonl"):
        _write_jsonl(path, EXPLICIT, gz=suffix.endswith("gz"))
    elif suffix == "json":
        path.write_text(json.dumps({"data": EXPLICIT}))
    elif suffix == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(EXPLICIT), path)
    else:
        import csv

        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(EXPLICIT[0]))
            w.writeheader()
            w.writerows(EXPLICIT)
    ds = load_preferences(path)
    assert [(p.prompt, p.chosen, p.rejected) for p in ds] == [
        ("What is 2+2?", "4", "5"),
        ("Capital of France?", "Paris", "Rome"),
    ]
    assert ds[1].metadata == {"subset": "geo", "annotator": "b"}


def test_in_memory_sources():
    import datasets

    from_list = load_preferences(EXPLICIT)
    from_ds = load_preferences(datasets.Dataset.from_list(EXPLICIT))
    from_dict = load_preferences(datasets.DatasetDict({"train": datasets.Dataset.from_list(EXPLICIT)}))
    assert from_list.pairs == from_ds.pairs == from_dict.pairs


def test_conversational_explicit():
    rec = {
        "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "chosen": [{"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "assistant", "content": "go away"}],
    }
    p = load_preferences([rec])[0]
    assert p.prompt == rec["prompt"] and p.chosen == "hello" and p.rejected == "go away"


def test_implicit_prompt_messages_and_text():
    conv = {
        "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}],
    }
    p = load_preferences([conv])[0]
    assert p.prompt == [{"role": "user", "content": "q"}] and (p.chosen, p.rejected) == ("good", "bad")
    text = {"chosen": "The answer is 5", "rejected": "The answer is 6"}
    p = load_preferences([text])[0]
    assert (p.prompt, p.chosen, p.rejected) == ("The answer is", " 5", " 6")  # TRL's extract_prompt


def test_hh_rlhf_transcripts():
    rec = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: fine, thanks",
        "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: go away",
    }
    p = load_preferences([rec])[0]
    assert p.prompt == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you?"},
    ]
    assert (p.chosen, p.rejected) == ("fine, thanks", "go away")


def test_hh_mismatched_prefix_is_an_error():
    rec = {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"}
    with pytest.raises(DataError, match="differ before the last answer"):
        load_preferences([rec])


def test_column_mapping():
    ds = load_preferences(
        [{"question": "q", "good": "a", "bad": "b"}],
        columns={"prompt": "question", "chosen": "good", "rejected": "bad"},
    )
    assert (ds[0].prompt, ds[0].chosen, ds[0].rejected, ds[0].metadata) == ("q", "a", "b", {})


def test_malformed_records_name_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps(EXPLICIT[0])
        + "\n"
        + json.dumps({"prompt": "x", "chosen": 3, "rejected": "y"})
        + "\n{not json\n"
        + json.dumps({"prompt": "x", "rejected": "y"})
        + "\n"
    )
    with pytest.raises(DataError, match=r"bad\.jsonl:2: field 'chosen'"):
        load_preferences(path)
    ds = load_preferences(path, on_error="skip")
    assert len(ds) == 1
    assert [s.location.rsplit(":", 1)[1] for s in ds.skipped] == ["2", "3", "4"]
    assert "invalid JSON" in ds.skipped[1].reason and "missing field 'chosen'" in ds.skipped[2].reason


def test_csv_line_numbers_and_bad_messages(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('prompt,chosen,rejected\nq,a,b\n"[{""role"": ""user""}]",a,b\n')
    with pytest.raises(
        DataError, match=r"bad\.csv:3: field 'prompt': message 0 needs string 'role' and 'content'"
    ):
        load_preferences(path)


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_preferences(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported file type"):
        load_preferences(tmp_path / "x.txt")


def test_hub_name_offline_gives_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="could not load hub dataset") as err:
        load_preferences("no-such-org/no-such-dataset")
    assert "\n" not in str(err.value)


def test_split_filter_group_by():
    ds = load_preferences(EXPLICIT * 3)
    inside, outside = ds.split("subset", ["math"])
    assert (len(inside), len(outside)) == (3, 3)
    assert all(p.metadata["subset"] == "math" for p in inside)
    assert all(p.metadata["subset"] == "geo" for p in outside)
    assert len(ds.filter(lambda p: p.metadata["annotator"] == "b")) == 3
    assert {k: len(v) for k, v in ds.group_by("subset").items()} == {"math": 3, "geo": 3}
    with pytest.raises(DataError, match="no pair has subset="):
        ds.split("subset", ["bio"])
    with pytest.raises(DataError, match="no metadata field 'generator'"):
        ds.split("generator", ["x"])


def test_train_test_split_is_a_partition():
    ds = PreferenceDataset([PreferencePair(f"p{i}", "a", "b") for i in range(50)])
    tr, te = ds.train_test_split(0.2, seed=3)
    assert len(te) == 10 and len(tr) == 40
    assert sorted(p.prompt for p in tr.pairs + te.pairs) == sorted(p.prompt for p in ds)
    assert ds.train_test_split(0.2, seed=3)[1].pairs == te.pairs


def test_save_jsonl_round_trip(tmp_path):
    ds = load_preferences(EXPLICIT)
    ds.save_jsonl(tmp_path / "out.jsonl")
    assert load_preferences(tmp_path / "out.jsonl").pairs == ds.pairs


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="shared AlpacaEval data not present")
def test_real_alpaca_eval_data_splits_by_subset():
    ds = load_preferences(SHARED_DATA)
    assert len(ds) == 42379 and not ds.skipped
    id_set, ood_set = ds.split("subset", ["helpful_base", "oasst", "selfinstruct"])
    assert len(id_set) == 6814 + 9918 + 13199 and len(ood_set) == 8214 + 4234
    assert {p.metadata["subset"] for p in ood_set} == {"koala", "vicuna"}
    assert set(ds[0].metadata) == {"subset", "chosen_generator", "rejected_generator", "annotator"}
