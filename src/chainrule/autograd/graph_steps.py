"""The forward and backward passes of a `GraphView` as a sequence of steps, as the
lecture tells them: values flow forward node by node, then gradients flow back gate by
gate.

Step 0 shows the graph alone. Each forward step computes one node (the nodes in
topological order), putting its value on the edges that leave it. The backward pass
starts at the output (its gradient with respect to itself is 1), then visits the
operations in reverse order: each multiplies the gradient of its output (upstream) by
its local gradient for each input and sends the product back along that input's edge.
A value used several times (a fork, the copy gate) gets the sum of its edges'
gradients once the last of them has arrived.

The steps hold text only (numbers formatted as the drawings write them), so that the
page shows exactly these strings.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd.graph_view import GraphView, number, summary

__all__ = ["edge_texts", "node_texts", "steps"]


def _scalar(a) -> bool:
    return a is not None and np.asarray(a).size == 1


def _local(upstream, product) -> str | None:
    """The local gradient of a scalar edge: product / upstream (None where that is 0/0)."""
    if not (_scalar(upstream) and _scalar(product)):
        return None
    up = float(np.asarray(upstream).reshape(()))
    if up == 0.0 or not np.isfinite(up):
        return None
    return number(float(np.asarray(product).reshape(())) / up)


def edge_texts(view: GraphView) -> list[dict]:
    """For each edge: ``value``, ``grad`` (or None) and, for an edge into an operation
    whose upstream gradient is known, ``calc``: ``upstream × local = product``."""
    out = []
    for e in view.edges:
        item = {"value": summary(e.value), "grad": None if e.grad is None else summary(e.grad)}
        if e.target is not None and e.grad is not None and not e.dashed:
            up = view.nodes[e.target].upstream
            local = _local(up, e.grad)
            if local is not None:
                item["calc"] = f"{summary(up)} \u00d7 {local} = {item['grad']}"
            elif _scalar(up):  # upstream 0: the local gradient is not recorded
                item["calc"] = f"{summary(up)} \u00d7 local = {item['grad']}"
            else:  # arrays: the vector-Jacobian product, named in the step's text
                item["calc"] = item["grad"]
        out.append(item)
    return out


def node_texts(view: GraphView) -> list[dict]:
    """For each node: ``grad`` (its total gradient, or None) and, at a fork whose edges'
    gradients are all known, ``sum``: the edges' gradients and their total."""
    out = []
    for i, node in enumerate(view.nodes):
        item = {"grad": None if node.grad is None else summary(node.grad), "sum": None}
        uses = view.uses_of(i)
        if len(uses) > 1 and node.grad is not None and all(e.grad is not None for e in uses):
            item["sum"] = " + ".join(summary(e.grad) for e in uses) + f" = {item['grad']}"
        out.append(item)
    return out


def _forward_text(view: GraphView, i: int) -> str:
    node = view.nodes[i]
    value = summary(node.value)
    if node.kind == "leaf":
        return f"input {node.label} = {value}"
    if node.kind == "const":
        return f"constant {value}"
    args = ", ".join(summary(e.value) for e in view.inputs_of(i))
    return f"gate {node.label}: {args} \u2192 {value}"


def _backward_text(view: GraphView, i: int, texts: list[dict], edges_into: dict) -> str:
    node = view.nodes[i]
    up = "unknown" if node.upstream is None else summary(node.upstream)
    parts = [
        f"{view.nodes[e.source].label}: {texts[k]['calc']}"
        for k, e in edges_into[i]
        if not e.dashed and texts[k].get("calc") is not None
    ]
    sent = "; ".join(parts) if parts else "no input needs a gradient"
    return f"gate {node.label}: upstream {up}; upstream \u00d7 local = gradient sent back: {sent}"


def steps(view: GraphView) -> list[dict]:
    """The steps after step 0: ``{"phase": "forward", "node": i, "text": ...}`` for each
    node, then ``{"phase": "seed"}`` and ``{"phase": "backward", "node": i}`` for each
    operation whose gradients were kept (``backward(retain_graph=True)``); after a plain
    backward, one ``{"phase": "gradients"}`` step with the gradients that were kept."""
    out = []
    for i, node in enumerate(view.nodes):
        if node.kind != "const":
            out.append({"phase": "forward", "node": i, "text": _forward_text(view, i)})
    output_edge = next(k for k, e in enumerate(view.edges) if e.target is None)
    texts = edge_texts(view)
    if view.edge_grads_kept and view.edges[output_edge].grad is not None:
        seed = texts[output_edge]["grad"]
        out.append(
            {"phase": "seed", "node": view.output,
             "text": f"backward: the gradient of {view.output_name} with respect to "
                     f"itself is {seed}"}
        )  # fmt: skip
        edges_into: dict[int, list] = {}
        for k, e in enumerate(view.edges):
            edges_into.setdefault(e.target, []).append((k, e))
        for i in reversed(range(len(view.nodes))):
            if view.nodes[i].kind == "op":
                text = _backward_text(view, i, texts, edges_into)
                out.append({"phase": "backward", "node": i, "text": text})
    elif any(t["grad"] is not None for t in texts):
        out.append(
            {"phase": "gradients", "node": view.output,
             "text": "the gradients the graph kept (a backward pass with retain_graph=True "
                     "keeps every edge's, to step through each gate)"}
        )  # fmt: skip
    return out
