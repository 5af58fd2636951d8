/* Runs first: counts script errors into <html data-js-errors>, so a headless browser's DOM dump shows them. */
(function () {
  "use strict";
  var root = document.documentElement, count = 0;
  function record(message) {
    count += 1;
    root.setAttribute("data-js-errors", String(count));
    root.setAttribute("data-js-error-last", String(message).slice(0, 500));
  }
  window.addEventListener("error", function (event) { record(event.message || "error"); });
  window.addEventListener("unhandledrejection", function (event) { record("unhandled rejection: " + event.reason); });
  var consoleError = console.error;
  console.error = function () {
    record(Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
})();
