// Tables with class "sortable": a click on a column's heading sorts the rows by it
// (numbers by the cell's data-sort value, text otherwise); a second click reverses.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    const heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, column) {
      th.tabIndex = 0;
      function sort() {
        const down = th.getAttribute("aria-sort") !== "descending";
        heads.forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", down ? "descending" : "ascending");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        const key = function (row) {
          const cell = row.cells[column];
          const v = cell.getAttribute("data-sort");
          return v === null ? cell.textContent.trim() : parseFloat(v);
        };
        rows.sort(function (a, b) {
          const x = key(a), y = key(b);
          const order = typeof x === "number" && typeof y === "number"
            ? (isNaN(x) ? -Infinity : x) - (isNaN(y) ? -Infinity : y)
            : String(x).localeCompare(String(y), undefined, { numeric: true });
          return down ? -order : order;
        });
        rows.forEach((r) => body.appendChild(r));
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sort(); }
      });
    });
  });
});
