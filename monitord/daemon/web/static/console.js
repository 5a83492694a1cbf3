// The console's live part: when the server-sent-event stream says something happened, re-fetch the
// page's fragment and swap it in. No framework, no build step. Coalesced: one fetch per burst.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var pending = false;
  function refresh() {
    if (pending) { return; }
    pending = true;
    setTimeout(function () {
      fetch(live.dataset.part, {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          pending = false;
          if (html !== null) {
            live.innerHTML = html;
            live.dataset.updated = String(Date.now());
          }
        })
        .catch(function () { pending = false; });
    }, 50);
  }
  var source = new EventSource(live.dataset.stream, {withCredentials: true});
  source.onmessage = function (e) {
    live.dataset.lastEvent = e.data;
    refresh();
  };
  source.onopen = function () { live.dataset.stream_open = "1"; document.body.dataset.live = "1"; };
  // Ages and SLA countdowns move with time, not only with events: redraw each half minute.
  setInterval(refresh, 30000);
})();
