"""Patch-based inference for ``--target tflm`` (MCUNetV2-style, inside an ordinary TFLite graph, no new kernels).

The peak of MobileNet-style nets sits in the first, high-resolution stage. Run that stage tile by
tile (:mod:`.patches_rewrite`: STRIDED_SLICE, the stage's ops per tile sharing the weight tensors,
PAD only at the true image border, CONCATENATION) and only one tile's intermediates are alive at a
time; once the last tile is sliced, the whole input tensor is dead too. When the tiles are strips
along rows, each tile's output is placed by the offline plan (:mod:`.memplan`) inside the
concatenated tensor, so CONCATENATION copies each strip onto itself and the stage output costs its
size once.

What it costs, measured: every op copy adds persistent data in TFLM's tail (a conv: 8 B per output
channel plus op and node data), the halo recomputes MACs, and the input tensor stays whole until the
last tile is sliced. :func:`apply_patches` therefore tries stage ends x tile grids within a MAC budget,
plans each, measures the arena TFLM really needs (host bisection, persistent part included) for the
most promising, and keeps the best only when it is below ``baseline`` (the arena without patches,
offline plan included) and every output is bit-identical to the unpatched int8 model.

Example::

    r = apply_patches(model_bytes, baseline_arena, calibration, mac_budget=0.20)
    r.kept, r.arena.min_bytes, r.report()["grid"], r.report()["extra_macs_pct"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .patches_rewrite import extra_macs, find_chain, rewrite

GRIDS = ((2, 1), (3, 1), (4, 1), (6, 1), (8, 1), (2, 2), (3, 3), (4, 4))
MAC_BUDGET = 0.20  # extra MACs allowed, as a fraction of the whole model's
MEASURED = 4  # candidates measured by bisection, lowest estimated arena first
MIN_STAGE_PX = 16  # a stage ends before its output falls under 4x4 pixels


@dataclass
class Candidate:
    """One tiling: the first ``ops`` ops of the chain as a ``grid`` (rows, cols) of tiles."""

    ops: int
    grid: tuple[int, int]
    extra_macs: int
    model: bytes = b""
    peak: int = 0  # planned head (activations) of the patched graph
    tail: int = 0  # TFLM's persistent part for it (host)
    inplace: bool = False

    def label(self) -> str:
        return f"{self.grid[0]}x{self.grid[1]} patches of the first {self.ops} ops"


def live_bytes(model_bytes: bytes) -> Optional[list[int]]:
    """Bytes of non-constant tensors alive at each op (the activations' memory over time), or None."""
    from .memplan import read_graph

    graph = read_graph(model_bytes)
    if graph is None:
        return None
    live = np.zeros(graph.n_ops + 2, dtype=np.int64)
    for b in graph.buffers:
        live[b.first] += b.size
        live[b.last + 1] -= b.size
    return [int(v) for v in np.cumsum(live)[1 : graph.n_ops + 1]]


def plan_patched(model_bytes: bytes, rw, inplace: Optional[bool] = None) -> Optional[tuple[bytes, int, bool]]:
    """(model with an offline plan, planned head, tiles placed in the concat output) or None.

    Strips (one tile column) at 16-byte aligned row offsets are placed inside the stage output:
    the stage output's buffer then lives from its first tile on, and the tiles get no room of
    their own; other grids are planned as ordinary tensors. ``inplace`` forces one way (None: the lower peak)."""
    from dataclasses import replace

    from .memplan import Graph, check_plan, plans, read_graph, with_offline_plan

    graph = read_graph(model_bytes)
    if graph is None:
        return None
    best = None
    alias = rw.offsets is not None and all(o % 16 == 0 for o in rw.offsets)
    ways = (True, False) if alias else (False,)
    for place_in in (ways if inplace is None else (inplace,)):
        if place_in and not alias:
            return None
        bufs = graph.buffers
        if place_in:
            tiles = set(rw.tile_outputs)
            start = min(b.first for b in bufs if b.tensor in tiles)
            bufs = [replace(b, first=min(b.first, start)) if b.tensor == rw.stage_output else b
                    for b in bufs if b.tensor not in tiles]
        found = plans(Graph(graph.n_tensors, graph.n_ops, graph.n_inputs, graph.n_outputs, bufs, graph.variables),
                      search=50)
        if not found:
            continue
        plan = found[0]
        check_plan(Graph(graph.n_tensors, graph.n_ops, graph.n_inputs, graph.n_outputs, bufs), plan)
        if place_in:
            base = plan.offsets[rw.stage_output]
            plan.offsets.update({t: base + o for t, o in zip(rw.tile_outputs, rw.offsets)})
        if best is None or plan.peak_bytes < best[1]:
            best = (with_offline_plan(model_bytes, plan.words(graph)), plan.peak_bytes, place_in)
    return best


def candidates(model_bytes: bytes, mac_budget: float = MAC_BUDGET) -> tuple[list[Candidate], int]:
    """Every (stage end, grid) within the MAC budget, and the model's MACs."""
    from ..convert.flatbuffer import read_tflite

    chain = find_chain(model_bytes)
    total = read_tflite(model_bytes).macs()
    out = []
    for end in range(1, len(chain) + 1):
        last = chain[end - 1]
        if last.out_hw[0] * last.out_hw[1] < MIN_STAGE_PX:
            break
        for grid in GRIDS:
            if grid[0] > last.out_hw[0] or grid[1] > last.out_hw[1]:
                continue
            tiled, whole = extra_macs(chain[:end], grid)
            if tiled - whole <= mac_budget * total:
                out.append(Candidate(ops=end, grid=grid, extra_macs=tiled - whole))
    return out, total


@dataclass
class PatchResult:
    """What :func:`apply_patches` decided: the model and arena to ship, and the figures behind it."""

    model: bytes
    arena: "ArenaSize"  # noqa: F821 - the patched one if kept, else ``baseline``
    kept: bool
    reason: str
    figures: dict = field(default_factory=dict)
    seconds: float = 0.0

    def report(self) -> dict:
        return {"kept": self.kept, "reason": self.reason, **self.figures, "seconds": round(self.seconds, 2)}


def _peak_op(model_bytes: bytes) -> Optional[dict]:
    """The op where the live activations peak: index, op name, bytes."""
    from ..convert.flatbuffer import read_tflite

    live = live_bytes(model_bytes)
    if not live:
        return None
    i = int(np.argmax(live))
    return {"op": i, "name": read_tflite(model_bytes).ops[i].op, "live_bytes": live[i]}


def apply_patches(model_bytes: bytes, baseline: "ArenaSize", calibration: Optional[np.ndarray] = None,  # noqa: F821
                  mac_budget: float = MAC_BUDGET, measured: int = MEASURED) -> PatchResult:
    """Tile the first high-resolution stage of ``model_bytes`` (an int8 model without an offline plan)
    when TFLM then needs an arena below ``baseline`` (the arena the model ships with otherwise, e.g.
    :func:`.memplan.apply_plan`'s) at no more than ``mac_budget`` extra MACs, outputs bit-identical.

    Example::

        r = apply_patches(model_bytes, find_arena(model_bytes), calibration)
        r.kept, r.arena.min_bytes, r.report()
    """
    from ..errors import EdgepackError
    from ..convert.flatbuffer import read_tflite
    from .arena import arena_parts, find_arena
    from .memplan import _outputs, _same, _samples, read_graph, read_offline_plan

    t0 = time.perf_counter()
    fig: dict = {"baseline_arena": baseline.min_bytes, "baseline_recommended_arena": baseline.recommended_bytes,
                 "mac_budget_pct": round(100 * mac_budget, 1)}

    def result(kept: bool, reason: str, model: bytes = model_bytes, arena=baseline) -> PatchResult:
        return PatchResult(model=model, arena=arena, kept=kept, reason=reason, figures=fig,
                           seconds=time.perf_counter() - t0)

    if read_offline_plan(model_bytes) is not None:
        return result(False, "the model already carries an OfflineMemoryAllocation plan: left as given")
    graph = read_graph(model_bytes)
    if graph is None:
        return result(False, "several subgraphs, no ops, or a tensor edgepack cannot size: not tiled")
    fig["live_bytes_before"] = live_bytes(model_bytes)
    fig["peak_op_before"] = _peak_op(model_bytes)
    cands, total = candidates(model_bytes, mac_budget)
    fig["macs"] = total
    if not cands:
        return result(False, "no tileable stage at the start of the graph (the first op is not a conv, "
                             "depthwise conv, pool, pad or elementwise op on a 1xHxWxC tensor) within the MAC budget")
    tail_cache: dict[int, int] = {}
    chain = find_chain(model_bytes)
    for c in cands:
        patched, rw = rewrite(model_bytes, chain[: c.ops], c.grid)
        planned = plan_patched(patched, rw)
        if planned is None:
            continue
        c.model, c.peak, c.inplace = planned
        key = c.ops * 100 + c.grid[0] * c.grid[1]  # same op copies: same persistent part
        if key not in tail_cache:
            tail_cache[key] = arena_parts(c.model, c.peak * 2 + (1 << 18))["tail"]
        c.tail = tail_cache[key]
    ranked = sorted((c for c in cands if c.model), key=lambda c: (c.peak + c.tail, c.extra_macs, c.ops))
    fig["candidates"] = len(ranked)
    best, best_arena = None, None
    tried = []
    for c in ranked[:measured]:
        try:
            arena = find_arena(c.model, guess=c.peak + c.tail)
        except EdgepackError:
            continue
        tried.append({"tiling": c.label(), "arena": arena.min_bytes, "planned_head": c.peak, "tail": c.tail,
                      "extra_macs": c.extra_macs, "tiles_in_concat_output": c.inplace})
        if best_arena is None or arena.min_bytes < best_arena.min_bytes:
            best, best_arena = c, arena
    fig["measured"] = tried
    if best is None:
        return result(False, "TFLM refused every tiled graph: model unchanged")
    parts = arena_parts(best.model, best_arena.recommended_bytes)
    fig.update({"tiling": best.label(), "stage_ops": best.ops, "grid": list(best.grid), "patched_arena": best_arena.min_bytes,
                "patched_head": parts["head"], "patched_tail": parts["tail"], "extra_macs": best.extra_macs,
                "extra_macs_pct": round(100 * best.extra_macs / max(1, total), 2),
                "tiles_in_concat_output": best.inplace, "ops_after": len(read_tflite(best.model).ops),
                "live_bytes_after": live_bytes(best.model), "peak_op_after": _peak_op(best.model),
                "model_bytes_added": len(best.model) - len(model_bytes)})
    if best_arena.min_bytes >= baseline.min_bytes:
        return result(False, f"tiled, TFLM needs {best_arena.min_bytes} B ({best.label()}) vs {baseline.min_bytes} B "
                             "without patches (op copies grow the persistent part): model unchanged")
    roomy = 2 * baseline.recommended_bytes  # the unpatched, unplanned model needs more than ``baseline``
    samples = _samples(model_bytes, roomy, graph, calibration)
    ref = _outputs(model_bytes, roomy, samples, graph.n_outputs)
    same = _same(ref, _outputs(best.model, best_arena.min_bytes, samples, graph.n_outputs))
    fig["outputs_checked_samples"], fig["bit_exact"] = len(samples), same
    if not same:
        return result(False, "outputs differ when tiled (report the model to edgepack): model unchanged")
    return result(True, f"TFLM needs {best_arena.min_bytes} B with {best.label()} vs {baseline.min_bytes} B without, at "
                        f"+{fig['extra_macs_pct']}% MACs; outputs bit-identical on {len(samples)} samples",
                  model=best.model, arena=best_arena)
