"""finetune/memory.py: one GRPO step's peak memory, measured in-process on the tiny preset."""

from __future__ import annotations

import pytest
import torch

from finetune.memory import PHASES, TensorMemory, fit, measure, summarise


@pytest.fixture(scope="module")
def reports():
    return {configuration: measure("tiny", 2, configuration) for configuration in ("lora-gc", "full")}


def test_a_report_gives_each_phase_of_the_step_its_peak(reports):
    for configuration, report in reports.items():
        assert report["configuration"] == configuration and report["layers"] == 2
        assert report["sequence"]["scored_rows"] == 16  # G = 8 with the guidance rows
        assert report["sequence"]["positions"] == 64 + 200 + 1 + 81  # context, plan, begin-of-image, image
        assert (
            {"reference", "forward", "backward", "clip", "optimizer"}
            <= set(report["phases"])
            <= {
                *PHASES,
                "after",
            }
        )
        for phase in report["phases"].values():
            assert phase["rss_mb"] > 0 and phase["tensor_mb"] > 0
        # before the step the tensors alive are the weights (and full fine-tuning's reference copy)
        weights_mb = report["parameters"]["weight_bytes"] * (2 if configuration == "full" else 1) / 2**20
        assert report["before_step"]["tensor_mb"] == pytest.approx(weights_mb, rel=0.05)
        assert report["peak_step"]["tensor_mb"] == max(p["tensor_mb"] for p in report["phases"].values())
        assert report["peak_step"]["tensor_mb"] > report["before_step"]["tensor_mb"]
        assert report["step"]["grad_norm"] > 0  # the step ran through the trainer's optimise


def test_lora_with_checkpointing_needs_less_than_full_fine_tuning(reports):
    lora, full = reports["lora-gc"], reports["full"]
    assert full["parameters"]["trainable"] > 2 * lora["parameters"]["trainable"]
    assert full["parameters"]["reference_copy"] == full["parameters"]["model"]
    assert lora["peak_step"]["tensor_mb"] < full["peak_step"]["tensor_mb"]


def test_the_fit_projects_each_phase_and_takes_the_largest():
    assert fit([(1, 10.0), (2, 12.0), (4, 16.0)]) == pytest.approx({"intercept_mb": 8.0, "slope_mb_per_layer": 2.0})
    assert fit([(1, 10.0)]) is None

    def run(layers, backward, optimizer):
        return {
            "configuration": "full",
            "layers": layers,
            "settings": {"dtype": "float32"},
            "parameters": {"model": 100 + layers, "trainable": 0, "reference_copy": 0},
            "phases": {"backward": {"tensor_mb": backward}, "optimizer": {"tensor_mb": optimizer}},
        }

    # the optimizer phase peaks at 1 and 2 layers, backward grows faster and peaks at 10
    summary = summarise([run(1, 10.0, 12.0), run(2, 13.0, 13.0)], target_layers=10)
    tensor = summary["configurations"]["full"]["tensor_mb"]
    assert tensor["projected_peak_phase"] == "backward"
    assert tensor["projected_peak_mb"] == pytest.approx(37.0)
    assert summary["configurations"]["full"]["tensor_mb_bf16_estimate"]["projected_peak_mb"] == pytest.approx(18.5)


def test_tensors_left_by_a_trace_are_not_counted():
    # an exported program keeps fake tensors with symbolic sizes alive (CI ran test_onnx_engine first)
    class Double(torch.nn.Module):
        def forward(self, x):
            return (x * 2).sum(-1)

    exported = torch.export.export(Double(), (torch.randn(3, 4),), dynamic_shapes=({0: torch.export.Dim("rows")},))
    real = torch.zeros(1000)
    tensors = TensorMemory("cpu")
    tensors.adopt_alive()
    assert isinstance(tensors.current, int) and tensors.current >= real.nbytes
    with tensors:
        made = torch.ones(2000)
    assert tensors.peak >= tensors.current >= real.nbytes + made.nbytes
    assert exported is not None
