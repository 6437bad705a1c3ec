"""The per-layer table of a build: params, MACs, weight bytes, output quantization and the
quantization error each op adds (from :func:`edgepack.quantize.debug.layer_errors`).

Example::

    rows = layer_table(read_tflite(data), layer_errors(model, quant, calibration))
    rows[0]["rmse_steps"]        # RMS quantization error of op 0's output, in steps
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..convert.flatbuffer import TfliteInfo, layer_of

_PREFIX = "NumericVerify/"


def _match(name: str, errors: dict[str, dict]) -> Optional[dict]:
    """The debugger's entry for a tensor: its names are 'NumericVerify/<tensor name><suffix>'."""
    hits = [k for k in errors if k.startswith(_PREFIX + name)]
    return errors[min(hits, key=len)] if hits else None


def layer_table(info: TfliteInfo, errors: Optional[dict[str, dict]] = None) -> list[dict]:
    """One row per op, in execution order."""
    rows = []
    for op in info.ops:
        consts = [info.tensors[i] for i in op.inputs if i >= 0 and info.tensors[i].is_constant]
        out = info.tensors[op.outputs[0]] if op.outputs and op.outputs[0] >= 0 else None
        named = [t.name for t in consts if "/" in t.name] + ([out.name] if out else [])
        layer = next((layer_of(n) for n in named if "/" in n), layer_of(out.name) if out else "")
        row = {"index": op.index, "op": op.op, "layer": layer,
               "params": int(sum(int(np.prod(t.shape)) if t.shape else 1 for t in consts)),
               "weight_bytes": int(sum(t.nbytes for t in consts)), "macs": info.op_macs(op),
               "dtype": out.dtype if out else "", "scale": out.scale[0] if out and out.scale else None,
               "zero_point": out.zero_point[0] if out and out.zero_point else None}
        err = _match(out.name, errors) if (out is not None and errors) else None
        if err is not None and "mean_squared_error" in err:
            steps = (float(np.sqrt(err["mean_squared_error"]) / row["scale"]) if row["scale"] else None)
            row.update(rmse_steps=None if steps is None else round(steps, 4), max_abs_error=err.get("max_abs_error"),
                       mean_error=err.get("mean_error"))
        rows.append(row)
    return rows
