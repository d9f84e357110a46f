// The page's live view: listen to /ui/events and swap in the sections that changed.
// Our own few lines; nothing is loaded from anywhere but this server.
(function () {
  "use strict";
  var root = document.querySelector("main[data-live]");
  if (!root) { return; }
  var prefix = root.dataset.prefix;
  var market = root.dataset.market;
  var badge = document.querySelector("[data-live-state]");
  var busy = {};
  var again = {};

  function show(text, on) {
    if (!badge) { return; }
    badge.textContent = text;
    badge.classList.toggle("on", on);
  }

  function refresh(topic) {
    var box = root.querySelector('[data-fragment="' + topic + '"]');
    if (!box) { return; }
    if (busy[topic]) { again[topic] = true; return; }
    busy[topic] = true;
    var url = prefix + "/fragments/" + topic + (market ? "?market=" + encodeURIComponent(market) : "");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.status === 401) { window.location.assign(prefix + "/login"); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          box.innerHTML = html;  // the server escaped every member-supplied text
          box.dataset.refreshedAt = String(Date.now());
        }
      })
      .catch(function () { again[topic] = true; })
      .finally(function () {
        busy[topic] = false;
        if (again[topic]) { again[topic] = false; refresh(topic); }
      });
  }

  var source = new EventSource(prefix + "/events?after=" + encodeURIComponent(root.dataset.seq));
  source.onopen = function () { show("live", true); };
  source.onerror = function () { show("reconnecting…", false); };
  source.onmessage = function (event) {
    var message = JSON.parse(event.data);
    root.dataset.seq = String(message.seq);
    message.topics.forEach(refresh);
  };
  window.addEventListener("pagehide", function () { source.close(); });
})();
