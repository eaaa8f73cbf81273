"""Quantization suffixes on model names (`15M-shape:q8_0`) in model choice and benchmarks, and the weight bytes
per token the benchmarks report."""

from __future__ import annotations

import pytest

from harness.core.errors import UsageError
from harness.formats.checkpoint import ModelConfig
from harness.models.modelgen import SHAPES
from harness.models.names import choose_model, split_quant
from harness.models.traffic import weight_bytes_per_token
from harness.oracle.checkpoint import load_checkpoint
from harness.perf.measure import workload_names


def test_split_quant_keeps_unknown_suffixes_whole() -> None:
    assert split_quant("15M-shape:q8_0") == ("15M-shape", "q8_0")
    assert split_quant("260K-shape:ternary") == ("260K-shape", "ternary")
    assert split_quant("C:model.bin") == ("C:model.bin", None)
    assert split_quant("stories260K") == ("stories260K", None)


@pytest.mark.parametrize("quant", ["q8_0", "ternary"])
def test_generated_shape_with_suffix_is_a_quantized_file(quant: str) -> None:
    choice = choose_model(f"gqa-512:{quant}", allow_download=False)
    config = load_checkpoint(choice.checkpoint).config
    assert config.weight_type == quant and config.dim == SHAPES["gqa-512"].dim
    assert quant in choice.label
    assert choose_model(f"gqa-512:{quant}", allow_download=False).checkpoint == choice.checkpoint  # cached


def test_bench_model_names_take_the_suffix() -> None:
    assert workload_names("15M,15M-shape:q8_0,260K:ternary") == ["15M-shape", "15M-shape:q8_0", "260K:ternary"]
    with pytest.raises(UsageError, match="unknown model"):
        workload_names("nosuch:q8_0")


def test_weight_bytes_per_token_of_the_15m_shape() -> None:
    base = ModelConfig(288, 768, 6, 6, 6, 32000, 256, True)
    fp32 = weight_bytes_per_token(base)
    layers = 6 * (4 * 288 * 288 + 3 * 288 * 768)
    assert fp32 == 4 * (layers + 32000 * 288 + 288 + 2 * 6 * 288 + 288)
    q8 = weight_bytes_per_token(ModelConfig(288, 768, 6, 6, 6, 32000, 256, True, "q8_0", 48, classifier_type="q8_0"))
    assert q8 == pytest.approx((layers + 32000 * 288) * (1 + 4 / 48) + 288 * (1 + 4 / 48) + 4 * (13 * 288))
    ternary = weight_bytes_per_token(ModelConfig(288, 768, 6, 6, 6, 32000, 256, False, "ternary", 288,
                                                 classifier_type="q8_0"))
    assert ternary / fp32 < 0.2 < q8 / fp32 < 0.3
