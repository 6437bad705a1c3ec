"""One table of layer rules: how each tf_keras layer type carries, loses and scores channels.

Torch-Pruning keeps one pruner per layer type in a table; this is edgepack's. A
:class:`LayerRule` answers, for its layer type:

* :meth:`~LayerRule.trace`: how channels flow through the layer while :func:`.graph.build_graph`
  traces the model. A *producer* (Conv, Dense, SeparableConv) opens a group of its
  ``filters``/``units``; a *channel-wise* layer (BatchNormalization, DepthwiseConv) loses the
  channels of the group feeding it; a *pass-through* layer (activations, pooling, padding, Dropout)
  hands its input layout on; a *merge* (Add, Multiply, ...) couples the groups of its inputs
  (pruned together); ``Concatenate`` lays them side by side; ``Flatten`` repeats them per spatial
  position; ``TFOpLambda`` (a translated Keras 3 operation) follows its function's table.
* :meth:`~LayerRule.slice`: how :func:`.surgery.prune_model` slices its weights on the kept input and
  output channels.
* :meth:`~LayerRule.scored_kernel`: which weight scores a producer's output filters (``l1``/``l2``).

A layer type missing from :data:`RULES` gets :data:`UNSUPPORTED`: the groups feeding it are blocked
("channel pruning does not support this layer type") and its output opens a blocked group. A new
layer type is one entry in :data:`RULES`, or in a copy of it given to ``build_graph``::

    rules = {**RULES, "MyScale": PassThrough(after_flatten=True)}   # element-wise, keeps channels
    g = build_graph(model, rules)
    assert rule_for("MyScale", rules).role == "pass-through"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .groups import Graph, Layout, Node, is_ref


def unsupported(g: Graph, n: Node, layer, ins: list[Layout], why: str) -> Layout:
    """Block the groups feeding ``n`` (``why`` kept for the report); its output is a new blocked group."""
    for lay in ins:
        g.block(lay, f"feeds layer '{n.name}' ({n.cls}): {why}")
    size = 0
    if layer is not None:
        try:
            shape = layer.output_shape
        except AttributeError:  # a shared layer called on different shapes: its first call's (same channels)
            shape = layer.get_output_shape_at(0)
        size = int(shape[-1] or 0) if isinstance(shape, tuple) and shape else 0
    return Layout([(g.new_group(size, f"output of unsupported layer '{n.name}' ({n.cls})"), size)])


class LayerRule:
    """How one layer type carries, loses and scores channels; this base refuses the layer type.

    ``one_input``: the layer takes exactly one tensor (one with several is refused before
    :meth:`trace`: "layer has several inputs").

    Example::

        lay = RULES["ReLU"].trace(g, node, layer, [g.out_layout[node.inputs[0]]])
    """

    role = "unsupported"
    one_input = True

    def trace(self, g: Graph, n: Node, layer, ins: list[Layout]) -> Layout:
        """The layout of the layer's output from its inputs' (recording groups, blocks, couplings in ``g``)."""
        return unsupported(g, n, layer, ins, "channel pruning does not support this layer type")

    def slice(self, weights: list[np.ndarray], in_idx, out_idx, dm: int = 1) -> list[np.ndarray]:
        """The weights kept for input channels ``in_idx`` and output channels ``out_idx`` (None: all kept);
        ``dm`` is the layer's depth multiplier. This base: weights not tied to channels, kept whole."""
        return list(weights)

    def scored_kernel(self, weights: list[np.ndarray]) -> np.ndarray:
        """The weight whose last axis are the output filters, for norm importance (producers only)."""
        raise TypeError(f"a {self.role} layer has no output filters to score")


UNSUPPORTED = LayerRule()


class Input(LayerRule):
    """The model input: its channels are a blocked group (an input is never pruned)."""

    role = "input"
    one_input = False

    def trace(self, g, n, layer, ins):
        size = int(n.config["batch_input_shape"][-1] or 0)
        return Layout([(g.new_group(size, "channels of the model input"), size)])


def _join(g: Graph, n: Node, lay: Layout, members: str) -> None:
    """Record ``lay`` as ``n``'s input and ``n`` among the ``members`` of every group in it."""
    g.in_layout[n.name] = lay
    for gid, _ in lay.segments:
        names = getattr(g.group(gid), members)
        if n.name not in names:
            names.append(n.name)


