"""Second-order methods with chainrule's transformations: a robot arm and Rosenbrock.

1. Inverse kinematics of a planar arm with three links. Its forward kinematics maps
   the joint angles q to the position of the gripper::

       p(q) = sum_i  l_i * (cos(q_1 + ... + q_i), sin(q_1 + ... + q_i))

   To reach a target t, Gauss-Newton linearises p around the current angles with its
   Jacobian J = dp/dq (2 x 3, from ``chainrule.jacfwd``: one forward pass per joint)
   and takes the least-squares step ``J dq = t - p(q)``; a small damping (Levenberg-
   Marquardt) keeps the step finite near a singular pose (the arm stretched out).

2. Newton's method on Rosenbrock's banana function ``(1 - x)^2 + 100 (y - x^2)^2``,
   with its gradient and Hessian from ``chainrule.grad`` and ``chainrule.hessian``:
   ``x <- x - H^-1 g``, from the classic start (-1.2, 1) to the minimum (1, 1).

Run::

    python examples/inverse_kinematics.py [--target 1.2 0.9] [--out arm.png]
"""

from __future__ import annotations

import argparse

import numpy as np

import chainrule as cr

LINKS = np.array([1.0, 0.8, 0.5])


def joints(q):
    """Positions (4, 2) of the base, the two elbows and the gripper for angles q (3,):
    each link's direction is the sum of the angles up to it."""
    angle = q[0] * 0
    x = y = angle
    points = [(x, y)]
    for i, length in enumerate(LINKS):
        angle = angle + q[i]
        x = x + length * angle.cos()
        y = y + length * angle.sin()
        points.append((x, y))
    return points


def gripper(q):
    """The forward kinematics p(q): the gripper's position (2,)."""
    x, y = joints(q)[-1]
    return cr.stack([x, y])


def reach(target, q0, damping=1e-6, tol=1e-10, max_steps=50):
    """Gauss-Newton steps from angles q0 until the gripper is within `tol` of target.
    Returns the angles and the distance after each step."""
    q = np.array(q0, dtype=np.float64)
    distances = []
    jacobian = cr.jacfwd(gripper)
    for _ in range(max_steps):
        residual = target - gripper(cr.Tensor(q)).data
        distances.append(float(np.linalg.norm(residual)))
        if distances[-1] < tol:
            break
        J = jacobian(q)  # (2, 3): output shape + input shape
        # Least squares with a little damping: (J^T J + damping I) dq = J^T residual.
        dq = np.linalg.solve(J.T @ J + damping * np.eye(3), J.T @ residual)
        q = q + dq
    return q, distances


def rosenbrock(v):
    x, y = v[0], v[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def newton(f, x0, tol=1e-12, max_steps=50):
    """Newton's method with chainrule's gradient and Hessian; returns the iterates."""
    x = np.array(x0, dtype=np.float64)
    path = [x]
    grad, hess = cr.grad(f), cr.hessian(f)
    for _ in range(max_steps):
        g = grad(x)
        if np.linalg.norm(g) < tol:
            break
        x = x - np.linalg.solve(hess(x), g)
        path.append(x)
    return path


def draw(q, target, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    pts = np.array([[float(a.item()), float(b.item())] for a, b in joints(cr.Tensor(q))])
    ax.plot(pts[:, 0], pts[:, 1], "o-", lw=3, label="arm")
    ax.plot(*target, "r*", ms=14, label="target")
    ax.set_aspect("equal")
    ax.set_xlim(-2.5, 2.5)
    ax.set_ylim(-2.5, 2.5)
    ax.legend(loc="lower left")
    ax.set_title(f"Gauss-Newton with jacfwd: reached in {len(path) - 1} steps")
    return fig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", type=float, nargs=2, default=[1.2, 0.9], metavar=("X", "Y"))
    p.add_argument("--start", type=float, nargs=3, default=[0.3, 0.4, 0.2], metavar="Q")
    p.add_argument("--out", default=None, help="draw the arm's final pose to this PNG")
    args = p.parse_args(argv)
    target = np.array(args.target)
    if np.linalg.norm(target) > LINKS.sum():
        p.error(f"the target {target} is out of reach (the arm is {LINKS.sum():g} long)")

    q, distances = reach(target, args.start)
    print(f"inverse kinematics: target {target}, links {LINKS}")
    for i, d in enumerate(distances):
        print(f"  step {i}: distance to the target {d:.3e}")
    print(f"  joint angles {np.round(q, 6)} (rad), gripper at {gripper(cr.Tensor(q)).data}")

    path = newton(rosenbrock, [-1.2, 1.0])
    print("Newton's method on Rosenbrock's function from (-1.2, 1):")
    for i, x in enumerate(path):
        print(f"  step {i}: x = {x}, f = {rosenbrock(cr.Tensor(x)).item():.3e}")
    if args.out:
        draw(q, target, distances).savefig(args.out, dpi=120, bbox_inches="tight")
        print(f"drawing written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
