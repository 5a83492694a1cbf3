// The console's live part: when the server-sent-event stream says something happened, re-fetch the
// page's fragment and swap it in. No framework, no build step. Coalesced: one fetch per burst, and
// an event that arrives while a fetch is under way triggers one more (that fetch may predate it).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    again = false;
    setTimeout(function () {
      fetch(live.dataset.part, {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) {
            live.innerHTML = html;
            live.dataset.updated = String(Date.now());
          }
        })
        .catch(function () { again = true; })
        .then(function () {
          busy = false;
          if (again) { refresh(); }
        });
    }, 50);
  }
  var source = new EventSource(live.dataset.stream, {withCredentials: true});
  source.onmessage = function (e) {
    live.dataset.lastEvent = e.data;
    live.dataset.messageAt = String(Date.now());
    refresh();
  };
  source.onopen = function () {
    // A reconnect (the daemon restarted, or dropped a stream that fell behind): what happened
    // meanwhile was not streamed, so fetch the fragment once.
    if (document.body.dataset.live === "1") { refresh(); }
    document.body.dataset.live = "1";
  };
  // Ages and SLA countdowns move with time, not only with events: redraw each half minute.
  setInterval(refresh, 30000);
})();
