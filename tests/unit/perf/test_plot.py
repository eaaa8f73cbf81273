"""Speed-per-commit plots (harness.perf.plot): real PNGs that open with pillow, one line per model from a results
directory written by record_run, and one-line errors for a bad directory, an unknown metric or nothing to plot."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from harness.core.errors import UsageError
from harness.perf.plot import METRICS, PlotError, default_results_dir, plot_history, plot_series
from harness.perf.results import ResultsError, load_history, record_run, summary


def write_history(results: Path) -> None:
    """Three commits measured in wall mode (two models, with ranges) and icount mode (one model)."""
    for i, sha in enumerate(["1a" * 20, "2b" * 20, "3c" * 20]):
        commit = {"sha": sha, "subject": f"commit {i}", "date": f"2026-02-0{i + 1}T00:00:00+00:00", "dirty": False}
        record_run(results, commit, "wall", {}, {
            "260K": {"tok_s": summary([40.0 - i, 42.0 - i, 41.0 - i])},
            "15M-shape": {"tok_s": summary([1.0 + i / 10, 1.2 + i / 10])},
        })
        if i != 1:  # a gap in the icount series
            record_run(results, commit, "icount", {}, {"260K": {"guest_ipt": 1.0e6 * (i + 1), "tok_s": 50.0}})


def open_png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes the whole image: a truncated file fails here
        return image.size


def test_plot_history_writes_a_png_that_opens(tmp_path):
    write_history(tmp_path / "results")
    out = plot_history(load_history(tmp_path / "results"), tmp_path / "plots" / "tok.png", "tok_s")
    assert out == tmp_path / "plots" / "tok.png"  # the parent directory is created
    width, height = open_png(out)
    assert width >= 600 and height >= 400


def test_each_metric_comes_from_its_mode(tmp_path):
    write_history(tmp_path / "results")
    history = load_history(tmp_path / "results")
    open_png(plot_history(history, tmp_path / "ipt.png", "guest_ipt"))  # icount mode, with a missing commit
    open_png(plot_history(history, tmp_path / "icount-tok.png", "tok_s", mode="icount"))
    with pytest.raises(PlotError, match="no results hold host_ipt") as error:
        plot_history(history, tmp_path / "host.png", "host_ipt")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "host.png").exists()


def test_unknown_metric_and_empty_history_are_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown metric 'speed'"):
        plot_history([], tmp_path / "x.png", "speed")
    with pytest.raises(PlotError, match="holds no results"):
        plot_history([], tmp_path / "x.png", "tok_s")
    assert not (tmp_path / "x.png").exists()


def test_a_bad_results_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(ResultsError, match="does not exist") as missing:
        load_history(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ("d" * 12 + ".json")).write_text("{")
    with pytest.raises(ResultsError, match="cannot read results") as unreadable:
        load_history(broken)
    for error in (missing, unreadable):
        assert "\n" not in str(error.value)


def test_plot_series_with_ranges_gaps_and_a_highlight(tmp_path):
    out = plot_series(["aaa", "bbb", "ccc", "ddd"], {"m": [3.0, None, 2.5, 1.0], "n": [None, 2.0, 2.0, 2.0]},
                      tmp_path / "s.png", ylabel="tok/s", title="t",
                      ranges={"m": [(2.5, 3.5), None, (2.0, 3.0), None]}, highlight=2)
    open_png(out)
    with pytest.raises(PlotError, match="no measured values"):
        plot_series([], {}, tmp_path / "empty.png", ylabel="", title="")
    with pytest.raises(PlotError, match="no measured values"):
        plot_series(["a", "b"], {"m": [None, None]}, tmp_path / "none.png", ylabel="", title="")
    assert not (tmp_path / "empty.png").exists() and not (tmp_path / "none.png").exists()


def test_wider_histories_give_wider_plots(tmp_path):
    labels = [f"c{i:03d}" for i in range(40)]
    narrow = open_png(plot_series(labels[:3], {"m": [1.0, 2.0, 3.0]}, tmp_path / "n.png", ylabel="", title=""))
    wide = open_png(plot_series(labels, {"m": [float(i) for i in range(40)]}, tmp_path / "w.png", ylabel="",
                                title=""))
    assert wide[0] > narrow[0] and wide[1] == narrow[1]


def test_metrics_name_their_modes():
    assert set(METRICS) == {"tok_s", "guest_ipt", "host_ipt"}
    assert METRICS["host_ipt"][1] == ("host-ipt",)


def test_default_results_dir_is_in_the_harness_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    assert default_results_dir() == tmp_path / "cache" / "results"
    assert default_results_dir().is_dir()
