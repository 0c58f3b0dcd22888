// The stepping page of a computational graph (written by chainrule's draw_graph).
// At step N the document holds the values and gradients of steps 1..N only: render()
// removes every label and writes those reached, from the encoded data in the head.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  let data = null;
  let step = 0;

  function decode(text) {
    const bytes = Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  // What steps 1..n have reached.
  function reached(n) {
    const st = { fwd: new Set(), back: new Set(), seed: false, all: false, current: null };
    for (let k = 0; k < n; k++) {
      const s = data.steps[k];
      if (s.phase === "forward") st.fwd.add(s.node);
      else if (s.phase === "seed") st.seed = true;
      else if (s.phase === "backward") st.back.add(s.node);
      else if (s.phase === "gradients") st.all = true;
    }
    st.current = n > 0 ? data.steps[n - 1] : null;
    return st;
  }

  function edgeState(st, e) {
    const fromConstant = data.nodes[e.s].kind === "const";
    const value = fromConstant ? e.t !== null && st.fwd.has(e.t) : st.fwd.has(e.s);
    let grad = false;
    if (e.grad !== null && !e.dashed) {
      if (st.all) grad = true;
      else if (e.t === null) grad = st.seed;
      else grad = st.back.has(e.t);
    }
    const atGate = st.current && st.current.phase === "backward" && st.current.node === e.t;
    return { value: value, grad: grad, calc: Boolean(atGate && grad && e.calc) };
  }

  function label(x, y, cls, str) {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", x.toFixed(1));
    t.setAttribute("y", y.toFixed(1));
    t.setAttribute("class", cls);
    t.textContent = str;
    return t;
  }

  function cell(str) {
    const td = document.createElement("td");
    td.textContent = str;
    return td;
  }

  let usesOf = null; // the edges leaving each node, found once

  function render() {
    if (usesOf === null) {
      usesOf = data.nodes.map(() => []);
      data.edges.forEach((e, k) => usesOf[e.s].push(k));
    }
    const st = reached(step);
    const labels = document.getElementById("labels");
    labels.replaceChildren();
    const shown = data.edges.map((e) => edgeState(st, e));
    data.edges.forEach((e, k) => {
      const s = shown[k];
      if (s.value && !e.dashed) labels.append(label(e.lx, e.ly - 10, "value", e.value));
      if (s.calc) labels.append(label(e.lx, e.ly + 20, "grad calc", e.calc));
      else if (s.grad) labels.append(label(e.lx, e.ly + 20, "grad", e.grad));
      document.getElementById("e" + k).classList.toggle("active", s.calc);
    });
    const rows = [];
    data.nodes.forEach((n, i) => {
      const el = document.getElementById("n" + i);
      el.classList.toggle("current", Boolean(st.current) && st.current.node === i);
      el.classList.toggle("computed", st.fwd.has(i));
      const uses = usesOf[i];
      const total = uses.length > 0 && uses.every((k) => shown[k].grad);
      const texts = data.nodeTexts[i];
      if (uses.length > 1 && texts.sum && total) {
        // above the node: its edges' labels sit to its right, above and below
        labels.append(label(n.x, n.y - n.h / 2 - 12, "grad sum", "sum: " + texts.sum));
      }
      if (n.kind === "leaf") {
        const tr = document.createElement("tr");
        const value = st.fwd.has(i) ? data.edges[uses[0]].value : "";
        tr.append(cell(n.label), cell(value), cell(total && texts.grad !== null ? texts.grad : ""));
        rows.push(tr);
      }
    });
    document.querySelector("#leaves tbody").replaceChildren(...rows);
    const count = data.steps.length;
    document.getElementById("counter").textContent = "step " + step + " of " + count;
    const phase = st.current ? st.current.phase : "start";
    const text = st.current ? st.current.text : "the graph before the forward pass";
    document.getElementById("step-text").textContent =
      (phase === "seed" ? "backward" : phase) + ": " + text;
    document.getElementById("first").disabled = step === 0;
    document.getElementById("prev").disabled = step === 0;
    document.getElementById("next").disabled = step === count;
    document.getElementById("last").disabled = step === count;
  }

  // Keep the current node in sight when the graph is wider than the window.
  function follow() {
    const box = document.querySelector(".graph-box");
    const current = document.querySelector(".node.current");
    if (!current || box.scrollWidth <= box.clientWidth) return;
    const b = box.getBoundingClientRect();
    const r = current.getBoundingClientRect();
    if (r.left < b.left || r.right > b.right) {
      box.scrollLeft += r.left - b.left - (b.width - r.width) / 2;
    }
  }

  function go(n, record) {
    step = Math.max(0, Math.min(data.steps.length, n));
    render();
    follow();
    if (record) history.replaceState(null, "", "#step=" + step);
  }

  function fromHash() {
    const m = /step=(\d+|end)/.exec(location.hash);
    if (!m) return 0;
    return m[1] === "end" ? data.steps.length : parseInt(m[1], 10);
  }

  document.addEventListener("DOMContentLoaded", function () {
    data = decode(document.getElementById("graph-data").textContent);
    const count = () => data.steps.length;
    document.getElementById("first").onclick = () => go(0, true);
    document.getElementById("prev").onclick = () => go(step - 1, true);
    document.getElementById("next").onclick = () => go(step + 1, true);
    document.getElementById("last").onclick = () => go(count(), true);
    document.addEventListener("keydown", function (ev) {
      if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
      const moves = { ArrowRight: step + 1, ArrowLeft: step - 1, Home: 0, End: count() };
      if (ev.key in moves) {
        ev.preventDefault();
        go(moves[ev.key], true);
      }
    });
    window.addEventListener("hashchange", () => go(fromHash(), false));
    go(fromHash(), false);
  });
})();
