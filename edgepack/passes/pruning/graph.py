"""Channel dependency groups of a tf_keras model (the idea of Torch-Pruning's DepGraph).

Every tensor's last axis is described as a list of *segments*, each a whole
channel group (:mod:`.groups`). The model's layer calls are walked in
topological order and each layer's type rule (:mod:`.rules`) says how its
output's segments follow from its inputs': a producer (Conv, Dense,
SeparableConv) opens a group, channel-wise and pass-through layers keep it,
``Add``/``Multiply``/... couple groups, ``Concatenate`` lays them side by side,
``Flatten`` repeats them per spatial position. A group that reaches a model
output, the model input, a shared layer, or a layer type the table does not know
is *blocked*, with the reason kept for the report.

Example::

    g = build_graph(model)
    for grp in g.prunable():
        print(grp.producers, grp.size)
    g = build_graph(model, {**rules.RULES, "MyScale": rules.PassThrough(after_flatten=True)})  # one more type
"""

from __future__ import annotations

from typing import Optional

from .groups import Graph, Group, Layout, Node, is_ref
from .rules import LayerRule, rule_for, unsupported

__all__ = ["Graph", "Group", "Layout", "Node", "build_graph"]


def _call(cls: str, refs) -> tuple[list[str], Optional[dict], bool]:
    """One call of a layer (an inbound node): its input layer names, a TFOpLambda's call arguments, and
    whether it reads a tensor other than a layer's first call's only output."""
    call = None
    if cls == "TFOpLambda" and refs and isinstance(refs[0], str):  # one entry, tensors in kwargs
        call = dict(refs[3]) if len(refs) > 3 else {}
        if refs[0] == "_CONSTANT_VALUE":
            call["_first"] = refs[2]
        refs = ([refs] if refs[0] != "_CONSTANT_VALUE" else []) + [v for v in call.values() if is_ref(v)]
    names = [r[0] for r in refs] if isinstance(refs, list) else []
    bad_ref = any(isinstance(r, list) and (r[1] != 0 or r[2] != 0) for r in refs)
    return names, call, bad_ref


def _nodes(model) -> tuple[list[Node], list[str]]:
    """Layer calls in topological order and the names of the output layers."""
    cfg = model.get_config()
    entries = cfg["layers"]
    nodes: list[Node] = []
    if "inbound_nodes" not in (entries[0] if entries else {}):  # Sequential
        prev = None
        if not entries or entries[0]["class_name"] != "InputLayer":
            nodes.append(Node("__input__", "InputLayer", {"batch_input_shape": model.input_shape}, []))
            prev = "__input__"
        for e in entries:
            nodes.append(Node(e["config"]["name"], e["class_name"], e["config"], [prev] if prev else []))
            prev = e["config"]["name"]
        return nodes, [prev]
    for e in entries:
        inbound = e.get("inbound_nodes") or []
        calls = [_call(e["class_name"], node) for node in inbound]
        names, call, bad_ref = calls[0] if calls else ([], None, False)
        nodes.append(Node(e["name"], e["class_name"], e["config"], names, shared=len(inbound) > 1 or bad_ref,
                          call=call, other_inputs=[i for c in calls[1:] for i in c[0]]))
    return nodes, [o[0] for o in cfg["output_layers"]]


def build_graph(model, rules: Optional[dict[str, LayerRule]] = None) -> Graph:
    """Trace ``model`` (Sequential or Functional tf_keras) into channel groups, each layer by its rule in
    ``rules`` (default :data:`.rules.RULES`); the graph keeps the rule of every layer for surgery and importance."""
    g = Graph()
    nodes, outputs = _nodes(model)
    g.nodes = nodes
    for n in nodes:
        layer = None if n.is_input else model.get_layer(n.name)
        rule = g.layer_rules[n.name] = rule_for(n.cls, rules)
        ins = [g.out_layout[i] for i in n.inputs]
        if n.shared:
            out = unsupported(g, n, layer, ins, "layer is shared or has several outputs")
        elif len(ins) != 1 and rule.one_input:
            out = unsupported(g, n, layer, ins, "layer has several inputs")
        else:
            out = rule.trace(g, n, layer, ins)
        g.out_layout[n.name] = out
    for n in nodes:  # a shared layer's later calls: their inputs (traced by now) keep their channels too
        for name in n.other_inputs:
            g.block(g.out_layout[name], f"feeds layer '{n.name}' ({n.cls}): layer is shared or has several outputs")
    for name in outputs:
        g.block(g.out_layout[name], f"reaches the model output '{name}' (output layers are never pruned)")
    return g
