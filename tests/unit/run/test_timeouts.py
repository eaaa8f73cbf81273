"""harness/run/timeouts.py: the work each timeout is sized from, and the calibration that replaces the floors."""

from __future__ import annotations

from pathlib import Path

from harness.models.modelgen import cached_checkpoint
from harness.oracle.checkpoint import load_checkpoint
from harness.run.timeouts import (
    KEEP,
    MIN_GUEST_MACS_PER_SECOND,
    MIN_TRANSFER_RATE,
    SAFETY,
    Calibration,
    effective_steps,
    matmul_macs,
    run_macs,
)


def test_matmul_macs_count_every_weight_of_every_matrix_once() -> None:
    for shape in ("gqa-unshared-32000", "odd-hidden-mqa", "260K-shape"):
        checkpoint = load_checkpoint(cached_checkpoint(shape))
        w = checkpoint.weights
        weights = sum(int(m.size) for m in (w.wq, w.wk, w.wv, w.wo, w.w1, w.w2, w.w3, w.classifier))
        assert matmul_macs(checkpoint.config) == weights + checkpoint.config.dim


def test_attention_adds_two_macs_per_layer_dim_and_key() -> None:
    config = load_checkpoint(cached_checkpoint("gqa-512")).config
    attention = sum(2 * config.n_layers * config.dim * (p + 1) for p in range(50))
    assert run_macs(config, 50) == 50 * matmul_macs(config) + attention
    assert effective_steps(config, 0) == effective_steps(config, 10**6) == config.seq_len
    assert effective_steps(config, 7) == 7


def test_floors_until_something_is_measured_then_measured_speeds(tmp_path: Path) -> None:
    checkpoint = load_checkpoint(cached_checkpoint("15M-shape"))
    config, size = checkpoint.config, checkpoint.path.stat().st_size
    fresh = Calibration.load("tiny686", tmp_path)
    assert fresh.fetch_timeout(10 * 2**20) == 60.0 + 10 * 2**20 / MIN_TRANSFER_RATE
    floor = fresh.run_timeout(config, size, 100)
    assert floor > run_macs(config, 100) / MIN_GUEST_MACS_PER_SECOND
    fresh.record_fetch(size, 2.0, 1.0)  # 30 MB/s on the wire, 60 MB/s checksum
    fresh.record_run(config, 100, 20.0)  # 100 tokens in 20 s of wall time
    fresh.record_fetch(500_000, 100.0, 100.0)  # too small to say anything: ignored
    stored = Calibration.load("tiny686", tmp_path)
    assert stored.transfer_rates == [size / 2.0] and stored.checksum_rates == [size / 1.0]
    assert stored.fetch_timeout(size) == 60.0 + 2.0 * SAFETY
    measured = stored.run_timeout(config, size, 100)
    assert measured == 120.0 + SAFETY / 1.0 + 20.0 * SAFETY
    assert measured < floor
    assert stored.run_timeout(config, size, 100, scale=3.0) == 3.0 * measured
    streamed = stored.run_timeout(config, size, 100, streamed=True)
    assert streamed == measured + 100 * SAFETY / 1.0  # every token reads the whole model again
    assert stored.run_timeout(config, size, 200) > 2 * (measured - 120.0 - SAFETY)  # attention grows with p
    assert Calibration.load("win98", tmp_path).transfer_rates == []


def test_the_slowest_of_the_last_measurements_is_used(tmp_path: Path) -> None:
    calibration = Calibration.load("tiny686", tmp_path)
    for seconds in (1.0, 9.0, *([2.0] * KEEP)):
        calibration.record_fetch(10**8, seconds, seconds)
    assert len(calibration.transfer_rates) == KEEP
    assert calibration.transfer_rate() == 10**8 / 2.0 / SAFETY  # the 9 s outlier aged out
    calibration.record_fetch(10**8, 4.0, 4.0)
    assert calibration.transfer_rate() == 10**8 / 4.0 / SAFETY


def test_a_damaged_calibration_file_means_the_floors(tmp_path: Path) -> None:
    (tmp_path / "tiny686.json").write_text("{not json")
    calibration = Calibration.load("tiny686", tmp_path)
    assert calibration.transfer_rate() == MIN_TRANSFER_RATE
    calibration.record_fetch(10**8, 1.0, 1.0)
    assert Calibration.load("tiny686", tmp_path).transfer_rates == [1e8]
