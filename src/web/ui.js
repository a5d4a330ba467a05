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
  // The dashboards page: reload after the next serving run (the documents' as_of changes).
  if (data.page === "dashboards") {
    const text = (v) => (v === null || v === undefined ? "\u2013" : typeof v === "string" ? v : JSON.stringify(v));
    const live = document.getElementById("live");
    if (live) live.hidden = false;
    setInterval(async () => {
      try {
        const r = await fetch("/api/dashboards", { credentials: "same-origin" });
        const d = await r.json();
        const n = Object.values(d).map((x) => text(x.as_of)).sort().pop() || "";
        if (n !== data.as_of) location.reload();
      } catch (e) {}
    }, 15000);
  }
})();
