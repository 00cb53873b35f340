// gestor's page: polls /api/status every data-poll-s seconds and renders it; the history and the
// buttons call the JSON API with the session's CSRF token. Signs: net and balance are
// export-positive (DESIGN.md section 2). No framework; charts with uPlot (vendored).
"use strict";
(function () {
  const body = document.body;
  const POLL_MS = 1000 * parseFloat(body.dataset.pollS || "5");
  const TZ = body.dataset.timezone || "Europe/Madrid";
  const PERIOD_S = parseFloat(body.dataset.periodS || "3600");
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, root) => (root || document).querySelector(sel);

  const wh = (v) => (v === null || v === undefined) ? "–" : `${v >= 0 ? "+" : "−"}${Math.abs(Math.round(v)).toLocaleString("en")} Wh`;
  const watts = (v) => (v === null || v === undefined) ? "–" : `${Math.round(v).toLocaleString("en")} W`;
  const dur = (s) => {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, Math.floor(s));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    return `${Math.floor(s / 3600)} h ${String(Math.floor(s % 3600 / 60)).padStart(2, "0")} min`;
  };
  const hhmm = (iso) => iso ? new Date(iso).toLocaleTimeString("en-GB", { timeZone: TZ, hour: "2-digit", minute: "2-digit" }) : "";
  const sign = (el, v) => { el.classList.toggle("pos", v > 0); el.classList.toggle("neg", v < 0); };

  async function api(path, opts) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin", headers: {} }, opts || {}));
    if (r.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    return data;
  }
  const post = (path, payload) => api(path, {
    method: "POST", body: JSON.stringify(payload),
    headers: { "Content-Type": "application/json", "X-CSRFToken": CSRF },
  });

  // --- charts -------------------------------------------------------------------------------
  const charts = {};
  window.gestorCharts = charts;  // for the tests and the curious
  // a chart is as wide as its card (the card never grows to fit it: style.css); redrawn when the
  // window changes (a phone turned to landscape and back)
  function width(el) { return Math.max(160, el.clientWidth || 300); }
  const timeAxis = {
    values: (u, vals) => vals.map((v) => new Date(v * 1e3).toLocaleTimeString("en-GB", { timeZone: TZ, hour: "2-digit", minute: "2-digit" })),
  };
  let resizing = 0;
  function resize() {
    cancelAnimationFrame(resizing);
    resizing = requestAnimationFrame(() => {
      for (const [id, c] of Object.entries(charts)) {
        const w = width(document.getElementById(id));
        if (w !== c.width) c.setSize({ width: w, height: c.height });
      }
    });
  }
  window.addEventListener("resize", resize);
  window.addEventListener("orientationchange", resize);
  function barsChart(id, periods) {
    const el = document.getElementById(id);
    // each period's two bars sit in its own slot, between its start and its end; the x range has
    // half a period more on each side, so the first and the last periods show whole
    const x = periods.map((p) => Date.parse(p.start) / 1000 + PERIOD_S / 2);
    const data = [x, periods.map((p) => p.balance_wh), periods.map((p) => p.without_wh)];
    if (charts[id]) { charts[id].setData(data); return; }
    el.textContent = "";
    const bars = (align) => uPlot.paths.bars({ size: [0.4, 40], align: align });
    charts[id] = new uPlot({
      width: width(el), height: 200, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), TZ),
      legend: { show: false }, cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true, range: (u, min, max) => min === null || max === null ? [0, PERIOD_S] : [min - PERIOD_S / 2, max + PERIOD_S / 2] } },
      axes: [Object.assign({ incrs: [3600, 7200, 10800, 21600] }, timeAxis), { size: 55 }],
      series: [{}, { label: "with gestor", fill: "#1f77b4", stroke: "#1f77b4", paths: bars(1), points: { show: false } },
        { label: "without gestor", fill: "#bbb", stroke: "#bbb", paths: bars(-1), points: { show: false } }],
    }, data, el);
  }
  function powerChart(id, c) {
    const el = document.getElementById(id);
    const data = [c.t, c.net_w, c.production_w, c.consumption_w];
    if (charts[id]) { charts[id].setData(data); return; }
    el.textContent = "";
    charts[id] = new uPlot({
      width: width(el), height: 220, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), TZ),
      scales: { x: { time: true } }, axes: [timeAxis, { size: 60 }],
      series: [{}, { label: "net W (+ export)", stroke: "#10233f", width: 1.5 },
        { label: "production W", stroke: "#f0a500" }, { label: "consumption W", stroke: "#c62828" }],
    }, data, el);
  }

  // --- live state ---------------------------------------------------------------------------
  function render(d) {
    const banners = $("#banners");
    banners.textContent = "";
    for (const b of d.banners) {
      const p = document.createElement("p");
      p.className = "banner"; p.textContent = b; banners.appendChild(p);
    }
    const m = d.meter;
    const words = $("#net-words");
    words.textContent = m.words.charAt(0).toUpperCase() + m.words.slice(1);
    words.classList.toggle("export", m.net_w > 0); words.classList.toggle("import", m.net_w < 0);
    $("#net-w").textContent = m.net_w === null ? "–" : `${m.net_w >= 0 ? "+" : "−"}${watts(Math.abs(m.net_w))}`;
    $("#production-w").textContent = watts(m.production_w);
    $("#consumption-w").textContent = watts(m.consumption_w);
    $("#reading-age").textContent = dur(m.age_s);
    const p = d.period;
    if (p) {
      $("#period-label").textContent = p.label;
      $("#period-left").textContent = `· ${dur(p.remaining_s)} left`;
      const b = $("#period-balance"), j = $("#period-projected");
      b.textContent = wh(p.balance_wh); sign(b, p.balance_wh);
      j.textContent = wh(p.projected_wh); sign(j, p.projected_wh);
      const scale = Math.max(100, Math.abs(p.balance_wh), Math.abs(p.projected_wh)) * 1.1;
      const pct = (v) => 50 + 50 * v / scale;
      const fill = $("#period-bar-fill");
      const a = pct(0), e = pct(p.projected_wh);
      fill.style.left = `${Math.min(a, e)}%`; fill.style.width = `${Math.abs(e - a)}%`;
      fill.classList.toggle("neg", p.projected_wh < 0);
      $("#period-bar-now").style.left = `calc(${pct(p.balance_wh)}% - 1px)`;
    }
    for (const ld of d.loads) {
      const el = document.getElementById(`load-${ld.name}`);
      if (!el) continue;
      const st = $(".state", el);
      st.textContent = ld.on === null || ld.on === undefined ? "?" : (ld.on ? "ON" : "OFF");
      st.classList.toggle("on", ld.on === true); st.classList.toggle("unknown", ld.on === null);
      $(".reason", el).textContent = ld.reason || "–";
      $(".since", el).textContent = ld.since ? `since ${hhmm(ld.since)}` : "since start";
      $(".switches", el).textContent = ld.switches_today === null || ld.switches_today === undefined ? "–" : String(ld.switches_today);
      $(".override", el).textContent = ld.override ? `· ${ld.override}` : "";
      const sel = $(".mode", el);
      if (document.activeElement !== sel && !el.dataset.dirty) sel.value = ld.mode;
    }
    const eur = $("#eur-saved");
    eur.textContent = d.eur_saved_today === null || d.eur_saved_today === undefined ? "–" : `€${d.eur_saved_today.toFixed(2)}`;
    $("#today-error").textContent = d.today.error || (d.today.periods.length ? "" : "No hour has closed yet today.");
    if (d.today.periods.length) barsChart("today-chart", d.today.periods);
    $("#updated").textContent = `updated ${new Date(d.at).toLocaleTimeString("en-GB", { timeZone: TZ })}`;
    body.dataset.at = d.at;
  }

  async function poll() {
    try {
      const d = await api("/api/status");
      render(d);
      dateInput.max = d.today.date;
      if (!dateInput.value) { dateInput.value = d.today.date; showDay(); }  // the Pi's day, not the phone's
    }
    catch (e) { $("#updated").textContent = `NOT UPDATED: ${e.message}`; }
  }

  // --- buttons ------------------------------------------------------------------------------
  for (const el of document.querySelectorAll(".load")) {
    $(".mode", el).addEventListener("change", () => { el.dataset.dirty = "1"; });
    $(".apply", el).addEventListener("click", async () => {
      const out = $("#command-result");
      try {
        const r = await post(`/api/load/${encodeURIComponent(el.dataset.load)}`, { mode: $(".mode", el).value, for: $(".for", el).value });
        out.textContent = r.message;
      } catch (e) { out.textContent = `Not done: ${e.message}`; }
      delete el.dataset.dirty;
      poll();
    });
  }
  $("#stop-button").addEventListener("click", async () => {
    if (!window.confirm("Switch EVERY load off and set the stop latch? Releasing it needs 'sudo stop-loads --release' on the Pi.")) return;
    const out = $("#stop-result");
    out.textContent = "stopping…";
    try {
      const r = await post("/api/stop", { confirm: "STOP" });
      out.textContent = `Stopped: ${r.loads.map((l) => `${l.load} off`).join(", ")}. Latch ${r.latch}`;
    } catch (e) { out.textContent = `STOP NOT CONFIRMED: ${e.message}. Switch the loads off by hand.`; }
    poll();
  });

  // --- history ------------------------------------------------------------------------------
  const dateInput = $("#history-date");
  async function showDay() {
    const day = dateInput.value;
    $("#history-csv").href = `/day.csv?date=${encodeURIComponent(day)}`;
    const sum = $("#history-summary");
    try {
      const d = await api(`/api/day?date=${encodeURIComponent(day)}`);
      const imp = d.periods.reduce((a, p) => a + Math.max(-(p.balance_wh || 0), 0), 0);
      const imp0 = d.periods.reduce((a, p) => a + Math.max(-(p.without_wh || 0), 0), 0);
      const exp = d.periods.reduce((a, p) => a + Math.max(p.balance_wh || 0, 0), 0);
      const exp0 = d.periods.reduce((a, p) => a + Math.max(p.without_wh || 0, 0), 0);
      sum.textContent = d.periods.length
        ? `${d.periods.length} hours · exported ${(exp / 1000).toFixed(2)} kWh (without gestor ${(exp0 / 1000).toFixed(2)}) · imported ${(imp / 1000).toFixed(2)} kWh (without ${(imp0 / 1000).toFixed(2)})`
        : "Nothing stored for this day.";
      barsChart("history-bars", d.periods);
      powerChart("history-power", d.curves);
    } catch (e) { sum.textContent = `History not available: ${e.message}`; }
  }
  $("#history-show").addEventListener("click", showDay);

  poll();
  setInterval(poll, POLL_MS);
})();