def _consume(g: Graph, n: Node, lay: Layout) -> None:
    """``n`` reads ``lay`` through its weights: it loses the input rows of any channel pruned there."""
    _join(g, n, lay, "consumers")
    off = 0
    for part in lay.parts or (lay,):  # a flattened feature map's carrier is the layer before its Flatten
        if not part.flat:
            for k, (gid, size) in enumerate(part.segments):
                g.add_carrier(gid, n.inputs[0], off + sum(s for _, s in part.segments[:k]))
        off += part.width


@dataclass(frozen=True)
class Producer(LayerRule):
    """Conv and Dense: consume their input's channels, open a group of ``config[width_key]`` channels.

    Kernel ``[..., in, out]`` and bias ``[out]``; ``after_flatten``: may read a flattened feature map.
    """

    width_key: str = "filters"
    after_flatten: bool = False
    role = "producer"
    kernel = 0  # the weight whose last axis are the output filters (the bias follows it)

    def trace(self, g, n, layer, ins):
        c, lay = n.config, ins[0]
        if c.get("groups", 1) != 1:
            return unsupported(g, n, layer, [lay], "grouped convolution")
        if c.get("data_format", "channels_last") != "channels_last":
            return unsupported(g, n, layer, [lay], "channels_first data format")
        if lay.flat and not self.after_flatten:
            return unsupported(g, n, layer, [lay], "convolution after Flatten")
        _consume(g, n, lay)
        size = int(c[self.width_key])
        gid = g.new_group(size)
        g.groups[gid].producers.append(n.name)
        g.produces[n.name] = gid
        if c.get("activation") == "softmax":
            g.groups[gid].blocked = f"layer '{n.name}' applies softmax across its channels"
        return Layout([(gid, size)])

    def slice(self, weights, in_idx, out_idx, dm=1):
        w = list(weights)
        if in_idx is not None:
            self._slice_in(w, in_idx, dm)
        if out_idx is not None:
            k = self.kernel
            w[k] = np.take(w[k], out_idx, axis=-1)
            if len(w) > k + 1:
                w[k + 1] = w[k + 1][out_idx]
        return w

    def _slice_in(self, w: list[np.ndarray], in_idx, dm: int) -> None:
        w[0] = np.take(w[0], in_idx, axis=-2)

    def scored_kernel(self, weights):
        return weights[self.kernel]


@dataclass(frozen=True)
class SeparableProducer(Producer):
    """SeparableConv: a depthwise kernel ``[..., in, dm]``, a pointwise kernel ``[1.., in * dm, out]``, bias."""

    kernel = 1

    def _slice_in(self, w, in_idx, dm):
        w[0] = np.take(w[0], in_idx, axis=-2)
        rows = (np.asarray(in_idx)[:, None] * dm + np.arange(dm)[None, :]).ravel()
        w[1] = np.take(w[1], rows, axis=-2)


def _channelwise(g: Graph, n: Node, lay: Layout) -> Layout:
    """``n`` works per channel: it joins the group(s) feeding it and its output keeps their layout."""
    _join(g, n, lay, "channelwise")
    return lay


class Depthwise(LayerRule):
    """DepthwiseConv (``depth_multiplier`` 1): kernel ``[..., ch, 1]`` and bias ``[ch]`` lose the group's channels."""

    role = "channel-wise"

    def trace(self, g, n, layer, ins):
        lay = ins[0]
        if int(n.config.get("depth_multiplier", 1)) != 1:
            return unsupported(g, n, layer, [lay], "depth_multiplier > 1")
        if lay.flat:
            return unsupported(g, n, layer, [lay], "depthwise layer after Flatten")
        return _channelwise(g, n, lay)

    def slice(self, weights, in_idx, out_idx, dm=1):
        w = list(weights)
        if in_idx is not None:
            w[0] = np.take(w[0], in_idx, axis=-2)
            if len(w) > 1:
                w[1] = w[1][in_idx]
        return w


class BatchNorm(LayerRule):
    """BatchNormalization over the channel axis: gamma, beta, moving mean and variance lose the channels."""

    role = "channel-wise"

    def trace(self, g, n, layer, ins):
        axis = n.config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if axis not in (-1, len(layer.input_shape) - 1):
            return unsupported(g, n, layer, ins, "normalizes an axis other than the channels")
        return _channelwise(g, n, ins[0])

    def slice(self, weights, in_idx, out_idx, dm=1):
        return [x[in_idx] for x in weights] if in_idx is not None else list(weights)


