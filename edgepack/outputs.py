"""Models with several outputs: which one is the classification output (the one labels and the accuracy
gate apply to), and which converted tensor stands for which model output.

The classification output is the Keras model's first output (Keras order) unless the user names
another (``--output NAME``, recipe ``data.output``). A .tflite or SavedModel keeps its converted
output 0 unless one of its signature outputs is named. The TFLite converter does not keep the Keras
order (seen: outputs ``zeta, alpha, mid`` became tensors ``zeta, mid, alpha``), so a converted output
is matched by its signature name, never by position; a model without signature names (``--compact``)
takes the positions read from the converter's own bytes before compaction.

Example::

    choice = OutputChoice(("scores", "box"), "box")
    choice.index                                        # 1: in the model's own order
    choice.position(output_names(tflite_bytes))         # the converted tensor that is "box"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .errors import RecipeError


@dataclass(frozen=True)
class OutputChoice:
    """The model's outputs (names in the model's order) and the classification output among them."""

    names: tuple[str, ...]
    chosen: str

    @property
    def index(self) -> int:
        """The classification output's index in the model's own order (Keras order)."""
        return self.names.index(self.chosen)

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    def position(self, converted: Sequence[str]) -> int:
        """The classification output's index among a converted model's output tensors (``converted``: their
        model output names, :func:`output_names` of the converter's bytes); when it is not named there (a
        batch-1 concrete function names its outputs ``output_0``, ``output_1``, ... in the model's order), its
        index in the model's order."""
        if self.chosen in converted:
            return list(converted).index(self.chosen)
        return self.index if self.index < len(converted) else 0


def build_output_names(build) -> list[str]:
    """The model output each output tensor of a :class:`~edgepack.build.Build` stands for (tensor order;
    ``build.outputs``), ``output<k>`` when unknown."""
    n = len(build.info.outputs)
    return list(build.outputs) if len(build.outputs) == n else [f"output{k}" for k in range(n)]


def output_names(tflite: bytes) -> list[str]:
    """The model output each output tensor of ``tflite`` stands for, in tensor order: its name in the
    (first) signature def, else the tensor's own name (``--compact``, hand-made files)."""
    from .convert.flatbuffer import read_tflite, tflite_schema

    model = tflite_schema().Model.GetRootAs(bytes(tflite), 0)
    info = read_tflite(tflite)
    if model.SignatureDefsLength():
        sig = model.SignatureDefs(0)
        by_tensor = {int(sig.Outputs(j).TensorIndex()): sig.Outputs(j).Name().decode(errors="replace")
                     for j in range(sig.OutputsLength())}
        if sorted(by_tensor) == sorted(info.outputs):
            return [by_tensor[t] for t in info.outputs]
    return [info.tensors[t].name for t in info.outputs]


def choose(names: Sequence[str], wanted: Optional[str]) -> OutputChoice:
    """The classification output: ``wanted`` (a model output name), else the first.

    An unknown name is refused in one line naming the outputs there are."""
    names = tuple(str(n) for n in names)
    if wanted is None:
        return OutputChoice(names, names[0])
    if wanted not in names:
        raise RecipeError(f"output '{wanted}' (--output / recipe data.output) is not an output of the model; its "
                          f"outputs: {', '.join(names)}")
    return OutputChoice(names, wanted)


def check_several(choice: OutputChoice, steps, quant_mode: str) -> None:
    """Compression steps and ``quantize: auto``'s per-op search measure one output: refused, in one line,
    for a model with several outputs."""
    if not choice.several:
        return
    if steps:
        names = ", ".join(p.name for p in steps)
        raise RecipeError(f"recipe steps ({names}) take single-output models, and this one has {len(choice.names)} "
                          f"outputs ({', '.join(choice.names)}); package it without them (post-training "
                          "quantization and quantize rules work)")
    if quant_mode == "auto":
        raise RecipeError(f"--quantize auto takes single-output models, and this one has {len(choice.names)} outputs "
                          f"({', '.join(choice.names)}); use --quantize int8 or int16x8, or quantize rules")
