"""Energy per inference from battery current/voltage samples (pure functions).

Android batteries report ``current_now`` in microamps and ``voltage_now`` in
microvolts per the kernel power-supply ABI, but drivers differ: some report
milliamps/millivolts, and the sign of a discharging current is negative on
some and positive on others. This module normalises units and sign, subtracts
the idle baseline, integrates power over time, and propagates the uncertainty.

Method: ``E = (P_run - P_idle) x t_inference``, where each P is the
time-weighted mean of ``|I| x V`` (trapezoid rule over the sample times), its
uncertainty the standard error of the samples, and ``t_inference`` the mean
latency the benchmark reported, with its standard error.

Example::

    fig = energy_per_inference(idle, run, latency_s=0.0124, latency_std_s=0.0003, runs=50)
    fig.mj, fig.uncertainty_mj
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...errors import DeviceError

CURRENT_UNITS = {"uA": 1e-6, "mA": 1e-3, "A": 1.0}
VOLTAGE_UNITS = {"uV": 1e-6, "mV": 1e-3, "V": 1.0}
SIGNS = ("auto", "positive-discharge", "negative-discharge")
# The largest |current| a phone reports in mA is a few thousand; in uA a loaded
# phone reports far more than this. Below it, the driver is taken to report mA.
_MA_THRESHOLD = 10_000.0


@dataclass
class Trace:
    """One sampling window: times (s), current (A, discharge positive), voltage (V)."""

    t: np.ndarray
    current_a: np.ndarray
    voltage_v: np.ndarray

    @property
    def power_w(self) -> np.ndarray:
        return self.current_a * self.voltage_v


@dataclass
class EnergyFigure:
    """Energy per inference and how it was obtained."""

    mj: float
    uncertainty_mj: float
    idle_mw: float
    run_mw: float
    excess_mw: float
    excess_sem_mw: float
    current_unit: str
    voltage_unit: str
    sign: str
    idle_samples: int
    run_samples: int

    @property
    def significant(self) -> bool:
        """True when the excess power is at least twice its standard error."""
        return self.excess_mw > 2 * self.excess_sem_mw


def current_unit(raw: Sequence[float], unit: str = "auto") -> str:
    """The unit of raw current readings: "uA" (kernel ABI) unless they look like mA.

    Example::

        current_unit([-450000, -460000])  # "uA"
        current_unit([-450, -460])        # "mA"
    """
    if unit != "auto":
        if unit not in CURRENT_UNITS:
            raise DeviceError(f"unknown current unit '{unit}'; use auto, uA, mA or A")
        return unit
    peak = float(np.max(np.abs(np.asarray(raw, dtype=float)))) if len(raw) else 0.0
    return "uA" if peak >= _MA_THRESHOLD else "mA"


def voltage_unit(raw: Sequence[float], unit: str = "auto") -> str:
    """The unit of raw voltage readings: uV (kernel ABI), mV or V by magnitude."""
    if unit != "auto":
        if unit not in VOLTAGE_UNITS:
            raise DeviceError(f"unknown voltage unit '{unit}'; use auto, uV, mV or V")
        return unit
    median = float(np.median(np.abs(np.asarray(raw, dtype=float)))) if len(raw) else 0.0
    if median <= 0:
        raise DeviceError("battery voltage_now reads 0: this device does not report voltage; "
                          "profile with --no-energy")
    return "uV" if median > 100_000 else ("mV" if median > 100 else "V")


def discharge_sign(idle_a: np.ndarray, run_a: np.ndarray, convention: str = "auto") -> int:
    """+1 if discharge current is reported positive, -1 if negative.

    "auto": the load of a benchmark draws more discharge current than idle, so
    the direction from idle to run is the discharge direction; when the two are
    indistinguishable, the sign most samples carry is taken as discharge.
    """
    if convention == "positive-discharge":
        return 1
    if convention == "negative-discharge":
        return -1
    if convention != "auto":
        raise DeviceError(f"unknown current sign convention '{convention}'; use {', '.join(SIGNS)}")
    delta = float(np.mean(run_a) - np.mean(idle_a))
    noise = math.sqrt(_sem(run_a) ** 2 + _sem(idle_a) ** 2)
    if abs(delta) > 3 * noise and delta != 0:
        return 1 if delta > 0 else -1
    both = np.concatenate([idle_a, run_a])
    return -1 if np.sum(both < 0) > np.sum(both > 0) else 1


def _sem(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("inf")


def mean_power(trace: Trace) -> tuple[float, float]:
    """Time-weighted mean power (W, trapezoid rule) and its standard error.

    Falls back to the plain mean when the timestamps do not advance (coarse clocks).
    """
    p = trace.power_w
    duration = float(trace.t[-1] - trace.t[0])
    if duration > 0 and np.all(np.diff(trace.t) >= 0):
        mean = float(np.sum((p[1:] + p[:-1]) / 2 * np.diff(trace.t)) / duration)
    else:
        mean = float(np.mean(p))
    return mean, _sem(p)


def timed_window(samples: tuple[Sequence[float], Sequence[float], Sequence[float]], start: float,
                 end: float, least: int = 3) -> tuple[tuple[list, list, list], bool]:
    """The samples taken in [start, end] (the timed runs), and whether there were enough.

    With fewer than ``least`` samples in the window, all samples are returned
    and the flag is False, so the caller can say the figure includes init/warmup.

    Example::

        timed_window(([0, 1, 2, 3], [5, 6, 7, 8], [1, 1, 1, 1]), 0.5, 3.0)
        # (([1, 2, 3], [6, 7, 8], [1, 1, 1]), True)
    """
    t, i, v = (list(x) for x in samples)
    keep = [k for k, tk in enumerate(t) if start <= tk <= end]
    if len(keep) < least:
        return (t, i, v), False
    return ([t[k] for k in keep], [i[k] for k in keep], [v[k] for k in keep]), True


def to_trace(t: Sequence[float], current_raw: Sequence[float], voltage_raw: Sequence[float],
             c_unit: str, v_unit: str, sign: int) -> Trace:
    """Raw readings -> a Trace in amps (discharge positive) and volts."""
    return Trace(np.asarray(t, dtype=float),
                 np.asarray(current_raw, dtype=float) * CURRENT_UNITS[c_unit] * sign,
                 np.asarray(voltage_raw, dtype=float) * VOLTAGE_UNITS[v_unit])


def energy_per_inference(idle: tuple[Sequence[float], Sequence[float], Sequence[float]],
                         run: tuple[Sequence[float], Sequence[float], Sequence[float]],
                         latency_s: float, latency_std_s: float, runs: int,
                         current: str = "auto", voltage: str = "auto",
                         sign: str = "auto") -> EnergyFigure:
    """Energy per inference (mJ) from idle and run samples ``(t, current_now, voltage_now)``.

    ``latency_s``/``latency_std_s`` are the benchmark's mean latency and its
    spread over ``runs`` timed runs.

    Example::

        idle = ([0, .1, .2], [-150e3, -151e3, -149e3], [3.85e6] * 3)
        run = ([1, 1.1, 1.2], [-450e3, -452e3, -449e3], [3.84e6] * 3)
        energy_per_inference(idle, run, 0.01, 0.0001, 50).mj   # ~11.5 (mJ)
    """
    if len(idle[0]) < 2 or len(run[0]) < 2:
        raise DeviceError("energy needs at least 2 idle and 2 run battery samples; "
                          "profile with more --runs or --idle-seconds")
    if latency_s <= 0:
        raise DeviceError("energy needs a positive mean latency from the benchmark")
    c_unit = current_unit(list(idle[1]) + list(run[1]), current)
    v_unit = voltage_unit(list(idle[2]) + list(run[2]), voltage)
    scale = CURRENT_UNITS[c_unit]
    s = discharge_sign(np.asarray(idle[1], float) * scale, np.asarray(run[1], float) * scale, sign)
    p_idle, sem_idle = mean_power(to_trace(*idle, c_unit, v_unit, s))
    p_run, sem_run = mean_power(to_trace(*run, c_unit, v_unit, s))
    excess = p_run - p_idle
    excess_sem = math.sqrt(sem_idle ** 2 + sem_run ** 2)
    lat_sem = latency_std_s / math.sqrt(max(runs, 1))
    mj = excess * latency_s * 1e3
    unc = math.hypot(excess_sem * latency_s, excess * lat_sem) * 1e3
    return EnergyFigure(mj=mj, uncertainty_mj=unc, idle_mw=p_idle * 1e3, run_mw=p_run * 1e3,
                        excess_mw=excess * 1e3, excess_sem_mw=excess_sem * 1e3,
                        current_unit=c_unit, voltage_unit=v_unit,
                        sign="positive-discharge" if s > 0 else "negative-discharge",
                        idle_samples=len(idle[0]), run_samples=len(run[0]))
