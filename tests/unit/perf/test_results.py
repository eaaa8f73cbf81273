"""The bench results history (harness.perf.results): one schema-tagged JSON file per commit, modes merged into it,
read back in commit-date order, and every unreadable or foreign file a one-line ResultsError."""

from __future__ import annotations

import json

import pytest

from harness.perf.results import (
    SCHEMA,
    CommitResult,
    ResultsError,
    load_history,
    range_of,
    read_result,
    record_run,
    result_path,
    summary,
    value_of,
    write_json,
)

SHA_A = "a1" * 20
SHA_B = "b2" * 20
SHA_C = "c3" * 20


def commit(sha: str, date: str, subject: str = "a commit", dirty: bool = False) -> dict[str, object]:
    return {"sha": sha, "subject": subject, "date": date, "dirty": dirty}


def one_line(error: pytest.ExceptionInfo[ResultsError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_summary_is_median_and_range_of_the_samples():
    assert summary([5.0, 1.0, 3.0]) == {"median": 3.0, "min": 1.0, "max": 5.0, "samples": [5.0, 1.0, 3.0]}
    assert summary([2.0, 4.0])["median"] == 3.0  # even count: the mean of the middle two
    samples = [1.0]
    result = summary(samples)
    samples.append(9.0)
    assert result["samples"] == [1.0]  # a copy, not the caller's list
    with pytest.raises(ResultsError, match="no samples"):
        summary([])


def test_value_of_and_range_of():
    assert value_of(7) == 7.0 and isinstance(value_of(7), float)
    assert value_of(2.5) == 2.5
    assert value_of(True) is None  # a flag is not a measurement
    assert value_of({"median": 4, "min": 1, "max": 6}) == 4.0
    assert value_of({"min": 1}) is None and value_of("12") is None and value_of(None) is None
    assert range_of({"median": 4, "min": 1, "max": 6}) == (1.0, 6.0)
    assert range_of(4.0) is None and range_of({"median": 4}) is None


def test_record_run_writes_a_schema_tagged_file_named_by_the_commit(tmp_path):
    models = {"260K": {"host_ipt": 1.25e6}, "15M-shape": {"host_ipt": 9.0e7}}
    path = record_run(tmp_path, commit(SHA_A, "2026-01-02T03:04:05+00:00"), "host-ipt", {"host_cpu": "x"}, models)
    assert path == tmp_path / f"{SHA_A[:12]}.json" == result_path(tmp_path, SHA_A)
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA
    assert data["commit"]["sha"] == SHA_A
    run = data["runs"]["host-ipt"]
    assert run["environment"] == {"host_cpu": "x"} and run["models"] == models
    assert run["measured_at"].endswith("+00:00")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_record_run_merges_modes_and_replaces_a_mode(tmp_path):
    record_run(tmp_path, commit(SHA_A, "2026-01-02", dirty=True), "host-ipt", {}, {"260K": {"host_ipt": 1.0}})
    record_run(tmp_path, commit(SHA_A, "2026-01-02"), "wall", {}, {"260K": {"tok_s": summary([1.0, 2.0, 3.0])}})
    path = record_run(tmp_path, commit(SHA_A, "2026-01-02", subject="amended"), "host-ipt", {},
                      {"260K": {"host_ipt": 2.0}})
    result = read_result(path)
    assert set(result.runs) == {"host-ipt", "wall"}
    assert result.metric("host-ipt", "260K", "host_ipt") == 2.0
    assert value_of(result.metric("wall", "260K", "tok_s")) == 2.0
    assert result.commit["subject"] == "amended" and result.commit["dirty"] is False  # the latest commit info
    assert result.metric("icount", "260K", "tok_s") is None
    assert result.metric("wall", "110M-shape", "tok_s") is None


def test_record_run_without_a_sha_is_refused(tmp_path):
    with pytest.raises(ResultsError, match="without a commit sha") as error:
        record_run(tmp_path, {"sha": "", "date": ""}, "wall", {}, {})
    one_line(error)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read results"),
    (json.dumps(["a", "list"]), f"not a {SCHEMA} results file"),
    (json.dumps({"schema": "llama98-bench/0", "commit": {"sha": SHA_A}, "runs": {}}), f"not a {SCHEMA}"),
    (json.dumps({"schema": SCHEMA, "commit": {"subject": "no sha"}, "runs": {}}), "lacks commit.sha or runs"),
    (json.dumps({"schema": SCHEMA, "commit": {"sha": SHA_A}, "runs": []}), "lacks commit.sha or runs"),
])
def test_unreadable_or_foreign_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / f"{SHA_A[:12]}.json"
    path.write_text(content)
    with pytest.raises(ResultsError, match=message) as error:
        read_result(path)
    assert str(path) in one_line(error)
    with pytest.raises(ResultsError, match=message):
        load_history(tmp_path)


def test_a_directory_where_a_results_file_should_be_is_a_one_line_error(tmp_path):
    (tmp_path / f"{SHA_A[:12]}.json").mkdir()
    with pytest.raises(ResultsError, match="cannot read results") as error:
        load_history(tmp_path)
    one_line(error)


def test_history_is_oldest_commit_first_and_ignores_other_json(tmp_path):
    record_run(tmp_path, commit(SHA_A, "2026-03-01T00:00:00+00:00"), "wall", {}, {"m": {"tok_s": 1.0}})
    record_run(tmp_path, commit(SHA_B, "2026-01-01T00:00:00+00:00"), "wall", {}, {"m": {"tok_s": 2.0}})
    record_run(tmp_path, commit(SHA_C, "2026-01-01T00:00:00+00:00"), "wall", {}, {"m": {"tok_s": 3.0}})
    write_json(tmp_path / "bisect.json", {"not": "history"})
    (tmp_path / "ABCDEF123456.json").write_text("{broken")  # not a lowercase sha name: not read at all
    (tmp_path / f"{SHA_A[:12]}.json.part").write_text("{half")
    history = load_history(tmp_path)
    assert [r.sha for r in history] == [SHA_B, SHA_C, SHA_A]  # by date, then sha
    assert [value_of(r.metric("wall", "m", "tok_s")) for r in history] == [2.0, 3.0, 1.0]
    assert history[0].date == "2026-01-01T00:00:00+00:00"


def test_history_of_a_missing_directory_or_a_file_is_an_error(tmp_path):
    with pytest.raises(ResultsError, match="does not exist") as error:
        load_history(tmp_path / "missing")
    one_line(error)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ResultsError, match="does not exist"):
        load_history(afile)
    assert load_history(tmp_path) == []


def test_commit_result_round_trips_through_json(tmp_path):
    original = CommitResult(commit(SHA_A, "2026-01-01"), {"icount": {"models": {"m": {"guest_ipt": 5.0}}}})
    path = write_json(tmp_path / f"{SHA_A[:12]}.json", original.to_json())
    again = read_result(path)
    assert again.commit == original.commit and again.runs == original.runs
    assert again.sha == SHA_A
    assert CommitResult({}).sha == "" and CommitResult({}).date == ""
    broken = CommitResult(commit(SHA_A, ""), {"wall": {"models": "not a dict"}})
    assert broken.metric("wall", "m", "tok_s") is None
