"""An offline memory plan for TFLM: tensor offsets edgepack computes, written where TFLM reads them.

TFLM's GreedyMemoryPlanner places the non-persistent tensors largest first, each in the first
gap; the result can sit well above the largest set of tensors alive at one op (the live-set
bound: MobileNetV1-0.25 96x96 plans 73,728 B for a 55,296 B bound). TFLM honours an offline
plan stored in the model's ``OfflineMemoryAllocation`` metadata (int32 words ``[version=0,
subgraphs, n_offsets, offset per tensor of every subgraph (-1 = online)]``, read in
``micro_allocation_info.cc``). This module computes lifetimes exactly as TFLM marks them, places
the tensors with several orderings and first-/best-fit (keeping the lowest peak), and writes
the plan. Scratch buffers stay online (TFLM fits them into gaps of the plan or on top), so a
plan is only worth keeping once the arena TFLM really needs is measured: :func:`apply_plan`
does that by bisection on the host interpreter and keeps the plan only when that arena is
smaller and every output is bit-identical.

Only single-subgraph models are planned (WHILE/IF bodies are left to TFLM's planner);
variable tensors and constants stay -1.

Example::

    graph = read_graph(model_bytes)             # None: several subgraphs or an unknown dtype
    plan = best_plan(graph)                     # plan.peak_bytes, plan.bound_bytes, plan.offsets
    planned = with_offline_plan(model_bytes, plan.words(graph))
    result = apply_plan(model_bytes, find_arena(model_bytes), samples)   # kept only if smaller
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

ALIGN = 16  # TFLM's MicroArenaBufferAlignment()
METADATA_NAME = b"OfflineMemoryAllocation"
FORMAT_VERSION = 0
ONLINE = -1
# bytes per element of the TFLite TensorType names TFLM allocates (others: left to TFLM's planner)
_DTYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT32": 4, "INT64": 8, "UINT64": 8,
                "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1, "BOOL": 1, "COMPLEX64": 8}
LOCAL_SEARCH_SEED = 0


@dataclass(frozen=True)
class Buffer:
    """A non-constant tensor TFLM plans: aligned size and lifetime in TFLM's allocation scopes."""

    tensor: int
    size: int
    first: int
    last: int

    def overlaps(self, other: "Buffer") -> bool:
        return not (self.last < other.first or other.last < self.first)


@dataclass
class Graph:
    """The main subgraph as TFLM's planner sees it."""

    n_tensors: int  # tensors of all subgraphs (the metadata's offset count)
    n_ops: int
    n_inputs: int
    n_outputs: int
    buffers: list[Buffer]
    variables: list[int] = field(default_factory=list)


@dataclass
class Plan:
    """Offsets of the planned tensors (tensor index -> byte offset from the head's start)."""

    offsets: dict[int, int]
    peak_bytes: int
    bound_bytes: int
    bound_op: int  # allocation scope (op index + 1) where the live set peaks
    method: str

    def words(self, graph: Graph) -> list[int]:
        """The ``OfflineMemoryAllocation`` int32 words for ``graph``."""
        per_tensor = [self.offsets.get(i, ONLINE) for i in range(graph.n_tensors)]
        return [FORMAT_VERSION, 1, graph.n_tensors, *per_tensor]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _is_constant(model, tensor) -> bool:
    idx = tensor.Buffer()
    if idx <= 0 or idx >= model.BuffersLength():
        return False
    buf = model.Buffers(idx)
    return buf.DataLength() > 0 or buf.Offset() > 1


