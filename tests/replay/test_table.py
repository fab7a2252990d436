"""Outcome tables and their readers: the embedded RouterBench table, the CSV format, errors."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from bandit_router.replay import (
    DatasetError,
    OutcomeTable,
    load_dataset,
    read_frugalgpt,
    read_outcomes,
    read_routerbench,
    write_outcomes,
)

from ._tables import SHARED, TINY_CSV, tiny

ROUTERBENCH_MODELS = {
    "WizardLM/WizardLM-13B-V1.2",
    "claude-instant-v1",
    "claude-v1",
    "claude-v2",
    "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview",
    "meta/code-llama-instruct-34b-chat",
    "meta/llama-2-70b-chat",
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
}


@pytest.fixture(scope="module")
def routerbench() -> OutcomeTable:
    return load_dataset("routerbench")


def test_embedded_routerbench(routerbench: OutcomeTable) -> None:
    t = routerbench
    assert len(t) == 3150
    assert set(t.models) == ROUTERBENCH_MODELS
    assert t.task_names() == ["arc-challenge", "mbpp", "winogrande"]
    assert [t.tasks.count(x) for x in t.task_names()] == [1456, 427, 1267]
    assert t.cost_scale == pytest.approx(0.005015295238, rel=1e-9)  # gpt-4's mean cost
    assert "RouterBench" in t.source
    assert "arXiv 2403.12031" in t.source
    assert "RouterDC" in t.source
    means = dict(zip(t.models, t.mean_scores(), strict=True))
    assert means["gpt-4-1106-preview"] == pytest.approx(0.8794, abs=1e-4)
    assert all(s in (0.0, 1.0) for row in t.scores for s in row)


def test_embedded_rewards_match_the_reference_formula(routerbench: OutcomeTable) -> None:
    t = routerbench
    r = t.rewards(1.0)
    i, j = 17, t.models.index("gpt-4-1106-preview")
    expected = ((t.scores[i][j] - 1.0 * t.costs[i][j] / t.cost_scale) + 1.0) / 2.0
    assert r[i][j] == expected
    best = max(range(len(t.models)), key=lambda k: sum(row[k] for row in r))
    assert t.models[best] == "zero-one-ai/Yi-34B-Chat"
    assert sum(row[best] for row in r) / len(t) == pytest.approx(0.8537, abs=1e-4)
    assert t.rewards(0.0) == [list(row) for row in t.scores]


@pytest.mark.skipif(not (SHARED / "routerbench").is_dir(), reason="no ../shared/data")
def test_embedded_table_is_the_shared_routerbench_data(routerbench: OutcomeTable) -> None:
    raw = read_routerbench(SHARED / "routerbench")
    assert raw.dropped == 28
    assert raw.models == routerbench.models
    assert raw.prompt_ids == routerbench.prompt_ids
    assert raw.scores == routerbench.scores
    assert raw.costs == routerbench.costs  # exactly: costs are written with repr()
    assert raw.tasks == routerbench.tasks


@pytest.mark.skipif(not (SHARED / "frugalgpt_overruling").is_dir(), reason="no ../shared/data")
def test_frugalgpt_overruling() -> None:
    t = load_dataset(SHARED / "frugalgpt_overruling" / "overruling.csv")  # recognised by columns
    assert (len(t), len(t.models)) == (2160, 12)
    means = dict(zip(t.models, t.mean_scores(), strict=True))
    assert means["gpt-4"] == pytest.approx(0.9505, abs=1e-4)
    assert "FrugalGPT" in t.source
    assert t.task_names() == ["overruling"]


def test_outcome_format_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(TINY_CSV)
    t = read_outcomes(path)
    ref = tiny()
    assert (t.models, t.prompt_ids, t.tasks) == (ref.models, ref.prompt_ids, ref.tasks)
    assert (t.scores, t.costs) == (ref.scores, ref.costs)
    assert t.source == "a made-up table\nsecond comment line"
    assert t.name == "t"
    for name in ("copy.csv", "copy.csv.gz"):
        write_outcomes(t, tmp_path / name)
        back = load_dataset(tmp_path / name)
        assert (back.scores, back.costs, back.source) == (t.scores, t.costs, t.source)
    assert gzip.decompress((tmp_path / "copy.csv.gz").read_bytes()).startswith(b"# a made-up")


def test_optional_columns_and_incomplete_prompts(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "model,prompt_id,score,latency\n"  # any column order; unknown columns ignored
        "a,1,0.5,3\nb,1,1,2\na,2,0.25,1\nb,3,1,1\n"
    )
    t = read_outcomes(path)
    assert t.models == ("a", "b")
    assert t.prompt_ids == ("1",)
    assert t.dropped == 2
    assert t.costs == ((0.0, 0.0),)
    assert t.tasks == ("",)
    assert t.cost_scale == 1.0  # no costs: rewards are the scores


def test_subset_keeps_the_cost_scale() -> None:
    t = tiny()
    part = t.subset([3, 0])
    assert part.prompt_ids == ("q4", "q1")
    assert part.cost_scale == t.cost_scale
    assert part.rewards(1.0)[0] == t.rewards(1.0)[3]


MALFORMED = [
    ("", "is empty"),
    ("prompt_id,model\n", "missing column(s) score"),
    ("prompt_id,model,score\n", "has a header but no rows"),
    ("prompt_id,model,score\nq1,a,high\n", "line 2: column 'score' is not a number: 'high'"),
    ("prompt_id,model,score\nq1,a,1.5\n", "line 2: score 'score' must lie in [0, 1]"),
    ("prompt_id,model,score\nq1,a,nan\n", "is not finite"),
    ("prompt_id,model,score,cost\nq1,a,1,-2\n", "line 2: cost 'cost' must be >= 0"),
    ("prompt_id,model,score\nq1,a,1\nq1,a,0\n", "line 3: second row for prompt 'q1', model 'a'"),
    ("prompt_id,model,score,task\nq1,a,1,x\nq1,b,1,y\n", "prompt 'q1' has two tasks"),
    ("prompt_id,model,score\nq1,a,1\nq2,b,1\n", "no prompt has an outcome for every model"),
    ("prompt_id,model,score\nq1,a\n", "line 2: wrong number of fields"),
    ("prompt_id,model,score\nq1,a,1,extra\n", "line 2: wrong number of fields"),
    ("prompt_id,model,score\n,a,1\n", "line 2: empty prompt_id or model"),
]


@pytest.mark.parametrize(("text", "problem"), MALFORMED, ids=[m[1][:30] for m in MALFORMED])
def test_malformed_outcome_files(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert problem in message
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert info.value.path == str(path)


def test_unreadable_files(tmp_path: Path) -> None:
    bad_gzip = tmp_path / "bad.csv.gz"
    bad_gzip.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=r"bad\.csv\.gz: cannot be read as text \(BadGzipFile"):
        read_outcomes(bad_gzip)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"prompt_id,model,score\nq\xe9,a,1\n")
    with pytest.raises(DatasetError, match=r"latin\.csv: cannot be read as text"):
        read_outcomes(latin)
    with pytest.raises(DatasetError, match=r"missing\.csv: no such file"):
        read_outcomes(tmp_path / "missing.csv")
    with pytest.raises(DatasetError, match="is a folder"):
        read_outcomes(tmp_path)


def test_load_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.csv: no such file \(and not an embedded"):
        load_dataset(tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset("routerbenchh")
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError, match="unrecognised columns"):
        load_dataset(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="folder holds no"):
        load_dataset(tmp_path / "empty")


ROUTERBENCH_CSV = (
    ",sample_id,prompt,eval_name,m1,m2,m1|model_response,m2|model_response,"
    "m1|total_cost,m2|total_cost,oracle_model_to_route_to\n"
    '0,t.1,"a long\nprompt",taskA,1.0,0.0,x,y,0.001,0.01,m1\n'
    "1,t.2,p,taskA,,1.0,x,y,0.001,0.01,m2\n"
    "2,t.3,p,taskB,0.0,1.0,x,y,0.002,0.02,m2\n"
)


def test_routerbench_layout(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text(ROUTERBENCH_CSV)
    (tmp_path / "a.csv").write_text(ROUTERBENCH_CSV.replace("t.", "u."))
    t = load_dataset(tmp_path)  # a folder: every CSV, sorted by name
    assert t.models == ("m1", "m2")
    assert t.prompt_ids == ("u.1", "u.3", "t.1", "t.3")
    assert t.dropped == 2  # the rows lacking m1's score
    assert t.tasks == ("taskA", "taskB", "taskA", "taskB")
    assert t.costs[1] == (0.002, 0.02)
    assert load_dataset(tmp_path / "b.csv").prompt_ids == ("t.1", "t.3")  # one file, sniffed


def test_routerbench_errors(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text(ROUTERBENCH_CSV.replace("m2|total_cost", "m2|cost"))
    with pytest.raises(DatasetError, match=r"x\.csv: not a RouterBench CSV: no column"):
        read_routerbench(bad)
    bad.write_text(ROUTERBENCH_CSV.replace("0.01,m1", "much,m1"))
    with pytest.raises(DatasetError, match="line 3: column 'm2' is not a number"):
        read_routerbench(bad)  # line 3: the quoted prompt spans two lines


def test_frugalgpt_layout(tmp_path: Path) -> None:
    path = tmp_path / "overruling.csv"
    path.write_text(
        ",query,ref_answer,a_answer,b_answer,a_cost,b_cost,a,b,content\n"
        "0,q,Yes,Yes,No,0.001,0.002,1,0,c\n"
        "1,q,No,No,No,0.001,0.003,1,1,c\n"
    )
    t = read_frugalgpt(path)
    assert t.name == "frugalgpt-overruling"
    assert t.models == ("a", "b")
    assert t.scores == ((1.0, 0.0), (1.0, 1.0))
    assert t.costs == ((0.001, 0.002), (0.001, 0.003))
    assert t.cost_scale == pytest.approx(0.0025)
    path.write_text(",query,a_cost\n0,q,0.1\n")
    with pytest.raises(DatasetError, match="not a FrugalGPT results CSV: no column 'a'"):
        read_frugalgpt(path)


def test_table_validation() -> None:
    t = tiny()
    with pytest.raises(DatasetError, match="duplicate prompt ids"):
        OutcomeTable("x", t.models, ("q1", "q1"), ("", ""), t.scores[:2], t.costs[:2])
    with pytest.raises(DatasetError, match="lacks a model"):
        OutcomeTable("x", t.models, ("q1",), ("",), ((1.0,),), ((0.0, 0.0),))
    with pytest.raises(DatasetError, match="no models"):
        OutcomeTable("x", (), (), (), (), ())
    with pytest.raises(ValueError, match="lam must be"):
        t.rewards(-1.0)
    assert math.isclose(t.cost_scale, 0.0125)  # dear's mean cost
