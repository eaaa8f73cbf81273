"""`llama98-harness plot`: help, a PNG drawn from a results directory the test writes (it opens with pillow), and
one-line refusals of a bad results directory or output path."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from harness.perf.results import record_run, summary
from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli


@pytest.fixture
def results(tmp_path: Path) -> Path:
    directory = tmp_path / "results"
    for i, sha in enumerate(["0a" * 20, "1b" * 20, "2c" * 20]):
        commit = {"sha": sha, "subject": f"c{i}", "date": f"2026-03-0{i + 1}T12:00:00+00:00", "dirty": False}
        record_run(directory, commit, "wall", {}, {"260K": {"tok_s": summary([30.0 + i, 31.0 + i])}})
        record_run(directory, commit, "icount", {}, {"260K": {"guest_ipt": 2.0e6 - i * 1e5}})
    return directory


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 0 and image.size[1] > 0
        image.load()


def test_help_lists_the_options(capsys):
    assert_help("plot", capsys, "RESULTS_DIR", "OUT.png", "tok_s", "guest_ipt", "host_ipt")


def test_plot_writes_the_png_it_prints(results, tmp_path, capsys):
    out = tmp_path / "tok.png"
    result = run_cli(["plot", str(results), "-o", str(out)], capsys)
    assert result.code == 0, result.err
    assert result.out == f"{out}\n"
    assert_png(out)


def test_plot_of_another_metric_and_mode(results, tmp_path, capsys):
    out = tmp_path / "ipt.png"
    result = run_cli(["plot", str(results), "-o", str(out), "--metric", "guest_ipt", "--mode", "icount"], capsys)
    assert result.code == 0, result.err
    assert_png(out)


def test_a_missing_results_directory_is_refused(tmp_path, capsys):
    result = run_cli(["plot", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.png")], capsys)
    assert_one_line_error(result, "results directory", "nowhere", "does not exist")
    assert not (tmp_path / "x.png").exists()


def test_a_file_as_results_directory_is_refused(tmp_path, capsys):
    afile = tmp_path / "results.json"
    afile.write_text("{}")
    result = run_cli(["plot", str(afile), "-o", str(tmp_path / "x.png")], capsys)
    assert_one_line_error(result, str(afile), "does not exist")


def test_a_broken_results_file_is_refused(results, tmp_path, capsys):
    (results / ("f" * 12 + ".json")).write_text("{broken")
    result = run_cli(["plot", str(results), "-o", str(tmp_path / "x.png")], capsys)
    assert_one_line_error(result, "cannot read results")


def test_an_empty_results_directory_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    result = run_cli(["plot", str(tmp_path / "empty"), "-o", str(tmp_path / "x.png")], capsys)
    assert_one_line_error(result, "holds no results")


def test_a_metric_nothing_measured_is_refused(results, tmp_path, capsys):
    result = run_cli(["plot", str(results), "-o", str(tmp_path / "x.png"), "--metric", "host_ipt"], capsys)
    assert_one_line_error(result, "no results hold host_ipt")


def test_an_output_inside_a_file_is_one_line(results, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = run_cli(["plot", str(results), "-o", str(afile / "x.png")], capsys)
    assert_one_line_error(result, str(afile))


def test_an_unsupported_output_format_is_one_line(results, tmp_path, capsys):
    result = run_cli(["plot", str(results), "-o", str(tmp_path / "plot.xyz")], capsys)
    assert_one_line_error(result, "plot.xyz")


def test_a_directory_as_output_is_refused(results, tmp_path, capsys):
    out = tmp_path / "plots"
    out.mkdir()
    result = run_cli(["plot", str(results), "-o", str(out)], capsys)
    assert_one_line_error(result, str(out))


def test_the_printed_path_is_the_png_written(results, tmp_path, capsys):
    """`-o OUT.png` is documented; an output name without the extension must still print the file it wrote."""
    result = run_cli(["plot", str(results), "-o", str(tmp_path / "speed")], capsys)
    assert result.code == 0, result.err
    assert_png(Path(result.out.strip()))


@pytest.mark.parametrize("name", ["plot.jpg", "plot.pdf", "plot.svg"])
def test_another_format_matplotlib_knows_is_refused_too(results, tmp_path, capsys, name):
    """-o says OUT.png: a .jpg/.pdf/.svg name is refused, not silently written in that format."""
    result = run_cli(["plot", str(results), "-o", str(tmp_path / name)], capsys)
    assert_one_line_error(result, name, "PNG")
    assert not (tmp_path / name).exists()


def test_an_uppercase_png_extension_is_kept(results, tmp_path, capsys):
    out = tmp_path / "SPEED.PNG"
    result = run_cli(["plot", str(results), "-o", str(out)], capsys)
    assert result.code == 0, result.err
    assert result.out == f"{out}\n"
    assert_png(out)
