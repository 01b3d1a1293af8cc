// Corral web UI: progressive enhancement only; every page works without it.
// Forms with data-confirm ask before they are submitted.
"use strict";
document.addEventListener("submit", function (ev) {
  var msg = ev.target && ev.target.getAttribute && ev.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) {
    ev.preventDefault();
  }
});
// A page showing an operation in progress has <body data-refresh="N">: it
// reloads after N seconds, but never while the user is typing in a form,
// which a reload would throw away (why this is not a <meta> refresh).
(function () {
  var secs = parseInt(document.body.getAttribute("data-refresh"), 10);
  if (!(secs > 0)) {
    return;
  }
  var edited = false;
  document.addEventListener("input", function () { edited = true; });
  var typing = function () {
    var a = document.activeElement;
    return a && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName);
  };
  var tick = function () {
    if (edited || typing() || document.hidden) {
      setTimeout(tick, secs * 1000);
      return;
    }
    window.location.reload();
  };
  setTimeout(tick, secs * 1000);
})();