@dataclass(frozen=True)
class PassThrough(LayerRule):
    """No weights, channels unchanged (activations, Dropout, pooling, padding, upsampling).

    ``after_flatten``: also valid on a flattened feature map (element-wise layers); spatial layers
    there are refused ("spatial layer after Flatten").
    """

    after_flatten: bool = False
    role = "pass-through"

    def trace(self, g, n, layer, ins):
        if ins[0].flat and not self.after_flatten:
            return unsupported(g, n, layer, ins, "spatial layer after Flatten")
        return ins[0]


@dataclass(frozen=True)
class Activation(PassThrough):
    """``Activation``: element-wise, except softmax, which mixes channels."""

    after_flatten: bool = True

    def trace(self, g, n, layer, ins):
        if n.config.get("activation") == "softmax":
            return unsupported(g, n, layer, ins, "softmax mixes channels")
        return super().trace(g, n, layer, ins)


class Flatten(LayerRule):
    """Flatten: each channel group repeats once per spatial position (consumers slice rows per position)."""

    role = "flatten"

    def trace(self, g, n, layer, ins):
        lay = ins[0]
        if lay.flat:
            return lay
        shape = layer.input_shape
        spatial = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        if spatial == 1:  # e.g. after pooling to 1x1: channels stay channels
            return Layout(list(lay.segments))
        off = 0
        for gid, size in lay.segments:
            g.add_carrier(gid, n.inputs[0], off)
            off += size
        return Layout(list(lay.segments), spatial=spatial, flat=True)


def merge(g: Graph, n: Node, layer, ins: list[Layout]) -> Layout:
    """Couple the groups of same-layout inputs (an element-wise merge): they are pruned together."""
    if any(lay.parts for lay in ins):
        return unsupported(g, n, layer, ins, "an input concatenates flattened tensors")
    first = ins[0]
    sizes = [s for _, s in first.segments]
    for lay in ins[1:]:
        if [s for _, s in lay.segments] != sizes or lay.spatial != first.spatial or lay.flat != first.flat:
            return unsupported(g, n, layer, ins, "inputs have different channel layouts")
    for lay in ins[1:]:
        for (a, _), (b, _) in zip(first.segments, lay.segments):
            g.union(a, b)
    return Layout(list(first.segments), first.spatial, first.flat)


