"""Speed estimates that learn: a measured decode becomes a calibration point, and the recommendation
shows its figure as estimate +- band and what was measured here."""

from __future__ import annotations

import pytest

from localllm.machine import calibration, estimate
from localllm.machine.recommend import Wishes, recommend
from localllm.models import catalog
from localllm.models.catalog import ModelSpec
from localllm.models.embedded import embedded_model_path
from tests.unit.test_recommend import machine


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALLLM_HOME", str(tmp_path))


def _embedded():
    spec = ModelSpec.from_gguf(embedded_model_path())
    return spec, estimate.estimate_memory(spec, "gguf", spec.gguf_quant, 2048, calibrate=False)


def test_without_runs_the_band_is_the_uncalibrated_one() -> None:
    spec, est = _embedded()
    speed = estimate.estimate_speed(spec, est, 20.0, fill=60)
    assert speed.calibration is None and speed.band_pct == calibration.UNCALIBRATED_BAND_PCT


def test_one_measured_decode_moves_the_estimate_onto_it() -> None:
    spec, est = _embedded()
    raw = estimate.estimate_speed(spec, est, 20.0, fill=60, calibrate=False)
    measured = raw.tok_s * 2.5  # what a run here showed
    estimate.record_decode(spec, est, measured, 20.0, fill=60)
    after = estimate.estimate_speed(spec, est, 20.0, fill=60)
    assert after.tok_s == pytest.approx(measured, rel=1e-6) and after.runs == 1 and after.band_pct == 20.0
    assert calibration.measured_here("SmolLM2-135M-Instruct", "gguf", "Q4_1", "cpu") == pytest.approx(measured)
    assert calibration.measured_here("SmolLM2-135M-Instruct", "gguf", "Q8_0", "cpu") is None
    estimate.record_decode(spec, est, measured / 3, 20.0, fill=2000)  # a deep run: not the chat figure
    assert calibration.measured_here("SmolLM2-135M-Instruct", "gguf", "Q4_1", "cpu") == pytest.approx(measured)


def test_the_band_narrows_with_agreeing_runs_and_widens_with_scattered_ones() -> None:
    spec, est = _embedded()
    raw = estimate.estimate_speed(spec, est, 20.0, fill=60, calibrate=False).tok_s
    for factor in (2.0, 2.02, 1.98, 2.01):
        estimate.record_decode(spec, est, raw * factor, 20.0, fill=60)
    assert estimate.estimate_speed(spec, est, 20.0, fill=60).band_pct == 10.0
    for factor in (1.2, 3.0, 1.0, 3.2):
        estimate.record_decode(spec, est, raw * factor, 20.0, fill=60)
    assert estimate.estimate_speed(spec, est, 20.0, fill=60).band_pct > 20.0


def test_the_recommendation_says_band_and_measured_here() -> None:
    hw = machine("cpu16")
    before = [p for p in recommend(hw, catalog.load_catalog(), Wishes(context=2048)).picks
              if p.source.startswith("embedded")][0]
    assert before.measured_tok_s is None and "±30%" in before.why and "measured here" not in before.why
    spec, est = _embedded()
    estimate.record_decode(spec, est, 123.0, hw.cpu_bandwidth_gb_s, fill=60)
    after = [p for p in recommend(hw, catalog.load_catalog(), Wishes(context=2048)).picks
             if p.source.startswith("embedded")][0]
    assert after.measured_tok_s == pytest.approx(123.0) and "123 measured here" in after.why
    assert after.tok_s_band_pct == 20.0 and after.to_dict()["measured_tok_s"] == pytest.approx(123.0)
