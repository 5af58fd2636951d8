/* Click-to-sort tables, and a self-test (open the page with #selftest) that a headless browser can read back
   from <body data-selftest>. Plain ES5-level DOM code: no libraries, nothing fetched. */
(function () {
  "use strict";
  var body = document.body;

  function cellValue(row, index, type) {
    var cell = row.cells[index];
    if (!cell) { return type === "num" ? null : ""; }
    if (type === "num") {
      var raw = cell.getAttribute("data-sort");
      if (raw === null || raw === "") { return null; }
      var value = parseFloat(raw);
      return isNaN(value) ? null : value;
    }
    return (cell.getAttribute("data-sort") || cell.textContent || "").trim().toLowerCase();
  }

  function compare(a, b, type, direction) {
    // Empty cells always sort last, whatever the direction.
    if (a === null || a === "") { return (b === null || b === "") ? 0 : 1; }
    if (b === null || b === "") { return -1; }
    var order = type === "num" ? a - b : a.localeCompare(b, undefined, { numeric: true });
    return direction === "ascending" ? order : -order;
  }

  function sortBy(th) {
    var table = th.closest("table");
    var tbody = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var type = th.getAttribute("data-type") || "text";
    var direction = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    Array.prototype.forEach.call(th.parentNode.children, function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", direction);
    var rows = Array.prototype.slice.call(tbody.rows).filter(function (r) { return !r.classList.contains("empty"); });
    rows = rows.map(function (row, position) { return { row: row, key: cellValue(row, index, type), position: position }; });
    rows.sort(function (a, b) { return compare(a.key, b.key, type, direction) || a.position - b.position; });
    rows.forEach(function (item) { tbody.appendChild(item.row); });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable th[data-key] button"), function (button) {
    button.addEventListener("click", function () { sortBy(button.closest("th")); });
  });

  function column(table, key) {
    var ths = table.tHead.rows[0].cells;
    for (var i = 0; i < ths.length; i += 1) {
      if (ths[i].getAttribute("data-key") === key) { return { th: ths[i], index: i }; }
    }
    return null;
  }

  function values(table, index, type) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (row) { return cellValue(row, index, type); });
  }

  function ordered(list, type, direction) {
    for (var i = 1; i < list.length; i += 1) {
      if (compare(list[i - 1], list[i], type, direction) > 0) { return false; }
    }
    return true;
  }

  function selftest() {
    var table = document.getElementById("results");
    var problems = [];
    var perf = column(table, "performance"), model = column(table, "model");
    perf.th.querySelector("button").click();
    var ascending = values(table, perf.index, "num");
    if (!ordered(ascending, "num", "ascending")) { problems.push("performance not ascending: " + ascending.join(",")); }
    body.setAttribute("data-selftest-order", JSON.stringify(Array.prototype.map.call(table.tBodies[0].rows,
      function (row) {
        var cell = row.cells[model.index], name = cell.querySelector(".name");
        return (name || cell).textContent.trim();
      })));
    body.setAttribute("data-selftest-values", JSON.stringify(ascending));
    perf.th.querySelector("button").click();
    var descending = values(table, perf.index, "num");
    if (!ordered(descending, "num", "descending")) { problems.push("performance not descending: " + descending.join(",")); }
    if (perf.th.getAttribute("aria-sort") !== "descending") { problems.push("aria-sort not updated"); }
    model.th.querySelector("button").click();
    if (!ordered(values(table, model.index, "text"), "text", "ascending")) { problems.push("model not ascending"); }
    body.setAttribute("data-selftest", problems.length ? "fail: " + problems.join("; ") : "pass");
  }

  var results = document.getElementById("results");
  body.setAttribute("data-rows", String(results ? results.querySelectorAll("tbody tr:not(.empty)").length : 0));
  body.setAttribute("data-chart-bars", String(document.querySelectorAll("svg.bars rect.bar").length));
  if (window.location.hash === "#selftest") { selftest(); }
  body.setAttribute("data-ready", "1");
})();