def read_graph(model_bytes: bytes) -> Optional[Graph]:
    """Lifetimes and sizes of the main subgraph's planned tensors, marked as TFLM marks them
    (``AllocationInfoBuilder::MarkAllocationLifetimes``). None when TFLM's own planner must stay
    in charge: several subgraphs, a planned tensor of an unknown dtype or dynamic shape, or no ops."""
    from ..convert.flatbuffer import tflite_schema

    s = tflite_schema()
    model = s.Model.GetRootAsModel(bytes(model_bytes), 0)
    if model.SubgraphsLength() != 1:
        return None
    sub = model.Subgraphs(0)
    types = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    n, n_ops = sub.TensorsLength(), sub.OperatorsLength()
    if n_ops == 0:
        return None
    first, last = [-1] * n, [-1] * n
    for t in (sub.InputsAsNumpy() if sub.InputsLength() else []):
        first[t], last[t] = 0, 0
    for i in range(n_ops):
        op, scope = sub.Operators(i), i + 1
        outs = [int(t) for t in op.OutputsAsNumpy() if t >= 0] if op.OutputsLength() else []
        for t in outs:
            first[t] = scope if first[t] == -1 else first[t]
        for t in (op.InputsAsNumpy() if op.InputsLength() else []):
            if t >= 0:
                last[t] = scope
        for t in outs:
            last[t] = scope
    for t in (sub.OutputsAsNumpy() if sub.OutputsLength() else []):
        first[t] = n_ops if first[t] == -1 else first[t]
        last[t] = n_ops
    buffers, variables = [], []
    for i in range(n):
        tt = sub.Tensors(i)
        if tt.IsVariable():
            variables.append(i)
            continue
        if _is_constant(model, tt) or first[i] == -1:
            continue
        width = _DTYPE_BYTES.get(types.get(tt.Type(), ""))
        if width is None:
            return None
        shape = [int(d) for d in tt.ShapeAsNumpy()] if tt.ShapeLength() else []
        if any(d < 0 for d in shape):
            return None  # a dynamic dimension: TFLM sizes it at run time
        size = int(np.prod(shape)) * width if shape else width
        if size > 0:
            buffers.append(Buffer(tensor=i, size=_align(size), first=first[i], last=last[i]))
    return Graph(n_tensors=n, n_ops=n_ops, n_inputs=sub.InputsLength(), n_outputs=sub.OutputsLength(),
                 buffers=buffers, variables=variables)


def live_bound(buffers: list[Buffer]) -> tuple[int, int]:
    """(largest sum of sizes alive at one allocation scope, that scope): no plan can go below it."""
    if not buffers:
        return 0, 0
    end = max(b.last for b in buffers)
    live = np.zeros(end + 2, dtype=np.int64)
    for b in buffers:
        live[b.first] += b.size
        live[b.last + 1] -= b.size
    totals = np.cumsum(live)
    scope = int(np.argmax(totals))
    return int(totals[scope]), scope


def place(order: list[Buffer], best_fit: bool = False) -> tuple[dict[int, int], int]:
    """Place buffers in ``order``: each at the lowest offset (first fit) or in the tightest gap
    (best fit) among the already placed buffers whose lifetimes overlap it. Returns (offsets, peak)."""
    placed: list[tuple[Buffer, int]] = []
    offsets, peak = {}, 0
    for b in order:
        busy = sorted((off, off + p.size) for p, off in placed if p.overlaps(b))
        cand, choice, tightest = 0, None, None
        for lo, hi in busy:
            if lo - cand >= b.size:
                if not best_fit:
                    choice = cand
                    break
                if tightest is None or lo - cand < tightest:
                    choice, tightest = cand, lo - cand
            cand = max(cand, hi)
        if choice is None:
            choice = cand
        offsets[b.tensor] = choice
        placed.append((b, choice))
        peak = max(peak, choice + b.size)
    return offsets, peak


def _orders(buffers: list[Buffer]) -> dict[str, list[Buffer]]:
    """Candidate orderings, by name; ties broken by tensor index (deterministic)."""
    live = np.zeros(max(b.last for b in buffers) + 1, dtype=np.int64)
    for b in buffers:
        live[b.first : b.last + 1] += b.size
    pressure = {b.tensor: int(live[b.first : b.last + 1].max()) for b in buffers}
    keys: dict[str, Callable[[Buffer], tuple]] = {
        "largest first": lambda b: (-b.size, b.first, b.tensor),
        "by lifetime start": lambda b: (b.first, -b.size, b.tensor),
        "by size x lifetime": lambda b: (-b.size * (b.last - b.first + 1), b.tensor),
        "longest lifetime first": lambda b: (-(b.last - b.first), -b.size, b.tensor),
        "peak pressure first": lambda b: (-pressure[b.tensor], -b.size, b.first, b.tensor),
        "by lifetime end": lambda b: (-b.last, -b.size, b.tensor),
    }
    return {name: sorted(buffers, key=key) for name, key in keys.items()}


