// Sorting and filtering of the leaderboard table. Reads data attributes and text, never writes HTML.
"use strict";

(function () {
  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function cellKey(row, column, kind) {
    var cell = row.cells[column];
    var raw = cell ? cell.getAttribute("data-value") : "";
    if (raw === null || raw === "") return null; // missing values always sort last
    if (kind === "number") {
      var n = Number(raw);
      return isNaN(n) ? null : n;
    }
    return raw.toLowerCase();
  }

  function sortBy(table, column, direction) {
    var body = table.tBodies[0];
    var header = table.tHead.rows[0].cells[column];
    var kind = header.getAttribute("data-kind") || "text";
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, index) {
      return { row: row, key: cellKey(row, column, kind), index: index };
    });
    keyed.sort(function (a, b) {
      if (a.key === null && b.key === null) return a.index - b.index;
      if (a.key === null) return 1;
      if (b.key === null) return -1;
      var order = kind === "number" ? a.key - b.key : a.key.localeCompare(b.key);
      return order === 0 ? a.index - b.index : direction * order;
    });
    keyed.forEach(function (item) { body.appendChild(item.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.setAttribute("aria-sort", "none");
    });
    header.setAttribute("aria-sort", direction > 0 ? "ascending" : "descending");
  }

  function applyFilters(form, table) {
    var selects = form.querySelectorAll("select[data-filter]");
    var text = form.querySelector("input[data-filter-text]");
    var needle = text ? text.value.trim().toLowerCase() : "";
    var rows = table.tBodies[0].rows;
    var shown = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var keep = true;
      Array.prototype.forEach.call(selects, function (select) {
        var want = select.value;
        if (want !== "" && row.getAttribute("data-" + select.getAttribute("data-filter")) !== want) keep = false;
      });
      if (keep && needle !== "" && row.textContent.toLowerCase().indexOf(needle) < 0) keep = false;
      row.hidden = !keep;
      if (keep) shown += 1;
    });
    var count = document.getElementById("row-count");
    if (count) count.textContent = shown + " of " + rows.length + " cells";
  }

  ready(function () {
    var table = document.getElementById("leaderboard");
    if (!table || !table.tHead || !table.tBodies.length) return;
    table.classList.add("interactive");
    table.tHead.addEventListener("click", function (event) {
      var button = event.target.closest("button.sort");
      if (!button) return;
      var column = Number(button.getAttribute("data-column"));
      var current = table.tHead.rows[0].cells[column].getAttribute("aria-sort");
      sortBy(table, column, current === "ascending" ? -1 : 1);
    });
    var form = document.getElementById("filters");
    if (form) {
      form.addEventListener("submit", function (event) { event.preventDefault(); });
      form.addEventListener("input", function () { applyFilters(form, table); });
      form.addEventListener("change", function () { applyFilters(form, table); });
      applyFilters(form, table);
    }
  });
})();