class Merge(LayerRule):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: channel ``i`` of every input meets channel ``i``."""

    role = "merge"
    one_input = False

    def trace(self, g, n, layer, ins):
        return merge(g, n, layer, ins)


class Concatenate(LayerRule):
    """Concatenate on the channel axis lays the inputs' groups side by side; on a spatial axis it couples them.

    Flattened feature maps concatenated with other vectors (two branches of a several-input model meeting
    before a Dense) keep each input's layout as a part: the consumer loses each part's pruned positions."""

    role = "concatenate"
    one_input = False

    def trace(self, g, n, layer, ins):
        axis = n.config.get("axis", -1)
        rank = len(layer.output_shape)
        if any(lay.flat for lay in ins) and rank > 2:
            return unsupported(g, n, layer, ins, "concatenates flattened tensors")
        segments = [seg for lay in ins for seg in lay.segments]
        if axis in (-1, rank - 1):
            if any(lay.flat for lay in ins):
                return Layout(segments, flat=True, parts=tuple(p for lay in ins for p in (lay.parts or (lay,))))
            return Layout(segments)
        return merge(g, n, layer, ins)  # concatenation along a spatial axis couples the channels


# tf_keras TFOpLambda functions (translated Keras 3 operations): element-wise, so channel-preserving with a
# scalar constant; two tensors through a binary one couple their channels like a merge layer.
OP_UNARY = frozenset({"nn.relu", "nn.relu6", "math.sigmoid", "nn.silu", "nn.gelu", "math.tanh", "math.abs",
                      "math.negative", "nn.leaky_relu", "nn.elu", "math.softplus"})
OP_BINARY = frozenset({"math.add", "__operators__.add", "math.subtract", "math.multiply", "math.truediv",
                       "math.maximum", "math.minimum"})


@dataclass(frozen=True)
class OpLambda(LayerRule):
    """A TFOpLambda (one TensorFlow function): a ``unary`` function, or a ``binary`` one with a scalar,
    passes channels through; a ``binary`` one of two tensors couples them; any other is refused."""

    unary: frozenset = OP_UNARY
    binary: frozenset = OP_BINARY
    role = "operation"
    one_input = False

    def trace(self, g, n, layer, ins):
        fn = n.config.get("function")
        consts = [v for v in (n.call or {}).values() if not is_ref(v) and v is not None]
        if len(ins) == 1 and (fn in self.unary or fn in self.binary) and all(
                isinstance(v, (int, float)) for v in consts):
            return ins[0]
        if len(ins) == 2 and fn in self.binary:
            return merge(g, n, layer, ins)
        return unsupported(g, n, layer, ins, f"channel pruning does not support the operation '{fn}' here")


_CONV = Producer("filters")
_SEPARABLE = SeparableProducer("filters")
_DEPTHWISE = Depthwise()
_MERGE = Merge()
_ELEMENTWISE = PassThrough(after_flatten=True)  # also on a flattened feature map
_SPATIAL = PassThrough(after_flatten=False)     # refused after Flatten

#: tf_keras layer class name -> its rule. Anything else: :data:`UNSUPPORTED`.
RULES: dict[str, LayerRule] = {
    "InputLayer": Input(),
    # producers
    "Conv1D": _CONV, "Conv2D": _CONV, "Conv3D": _CONV,
    "Dense": Producer("units", after_flatten=True),
    "SeparableConv1D": _SEPARABLE, "SeparableConv2D": _SEPARABLE,
    # channel-wise
    "BatchNormalization": BatchNorm(),
    "DepthwiseConv1D": _DEPTHWISE, "DepthwiseConv2D": _DEPTHWISE,
    # pass-through, element-wise
    "Activation": Activation(),
    "ReLU": _ELEMENTWISE, "LeakyReLU": _ELEMENTWISE, "ELU": _ELEMENTWISE, "Dropout": _ELEMENTWISE,
    # pass-through, refused after Flatten (the noise layers too, as so far)
    "SpatialDropout1D": _SPATIAL, "SpatialDropout2D": _SPATIAL, "GaussianNoise": _SPATIAL,
    "GaussianDropout": _SPATIAL, "AlphaDropout": _SPATIAL, "ActivityRegularization": _SPATIAL,
    "MaxPooling1D": _SPATIAL, "MaxPooling2D": _SPATIAL, "MaxPooling3D": _SPATIAL,
    "AveragePooling1D": _SPATIAL, "AveragePooling2D": _SPATIAL, "AveragePooling3D": _SPATIAL,
    "GlobalAveragePooling1D": _SPATIAL, "GlobalAveragePooling2D": _SPATIAL, "GlobalAveragePooling3D": _SPATIAL,
    "GlobalMaxPooling1D": _SPATIAL, "GlobalMaxPooling2D": _SPATIAL, "GlobalMaxPooling3D": _SPATIAL,
    "ZeroPadding1D": _SPATIAL, "ZeroPadding2D": _SPATIAL, "ZeroPadding3D": _SPATIAL,
    "Cropping1D": _SPATIAL, "Cropping2D": _SPATIAL, "Cropping3D": _SPATIAL,
    "UpSampling1D": _SPATIAL, "UpSampling2D": _SPATIAL, "UpSampling3D": _SPATIAL,
    # layout
    "Flatten": Flatten(),
    # coupled
    "Add": _MERGE, "Subtract": _MERGE, "Multiply": _MERGE, "Average": _MERGE, "Maximum": _MERGE,
    "Minimum": _MERGE,
    "Concatenate": Concatenate(),
    # translated Keras 3 operations
    "TFOpLambda": OpLambda(),
}


def rule_for(cls: str, rules: Optional[dict[str, LayerRule]] = None) -> LayerRule:
    """The rule of a layer class name in ``rules`` (default :data:`RULES`); :data:`UNSUPPORTED` when absent.

    Example: ``rule_for("Conv2D").role`` -> ``'producer'``; ``rule_for("LSTM") is UNSUPPORTED``.
    """
    return (RULES if rules is None else rules).get(cls, UNSUPPORTED)