def plans(graph: Graph, search: int = 200) -> list[Plan]:
    """Distinct plans, lowest peak first: every ordering x {first fit, best fit}, then a seeded
    local search (pair swaps of the best order) while above the live-set bound."""
    if not graph.buffers:
        return []
    bound, scope = live_bound(graph.buffers)
    found: dict[tuple, Plan] = {}
    best_order, best_peak, best_fit_flag = None, None, False
    for name, order in _orders(graph.buffers).items():
        for best_fit in (False, True):
            offsets, peak = place(order, best_fit)
            key = tuple(sorted(offsets.items()))
            method = f"{name}, {'best' if best_fit else 'first'} fit"
            found.setdefault(key, Plan(offsets, peak, bound, scope, method))
            if best_peak is None or peak < best_peak:
                best_order, best_peak, best_fit_flag = order, peak, best_fit
    n = len(graph.buffers)
    rng = random.Random(LOCAL_SEARCH_SEED)
    order = list(best_order)
    tries = min(search, max(10, 4_000_000 // max(1, n * n)))
    for _ in range(tries if n > 1 and best_peak > bound else 0):
        i, j = rng.randrange(n), rng.randrange(n)
        trial = list(order)
        trial[i], trial[j] = trial[j], trial[i]
        offsets, peak = place(trial, best_fit_flag)
        if peak <= best_peak:
            order, best_peak = trial, peak
            key = tuple(sorted(offsets.items()))
            found.setdefault(key, Plan(offsets, peak, bound, scope, "local search"))
            if peak == bound:
                break
    return sorted(found.values(), key=lambda p: (p.peak_bytes, p.method))


def best_plan(graph: Graph) -> Optional[Plan]:
    """The plan with the lowest peak (None when nothing is planned)."""
    found = plans(graph)
    return found[0] if found else None


def check_plan(graph: Graph, plan: Plan) -> None:
    """Raise AssertionError if two buffers alive at once share bytes (TFLM does not check)."""
    bs = [b for b in graph.buffers if b.tensor in plan.offsets]
    for i, a in enumerate(bs):
        for b in bs[i + 1 :]:
            oa, ob = plan.offsets[a.tensor], plan.offsets[b.tensor]
            if a.overlaps(b) and oa < ob + b.size and ob < oa + a.size:
                raise AssertionError(f"tensors {a.tensor} and {b.tensor} overlap in the plan")


def _aligned_buffer_class():
    from ..convert.flatbuffer import tflite_schema

    s = tflite_schema()

    class AlignedBufferT(s.BufferT):
        """A BufferT whose data is packed 16-byte aligned, as the converter writes weights."""

        def Pack(self, builder):  # noqa: N802 - flatbuffers' naming
            data = None
            if self.data is not None:
                payload = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(payload), ALIGN)
                builder.head -= len(payload)
                builder.Bytes[builder.head : builder.head + len(payload)] = payload
                data = builder.EndVector()
            s.BufferStart(builder)
            if data is not None:
                s.BufferAddData(builder, data)
            s.BufferAddOffset(builder, self.offset)
            s.BufferAddSize(builder, self.size)
            return s.BufferEnd(builder)

    return s, AlignedBufferT


def with_offline_plan(model_bytes: bytes, words: list[int]) -> bytes:
    """``model_bytes`` with ``words`` as its ``OfflineMemoryAllocation`` metadata (replaced if present).

    The graph, weights and other metadata are unchanged; weight buffers stay 16-byte aligned.
    """
    from ..keras_compat import tf

    tf()
    from tensorflow.lite.tools import flatbuffer_utils as fu

    s, aligned = _aligned_buffer_class()
    model = fu.convert_bytearray_to_object(bytearray(model_bytes))
    buf = aligned()
    buf.data = np.asarray(words, dtype="<i4").view(np.uint8)
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if m.name == METADATA_NAME), None)
    if entry is None:
        model.buffers.append(buf)
        entry = s.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
        model.metadata.append(entry)
    else:
        model.buffers[entry.buffer] = buf
    return pack_model(model)


def pack_model(model) -> bytes:
    """Serialize a flatbuffer object-API ``ModelT`` with every weight buffer 16-byte aligned (as the
    converter writes them; TFLM's 4-bit and SIMD paths read aligned words).

    Example::

        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data)); ...; data = pack_model(model)
    """
    from tensorflow.lite.tools import flatbuffer_utils as fu

    _, aligned = _aligned_buffer_class()
    for i, b in enumerate(model.buffers):
        if not isinstance(b, aligned):
            model.buffers[i] = aligned()
            model.buffers[i].data, model.buffers[i].offset, model.buffers[i].size = b.data, b.offset, b.size
    return bytes(fu.convert_object_to_bytearray(model))


