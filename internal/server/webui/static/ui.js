// Corral web UI: progressive enhancement only; every page works without it.
// Forms with data-confirm ask before they are submitted.
"use strict";
document.addEventListener("submit", function (ev) {
  var msg = ev.target && ev.target.getAttribute && ev.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) {
    ev.preventDefault();
  }
});
