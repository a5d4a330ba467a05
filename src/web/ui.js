// The UI's only script, served from the binary as /static/ui.js (the Content-Security-Policy
// allows no inline script). Data from the server comes in <script type="application/json"
// id="lakepipe-data">, never interpolated into code.
(function () {
  "use strict";
  const el = document.getElementById("lakepipe-data");
  if (!el) return;
  let data;
  try {
    data = JSON.parse(el.textContent);
  } catch (e) {
    return;
  }
  // The dashboards page: live. /api/events sends a `serving` event when a serving run has
  // landed new documents; the page then fetches the cards, rendered and escaped by the
  // server (/dashboards/fragment), and swaps them in place — no reload.
  if (data.page === "dashboards" && window.EventSource) {
    const live = document.getElementById("live");
    if (live) live.hidden = false;
    const key = (l) => JSON.stringify([l && l.as_of, l && l.versions]);
    let shown = key(data.landed);
    let updates = 0;
    let busy = false;
    let again = false;
    const refresh = async () => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        do {
          again = false;
          const r = await fetch("/dashboards/fragment", { credentials: "same-origin" });
          if (!r.ok) break;
          const t = document.createElement("template");
          t.innerHTML = await r.text();
          const fresh = t.content.getElementById("dashboards");
          const old = document.getElementById("dashboards");
          if (!fresh || !old) break;
          old.replaceWith(fresh);
          updates += 1;
          if (live) {
            live.dataset.liveUpdates = String(updates);
            live.dataset.asOf = fresh.dataset.asOf || "";
            live.textContent =
              "Live: updated " + updates + (updates === 1 ? " time" : " times") +
              " without a reload, last as of " + (fresh.dataset.asOf || "\u2013") + ".";
          }
        } while (again);
      } catch (e) {
        // The next event tries again.
      } finally {
        busy = false;
      }
    };
    const events = new EventSource("/api/events");
    events.addEventListener("serving", (ev) => {
      let landed;
      try {
        landed = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      const k = key(landed);
      if (k === shown) return;
      shown = k;
      refresh();
    });
    window.addEventListener("pagehide", () => events.close());
  }
})();