def read_offline_plan(model_bytes: bytes) -> Optional[list[int]]:
    """The ``OfflineMemoryAllocation`` words of a model, or None."""
    from ..convert.flatbuffer import tflite_schema

    model = tflite_schema().Model.GetRootAsModel(bytes(model_bytes), 0)
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        if m.Name() == METADATA_NAME:
            raw = model.Buffers(m.Buffer()).DataAsNumpy()
            return [int(v) for v in np.frombuffer(raw.tobytes(), dtype="<i4")]
    return None


MAX_SAMPLES = 32  # samples whose outputs must be bit-identical with and without the plan
MAX_MEASURED = 3  # candidate plans measured by bisection (lowest peaks first)


@dataclass
class PlanResult:
    """What :func:`apply_plan` decided: the model and arena to ship, and the figures behind it."""

    model: bytes
    arena: "ArenaSize"  # noqa: F821 - tflm.arena.ArenaSize: the planned one if kept, else TFLM's own
    kept: bool
    reason: str
    own: dict = field(default_factory=dict)  # TFLM's own plan: arena (smallest, host), head, tail
    planned: dict = field(default_factory=dict)  # the same with the offline plan (when measured)
    bound: dict = field(default_factory=dict)  # live-set lower bound of the head: bytes, op
    plan: dict = field(default_factory=dict)  # the chosen plan: peak, method, candidates measured
    samples: int = 0
    seconds: float = 0.0

    def report(self) -> dict:
        out = {"kept": self.kept, "reason": self.reason, "own_arena": self.own, "planned_arena": self.planned,
               "live_set_bound": self.bound, "plan": self.plan, "outputs_checked_samples": self.samples,
               "seconds": round(self.seconds, 2)}
        if self.own.get("bytes") and self.planned.get("bytes"):
            out["ratio"] = round(self.planned["bytes"] / self.own["bytes"], 4)
        return out


def _samples(model_bytes: bytes, arena_size: int, graph: Graph, calibration: Optional[np.ndarray]) -> list[list[np.ndarray]]:
    """Input sets in the model's own dtypes: calibration samples (one-input models) or seeded noise."""
    from ..runtime import quantize_input
    from .interpreter import Tflm, _detail

    probe = Tflm(model_bytes, arena_size=arena_size)
    details = [_detail(probe.interp.get_input_details(i)) for i in range(graph.n_inputs)]
    if calibration is not None and graph.n_inputs == 1 and len(calibration):
        return [[quantize_input(calibration[i : i + 1], details[0])] for i in range(min(MAX_SAMPLES, len(calibration)))]
    rng = np.random.default_rng(LOCAL_SEARCH_SEED)
    out = []
    for _ in range(8):
        row = []
        for d in details:
            if d["dtype"].kind in "iu":
                info = np.iinfo(d["dtype"])
                row.append(rng.integers(info.min, info.max, d["shape"], endpoint=True).astype(d["dtype"]))
            else:
                row.append(rng.standard_normal(d["shape"]).astype(d["dtype"]))
        out.append(row)
    return out


def _outputs(model_bytes: bytes, arena_size: int, samples: list[list[np.ndarray]], n_outputs: int) -> list:
    from .interpreter import Tflm

    interp = Tflm(model_bytes, arena_size=arena_size).interp
    outs = []
    for row in samples:
        for i, x in enumerate(row):
            interp.set_input(x, i)
        interp.invoke()
        outs.append([np.array(interp.get_output(j), copy=True) for j in range(n_outputs)])
    return outs


