// gestor's page: the live energy flow (sun → house, the loads gestor switches, the grid), drawn
// from the live state app.js polls (/api/status, the "gestor:status" event): no request of its
// own. Signs as DESIGN.md section 2: net_w is export-positive. The live state carries no battery
// flow (setpoint devices are not in it), so the view has no battery node.
// Each node keeps its number in data-w (W, the live state's own) for the tests and the curious.
"use strict";
(function () {
  const P = window.gestorPage;
  const root = document.getElementById("flow");
  if (!P || !root) return;
  const { t, watts, none } = P;
  const $ = (sel) => root.querySelector(sel);
  function put(sel, w, text) {
    const el = $(sel);
    el.dataset.w = none(w) ? "" : String(w);
    el.textContent = text === undefined ? watts(w) : text;
  }
  document.addEventListener("gestor:status", (ev) => {
    const d = ev.detail, m = d.meter || {};
    root.hidden = false;
    root.classList.toggle("stale", !!m.stale);
    const prod = m.production_w, cons = m.consumption_w, net = m.net_w;
    put("#flow-sun-w", prod);
    put("#flow-house-w", cons);
    // the grid: what crosses the meter, with its direction in words (not in a colour alone)
    put("#flow-grid-w", none(net) ? null : Math.abs(net));
    $("#flow-grid-dir").textContent = none(net) ? t("no_reading") : (Math.abs(net) < 0.5 ? t("balanced")
      : t(net > 0 ? "flow_to_grid" : "flow_from_grid"));
    $("#flow-grid").classList.toggle("export", net > 0.5);
    $("#flow-grid").classList.toggle("import", net < -0.5);
    // the sun's part the house uses now (the rest goes to the grid)
    const used = none(prod) || none(cons) ? null : Math.max(0, Math.min(prod, cons));
    put("#flow-sun-house-w", used);
    // the loads gestor has on now, and their nameplate power (W, settings' power_w)
    const on = (d.loads || []).filter((l) => l.on === true);
    const loadsW = on.reduce((a, l) => a + (l.power_w || 0), 0);
    put("#flow-loads-w", loadsW);
    $("#flow-loads-names").textContent = on.length ? on.map((l) => P.loadName(l.name)).join(", ") : t("flow_no_load_on");
  });
})();
