"""Energy maths: units, sign conventions, baseline subtraction, integration, uncertainty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepack.devices.android.battery import (
    Trace,
    current_unit,
    discharge_sign,
    energy_per_inference,
    mean_power,
    timed_window,
    voltage_unit,
)
from edgepack.devices.android.parsers import parse_battery_samples
from edgepack.errors import DeviceError
from locations import DATA as TEST_DATA

DATA = TEST_DATA / "devices"


def synth(n, amps, volts, sign=-1, unit=1e6, vunit=1e6, t0=0.0, noise=0.0, seed=0):
    """Samples as a driver would print them: current in 1/unit A with a sign convention."""
    rng = np.random.default_rng(seed)
    t = t0 + 0.05 * np.arange(n)
    i = (amps + rng.normal(0, noise, n)) * unit * sign
    v = np.full(n, volts) * vunit
    return list(t), list(np.round(i)), list(np.round(v))


def test_units_detected_by_magnitude():
    assert current_unit([-450000, -151000]) == "uA"
    assert current_unit([450, 151]) == "mA"
    assert current_unit([1, 2], "A") == "A"
    assert voltage_unit([3850000]) == "uV" and voltage_unit([3850]) == "mV" and voltage_unit([3.85]) == "V"
    with pytest.raises(DeviceError, match="unknown current unit"):
        current_unit([1], "kA")


def test_sign_follows_the_load_direction_even_while_charging():
    idle = np.array([0.30, 0.31, 0.29, 0.30])  # charging: +300 mA into the battery
    run = np.array([0.05, 0.06, 0.04, 0.05])  # load eats into the charge current
    assert discharge_sign(idle, run) == -1
    assert discharge_sign(-idle, -run) == 1
    assert discharge_sign(idle, run, "positive-discharge") == 1


@pytest.mark.parametrize("sign, unit", [(-1, 1e6), (1, 1e6), (-1, 1e3), (1, 1e3)])
def test_energy_is_the_same_whatever_the_driver_convention(sign, unit):
    idle = synth(40, 0.15, 3.85, sign, unit)
    run = synth(40, 0.45, 3.85, sign, unit, t0=10)
    fig = energy_per_inference(idle, run, latency_s=0.010, latency_std_s=0.0, runs=50)
    # excess power (0.30 A x 3.85 V) x 10 ms, computed from the generator's own parameters
    assert fig.mj == pytest.approx((0.45 - 0.15) * 3.85 * 0.010 * 1e3, rel=1e-3)
    assert fig.current_unit == ("uA" if unit == 1e6 else "mA")
    assert fig.sign == ("negative-discharge" if sign < 0 else "positive-discharge")


def test_trapezoid_weights_uneven_sampling_by_time():
    t = np.array([0.0, 0.1, 0.2, 1.2])  # one long gap at 2 W
    p = Trace(t, np.array([1.0, 1.0, 2.0, 2.0]), np.ones(4))
    mean, _ = mean_power(p)
    integral = 0.1 * 1.0 + 0.1 * 1.5 + 1.0 * 2.0
    assert mean == pytest.approx(integral / 1.2)
    assert mean != pytest.approx(np.mean(p.power_w))


def test_uncertainty_shrinks_with_more_samples_and_covers_the_truth():
    truth = (0.45 - 0.15) * 3.85 * 0.01 * 1e3
    small = energy_per_inference(synth(10, .15, 3.85, noise=.02), synth(10, .45, 3.85, noise=.02, seed=1),
                                 0.01, 0.0002, 50)
    large = energy_per_inference(synth(400, .15, 3.85, noise=.02), synth(400, .45, 3.85, noise=.02, seed=1),
                                 0.01, 0.0002, 50)
    assert large.uncertainty_mj < small.uncertainty_mj
    assert abs(large.mj - truth) < 4 * large.uncertainty_mj
    assert large.significant


def test_no_load_is_not_significant():
    fig = energy_per_inference(synth(30, .15, 3.85, noise=.01), synth(30, .15, 3.85, noise=.01, seed=3),
                               0.01, 0.0, 50)
    assert not fig.significant


def test_recorded_samples_feed_the_maths():
    idle = parse_battery_samples((DATA / "battery_ma_positive.txt").read_text())
    run = [[x + 1 for x in idle.t], [c * 3 for c in idle.current], idle.voltage]
    fig = energy_per_inference((idle.t, idle.current, idle.voltage), run, 0.02, 0.0, 10)
    assert fig.current_unit == "mA" and fig.voltage_unit == "mV" and fig.sign == "positive-discharge"
    assert fig.excess_mw == pytest.approx(fig.run_mw - fig.idle_mw)
    assert fig.mj == pytest.approx(fig.excess_mw * 0.02)


def test_too_few_samples_or_zero_latency_are_errors():
    with pytest.raises(DeviceError, match="at least 2"):
        energy_per_inference(([0], [1], [1]), synth(5, .4, 3.8), 0.01, 0, 5)
    with pytest.raises(DeviceError, match="positive mean latency"):
        energy_per_inference(synth(5, .1, 3.8), synth(5, .4, 3.8), 0.0, 0, 5)


def test_timed_window_keeps_only_the_timed_runs_or_says_it_could_not():
    t, i, v = [0.0, 0.5, 1.0, 1.5, 2.0], [1, 2, 3, 4, 5], [9] * 5
    (wt, wi, _), ok = timed_window((t, i, v), 0.9, 2.0)
    assert ok and wt == [1.0, 1.5, 2.0] and wi == [3, 4, 5]
    (wt, _, _), ok = timed_window((t, i, v), 1.9, 2.0)
    assert not ok and wt == t  # too few samples: everything, flagged