def _same(a: list, b: list) -> bool:
    return all(np.array_equal(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def _measure(model_bytes: bytes, plan: Plan, graph: Graph, tail: int):
    """(planned model, its ArenaSize, head/tail) or None when TFLM refuses the plan."""
    from ..errors import EdgepackError
    from .arena import arena_parts, find_arena

    planned = with_offline_plan(model_bytes, plan.words(graph))
    try:
        arena = find_arena(planned, guess=plan.peak_bytes + tail)  # exact unless scratch lands on top
        return planned, arena, arena_parts(planned, arena.recommended_bytes)
    except EdgepackError:
        return None


def _op_name(model_bytes: bytes, index: int) -> Optional[str]:
    from ..convert.flatbuffer import read_tflite

    ops = read_tflite(model_bytes).ops
    return ops[index].op if 0 <= index < len(ops) else None


def apply_plan(model_bytes: bytes, own: "ArenaSize", calibration: Optional[np.ndarray] = None) -> PlanResult:  # noqa: F821
    """Plan, measure, decide: the model with an offline plan when TFLM then needs a smaller arena
    (bisection on the host interpreter, scratch buffers included) and every output is
    bit-identical on ``calibration`` (or seeded noise); else ``model_bytes`` unchanged.

    ``own`` is :func:`edgepack.tflm.find_arena` of ``model_bytes`` (TFLM's own plan).

    Example::

        r = apply_plan(model_bytes, find_arena(model_bytes), calibration)
        r.kept, r.arena.recommended_bytes, r.report()["reason"]
    """
    from .arena import arena_parts

    t0 = time.perf_counter()

    def result(kept: bool, reason: str, **kw) -> PlanResult:
        model, arena = (kw.pop("model"), kw.pop("arena")) if kept else (model_bytes, own)
        return PlanResult(model=model, arena=arena, kept=kept, reason=reason, seconds=time.perf_counter() - t0, **kw)

    if read_offline_plan(model_bytes) is not None:
        return result(False, "the model already carries an OfflineMemoryAllocation plan: left as given")
    graph = read_graph(model_bytes)
    if graph is None:
        return result(False, "several subgraphs (control flow), no ops, or a tensor edgepack cannot size "
                             "(dtype, dynamic shape): TFLM's own planner is used")
    parts = arena_parts(model_bytes, own.recommended_bytes)
    own_fig = {"bytes": own.min_bytes, **parts, "recommended": own.recommended_bytes}
    cands = plans(graph)
    if not cands:
        return result(False, "no non-constant tensor to plan", own=own_fig)
    bound = {"bytes": cands[0].bound_bytes, "op": max(0, cands[0].bound_op - 1)}
    bound["name"] = _op_name(model_bytes, bound["op"])
    plan_fig = {"peak_bytes": cands[0].peak_bytes, "method": cands[0].method, "candidates": len(cands)}
    fig = {"own": own_fig, "bound": bound, "plan": plan_fig}
    if cands[0].peak_bytes >= parts["head"]:
        why = "already at" if parts["head"] <= bound["bytes"] else "below the best plan found, above"
        return result(False, f"TFLM's own plan ({parts['head']} B of activations) is {why} the live-set "
                             f"bound ({bound['bytes']} B): model unchanged", **fig)
    best = None
    for cand in [c for c in cands if c.peak_bytes < parts["head"]][:MAX_MEASURED]:
        if best is not None and best[1].min_bytes <= cand.peak_bytes + best[2]["tail"]:
            break  # a higher peak cannot beat what was measured
        got = _measure(model_bytes, cand, graph, parts["tail"])
        if got is not None and (best is None or got[1].min_bytes < best[1].min_bytes):
            best, chosen = got, cand
    if best is None:
        return result(False, "TFLM refused every offline plan: model unchanged", **fig)
    planned, arena, pparts = best
    fig["planned"] = {"bytes": arena.min_bytes, **pparts}
    fig["plan"] = {**plan_fig, "peak_bytes": chosen.peak_bytes, "method": chosen.method,
                   "model_bytes_added": len(planned) - len(model_bytes)}
    if arena.min_bytes >= own.min_bytes:
        return result(False, f"with the plan TFLM needs {arena.min_bytes} B vs {own.min_bytes} B with its own "
                             "(scratch buffers are planned on top): model unchanged", **fig)
    samples = _samples(model_bytes, own.recommended_bytes, graph, calibration)
    ref = _outputs(model_bytes, own.min_bytes, samples, graph.n_outputs)
    if not _same(ref, _outputs(planned, arena.min_bytes, samples, graph.n_outputs)):
        return result(False, "outputs differ with the plan (report the model to edgepack): model unchanged",
                      samples=len(samples), **fig)
    return result(True, f"TFLM needs {arena.min_bytes} B with the plan vs {own.min_bytes} B with its own; outputs "
                        f"bit-identical on {len(samples)} samples", model=planned, arena=arena,
                  samples=len(samples), **fig)
