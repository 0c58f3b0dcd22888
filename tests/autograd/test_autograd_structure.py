"""How the engine's modules depend on each other: one way, without import circles."""

import ast
import pathlib

import numpy as np

import chainrule as cr
import chainrule.autograd as autograd
import chainrule.nn.functional as F
from chainrule.autograd import ops

PACKAGE = pathlib.Path(autograd.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    """The chainrule.autograd modules a source file imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["chainrule", "autograd"] and len(parts) > 2:
                if (PACKAGE / f"{parts[2]}.py").exists():
                    found.add(parts[2])
    return found


def test_the_modules_of_the_engine_import_each_other_one_way():
    graph = {p.stem: _imports(p) - {p.stem} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    # Depth-first search for a cycle, without recursion.
    state = {}
    for start in graph:
        stack = [(start, iter(sorted(graph[start])))]
        state[start] = "open"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = "done"
                stack.pop()
            elif state.get(child) == "open":
                path = [n for n, _ in stack]
                raise AssertionError(f"import circle: {' -> '.join(path[path.index(child) :])}")
            elif child not in state:
                state[child] = "open"
                stack.append((child, iter(sorted(graph[child]))))
    # The Tensor and Function sit below the primitives; the backward pass and forward
    # mode above them (their rules run on Tensors, recorded as primitives); the
    # transformations above both.
    assert graph["tensor"] == set()
    assert graph["function"] == {"tensor"}
    assert graph["ops"] == {"function", "tensor"}
    assert graph["backward"] == {"array_ops", "function", "tensor"}
    assert "backward" not in graph["forward"] and "forward" not in graph["backward"]
    assert {"backward", "forward"} <= graph["transforms"]


def test_one_relu_function_for_tensors_layers_and_modules():
    assert F.ReLU is ops.ReLU
    x = cr.Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    for y in (x.relu(), F.relu(x), cr.nn.ReLU()(x)):
        assert y.grad_fn is ops.ReLU
        y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 3.0])


def test_the_tensor_has_its_operators_once_the_package_is_imported():
    t = cr.Tensor(2.0, requires_grad=True)
    assert (t * t + 1).item() == 5.0
    assert cr.Tensor.__add__ is ops.Add.apply2  # `Function.apply` for two arguments
    assert cr.Tensor.__radd__.__qualname__ == "Tensor.__radd__"
    assert isinstance(cr.Tensor.T, property)
