"""Side-by-side comparison: ratios only between figures of the same kind of source."""

from __future__ import annotations

import pytest

from edgepack.devices.compare import compare
from edgepack.devices.result import Artifact, DeviceInfo, Energy, Latency, ProfileResult


def result(samples, kind="host", energy=None, source="measured", size=1000) -> ProfileResult:
    return ProfileResult(device=DeviceInfo(kind=kind, id=kind),
                         artifact=Artifact(path="m.tflite", sha256="0" * 64, size_bytes=size),
                         latency=Latency.from_samples_us(samples, source=source),
                         energy=Energy(source="measured", per_inference_mj=energy) if energy else Energy())


def test_ratios_are_b_over_a_from_the_results_own_figures():
    a, b = result([10, 20, 30]), result([40, 50, 60], size=250)
    rows = {r.metric: r for r in compare(a, b)}
    assert rows["latency median"].ratio == pytest.approx(b.latency.median_us / a.latency.median_us)
    assert rows["latency p95"].ratio == pytest.approx(b.latency.p95_us / a.latency.p95_us)
    assert rows["model size"].ratio == pytest.approx(0.25)


def test_measured_is_never_divided_by_estimated():
    rows = {r.metric: r for r in compare(result([10.0]), result([12.0], kind="estimate", source="estimated"))}
    r = rows["latency median"]
    assert r.ratio is None and "measured vs estimated" in r.note


def test_a_figure_on_one_side_only_has_no_ratio():
    rows = {r.metric: r for r in compare(result([10.0], energy=2.0), result([10.0]))}
    assert rows["energy / inference"].ratio is None and rows["energy / inference"].a == 2.0
    assert "peak memory" not in rows  # on neither side: no row


def test_spread_across_devices_is_max_over_min_of_like_figures():
    from edgepack.devices.compare import spread

    phones = [result([10, 20, 30], energy=2.0), result([40, 50, 60], energy=3.0), result([5, 25, 45])]
    rows = {r.metric: r for r in spread(phones)}
    med = [p.latency.median_us for p in phones]
    assert rows["latency median"].values == med
    assert rows["latency median"].spread == pytest.approx(max(med) / min(med))
    assert rows["energy / inference"].spread is None  # missing on the third phone
    assert rows["energy / inference"].note == "not available on every device"
    mixed = {r.metric: r for r in spread([result([10.0]), result([12.0], kind="estimate", source="estimated")])}
    assert mixed["latency median"].spread is None and "estimated vs measured" in mixed["latency median"].note
