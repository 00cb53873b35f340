// gestor's page: polls /api/status every data-poll-s seconds and renders it; the history and the
// buttons call the JSON API with the session's CSRF token. Signs: net and balance are
// export-positive (DESIGN.md section 2). No framework; charts with uPlot (vendored).
// Words come from the page (the #i18n block, translated by the server's catalogs); numbers, dates
// and euros are formatted here with the browser's Intl in the page's locale (data-locale).
// /api/range, /api/prices and /api/decisions may be missing (an older gestor web): the page
// then shows the day view from /api/day and hides what it cannot show.
"use strict";
(function () {
  const body = document.body;
  const POLL_MS = 1000 * parseFloat(body.dataset.pollS || "5");
  const TZ = body.dataset.timezone || "Europe/Madrid";
  const PERIOD_S = parseFloat(body.dataset.periodS || "3600");
  const LOC = body.dataset.locale || "en-GB";
  const LANG = body.dataset.lang || "en";
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const T = JSON.parse(document.getElementById("i18n").textContent);
  const $ = (sel, root) => (root || document).querySelector(sel);
  const t = (key, vals) => (T[key] || key).replace(/\{(\w+)\}/g, (m, k) => (vals && k in vals ? String(vals[k]) : m));
  const none = (v) => v === null || v === undefined || Number.isNaN(v);

  // --- formats (Intl, the page's locale) ----------------------------------------------------
  // grouping always: es-ES's own rule leaves 4 digits ungrouped ("1841 W"); the page groups them
  // as ca-ES does ("1.841 W"), so that a column of numbers reads alike
  const nfs = {};
  const nf = (digits) => nfs[digits] || (nfs[digits] = new Intl.NumberFormat(LOC,
    { minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: "always" }));
  const num = (v, digits) => none(v) ? "–" : nf(digits || 0).format(v);
  const eurFmt = new Intl.NumberFormat(LOC, { style: "currency", currency: "EUR", useGrouping: "always" });
  const eur = (v) => none(v) ? "–" : eurFmt.format(Math.abs(v) < 0.005 ? 0 : v);  // never "−0,00 €"
  const pctFmt = new Intl.NumberFormat(LOC, { style: "percent", maximumFractionDigits: 0 });
  const pct = (v) => none(v) ? "–" : pctFmt.format(v / 100);
  // a number and its unit never part at the end of a line (a no-break space between them)
  const NB = "\u00a0";
  const watts = (v) => none(v) ? "–" : `${num(Math.round(v))}${NB}W`;
  const power = (v) => Math.abs(v) >= 1000 ? `${num(Math.abs(v) / 1000, 1)}${NB}kW` : `${num(Math.round(Math.abs(v)))}${NB}W`;
  const wh = (v) => none(v) ? "–" : `${v >= 0 ? "+" : "−"}${num(Math.abs(Math.round(v)))}${NB}Wh`;
  const kwh = (v, digits) => none(v) ? "–" : `${num(v / 1000, digits === undefined ? 2 : digits)}${NB}kWh`;
  const dtf = (opts) => new Intl.DateTimeFormat(LOC, Object.assign({ timeZone: TZ }, opts));
  const timeFmt = dtf({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const secFmt = dtf({ hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  const hhmm = (iso) => iso ? timeFmt.format(new Date(iso)) : "";
  const dur = (s) => none(s) ? "–" : duration(s).replace(/ /g, "\u00a0");
  const duration = (s) => {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return t("s", { n: s });
    if (s < 3600) return t("min", { n: Math.floor(s / 60) });
    return t("h_min", { h: Math.floor(s / 3600), m: String(Math.floor(s % 3600 / 60)).padStart(2, "0") });
  };
  const sign = (el, v) => { el.classList.toggle("pos", v > 0); el.classList.toggle("neg", v < 0); };
  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
  const loadName = (id) => { const el = document.getElementById(`load-${id}`); return el ? el.dataset.name : id; };
  // a load's grammatical gender (its display_gender): "Termo eléctrico apagado", "Bomba apagada"
  const gender = (id) => { const el = document.getElementById(`load-${id}`); return el && el.dataset.gender === "f" ? "f" : "m"; };
  const plural = new Intl.PluralRules(document.body.dataset.locale || undefined);
  const switchesWords = (n) => t(plural.select(n) === "one" ? "switches_one" : "switches_other", { n: num(n) });

  async function api(path, opts) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin", headers: {} }, opts || {}));
    if (r.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { const e = new Error(data.error || `HTTP ${r.status}`); e.status = r.status; throw e; }
    return data;
  }
  // for flow.js and compare.js (the live energy flow, the comparison with earlier periods)
  window.gestorPage = { t, num, kwh, eur, watts, cap, none, api, dtf, loadName };
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
  const css = (name) => getComputedStyle(body).getPropertyValue(name).trim();
  function axis(extra) {  // the theme's colours (dark mode too)
    return Object.assign({ stroke: css("--fg"), grid: { stroke: css("--grid") }, ticks: { stroke: css("--grid") } }, extra || {});
  }
  // a value axis with its unit as its label ("kWh", "€"): every chart says what it counts
  const valueAxis = (unit, extra) => axis(Object.assign({ size: 60, label: unit, labelSize: 20, labelFont: "bold 12px system-ui" }, extra || {}));
  // bars are measured from 0: the scale always holds 0, so a bar's height is its value (issue 37:
  // the year's euro bars started at 5 €, and "with gestor" looked like 13 % of "without", not 22 %)
  const fromZero = (u, min, max) => {
    const lo = Math.min(0, none(min) ? 0 : min), hi = Math.max(0, none(max) ? 0 : max);
    const pad = (hi - lo) * 0.05 || 1;
    return [lo < 0 ? lo - pad : 0, hi > 0 ? hi + pad : (lo < 0 ? 0 : 1)];
  };
  const timeAxis = () => axis({ values: (u, vals) => vals.map((v) => timeFmt.format(new Date(v * 1e3))) });
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
  // a chart of kind `kind` in element `id`: new when the kind changes, else new data
  function chart(id, kind, make, data) {
    const el = document.getElementById(id);
    el.hidden = false;
    const c = charts[id];
    if (c && c.gestorKind === kind) { c.setData(data); return c; }
    if (c) { c.destroy(); delete charts[id]; }
    el.textContent = "";
    const opts = make(width(el));
    charts[id] = new uPlot(opts, data, el);
    charts[id].gestorKind = kind;
    return charts[id];
  }
  function drop(id) {
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    const el = document.getElementById(id);
    el.textContent = ""; el.hidden = true;
  }
  const bars = (align, size) => uPlot.paths.bars({ size: [size || 0.4, 40], align: align });
  const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), TZ);
  const whValue = (u, v) => none(v) ? "–" : wh(v);
  function barsChart(id, periods) {
    // each period's two bars sit in its own slot, between its start and its end; the x range has
    // half a period more on each side, so the first and the last periods show whole
    const x = periods.map((p) => Date.parse(p.start) / 1000 + PERIOD_S / 2);
    const data = [x, periods.map((p) => p.balance_wh), periods.map((p) => p.without_wh)];
    chart(id, "periods", (w) => ({
      width: w, height: 220, tzDate: tzDate,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true, range: (u, min, max) => min === null || max === null ? [0, PERIOD_S] : [min - PERIOD_S / 2, max + PERIOD_S / 2] } },
      axes: [Object.assign(timeAxis(), { incrs: [3600, 7200, 10800, 21600] }), valueAxis("Wh")],
      series: [{ label: t("time"), value: (u, v) => none(v) ? "–" : `${timeFmt.format(new Date((v - PERIOD_S / 2) * 1e3))}` },
        { label: t("with_gestor"), fill: css("--with"), stroke: css("--with"), paths: bars(1), points: { show: false }, value: whValue },
        { label: t("without_gestor"), fill: css("--without"), stroke: css("--without"), paths: bars(-1), points: { show: false }, value: whValue }],
    }), data);
  }
  function powerChart(id, c) {
    const data = [c.t, c.net_w, c.production_w, c.consumption_w];
    const wv = (u, v) => none(v) ? "–" : watts(v);
    chart(id, "power", (w) => ({
      width: w, height: 220, tzDate: tzDate,
      scales: { x: { time: true } }, axes: [timeAxis(), valueAxis("W")],
      series: [{ label: t("time"), value: (u, v) => none(v) ? "–" : timeFmt.format(new Date(v * 1e3)) },
        { label: `${t("net")} W`, stroke: css("--net"), width: 1.5, value: wv },
        { label: `${t("production")} W`, stroke: "#f0a500", value: wv }, { label: `${t("consumption")} W`, stroke: css("--bad"), value: wv }],
    }), data);
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
    let said;
    if (none(m.net_w)) said = t("no_reading");
    else if (Math.abs(m.net_w) < 0.5) said = t("balanced");
    else said = t(m.net_w > 0 ? "exporting" : "importing", { power: power(m.net_w) });
    // a stale reading is not live: it says so, in the headline, and is not coloured as a flow
    if (m.stale && !none(m.net_w)) said = t("stale", { words: said.charAt(0).toLowerCase() + said.slice(1), age: dur(m.age_s) });
    words.textContent = cap(said);
    words.classList.toggle("stale", !!m.stale);
    words.classList.toggle("export", !m.stale && m.net_w > 0); words.classList.toggle("import", !m.stale && m.net_w < 0);
    $("#net-w").textContent = none(m.net_w) ? "–" : `${m.net_w >= 0 ? "+" : "−"}${watts(Math.abs(m.net_w))}`;
    $("#production-w").textContent = watts(m.production_w);
    $("#consumption-w").textContent = watts(m.consumption_w);
    $("#reading-age").textContent = dur(m.age_s);
    const p = d.period;
    if (p) {
      $("#period-label").textContent = p.label;
      $("#period-left").textContent = `· ${t("left", { time: dur(p.remaining_s) })}`;
      const b = $("#period-balance"), j = $("#period-projected");
      b.textContent = wh(p.balance_wh); sign(b, p.balance_wh);
      j.textContent = wh(p.projected_wh); sign(j, p.projected_wh);
      const scale = Math.max(100, Math.abs(p.balance_wh), Math.abs(p.projected_wh)) * 1.1;
      const at = (v) => 50 + 50 * v / scale;
      const fill = $("#period-bar-fill");
      const a = at(0), e = at(p.projected_wh);
      fill.style.left = `${Math.min(a, e)}%`; fill.style.width = `${Math.abs(e - a)}%`;
      fill.classList.toggle("neg", p.projected_wh < 0);
      $("#period-bar-now").style.left = `calc(${at(p.balance_wh)}% - 1px)`;
    }
    for (const ld of d.loads) {
      const el = document.getElementById(`load-${ld.name}`);
      if (!el) continue;
      const st = $(".state", el);
      st.textContent = none(ld.on) ? "?" : t(`${ld.on ? "on" : "off"}_${gender(ld.name)}`);
      st.classList.toggle("on", ld.on === true); st.classList.toggle("unknown", none(ld.on));
      const why = ld.reason_text || ld.reason;
      $(".reason", el).textContent = why || "–";
      $(".since", el).textContent = ld.since ? t("since", { time: hhmm(ld.since) }) : t("since_start");
      $(".switches", el).textContent = none(ld.switches_today) ? "–" : switchesWords(ld.switches_today);
      const ov = ld.override_text || ld.override;
      $(".override", el).textContent = ov && ov !== why ? `· ${ov}` : "";  // once, when the reason is not already it
      const sel = $(".mode", el);
      if (document.activeElement !== sel && !el.dataset.dirty) sel.value = ld.mode;
    }
    $("#eur-saved").textContent = eur(d.eur_saved_today);
    $("#today-error").textContent = d.today.error || (d.today.periods.length ? "" : t("no_hour_yet"));
    if (d.today.periods.length) barsChart("today-chart", d.today.periods);
    $("#updated").textContent = t("updated", { time: secFmt.format(new Date(d.at)) });
    body.dataset.at = d.at;
    document.dispatchEvent(new CustomEvent("gestor:status", { detail: d }));
  }

  let first = true;
  let lastStatus = null;
  async function poll() {
    try {
      const d = await api("/api/status");
      lastStatus = d;
      render(d);
      dateInput.max = d.today.date;
      if (first) {
        first = false;
        if (!dateInput.value) dateInput.value = d.today.date;  // the Pi's day, not the phone's
        showRange(); showPrices(d.today.date);
      }
    }
    catch (e) { $("#updated").textContent = t("not_updated", { error: e.message }); }
  }

  // --- buttons ------------------------------------------------------------------------------
  for (const el of document.querySelectorAll(".load")) {
    $(".mode", el).addEventListener("change", () => { el.dataset.dirty = "1"; });
    $(".apply", el).addEventListener("click", async () => {
      const out = $("#command-result");
      try {
        const r = await post(`/api/load/${encodeURIComponent(el.dataset.load)}`, { mode: $(".mode", el).value, for: $(".for", el).value });
        out.textContent = r.message;
      } catch (e) { out.textContent = t("not_done", { error: e.message }); }
      delete el.dataset.dirty;
      poll();
    });
  }
  $("#stop-button").addEventListener("click", async () => {
    if (!window.confirm(t("confirm_stop"))) return;
    const out = $("#stop-result");
    out.textContent = t("stopping");
    try {
      const r = await post("/api/stop", { confirm: "STOP" });
      out.textContent = t("stopped", { loads: r.loads.map((l) => t("load_off", { load: loadName(l.load) })).join(", "), latch: r.latch_text || r.latch });
    } catch (e) { out.textContent = t("stop_not_confirmed", { error: e.message }); }
    poll();
  });

  // --- history: day, week, month, year --------------------------------------------------------
  const dateInput = $("#history-date");
  let view = "day";
  let hasRange = null;  // null: not asked yet; false: this gestor web has no /api/range
  const viewButtons = document.querySelectorAll(".views button");
  function setView(v) {
    view = v;
    for (const b of viewButtons) b.setAttribute("aria-pressed", String(b.dataset.view === v));
    body.dataset.view = v;
  }
  for (const b of viewButtons) b.addEventListener("click", () => { setView(b.dataset.view); showRange(); });
  $("#history-show").addEventListener("click", () => showRange());
  dateInput.addEventListener("change", () => showRange());
  function step(dir) {  // the previous or next day, week, month or year (a date string, no clock)
    if (!dateInput.value) return;
    const [y, m, d] = dateInput.value.split("-").map(Number);
    const dt = new Date(Date.UTC(y, m - 1, d));
    if (view === "day") dt.setUTCDate(dt.getUTCDate() + dir);
    else if (view === "week") dt.setUTCDate(dt.getUTCDate() + 7 * dir);
    else if (view === "month") { dt.setUTCDate(1); dt.setUTCMonth(dt.getUTCMonth() + dir); }
    else dt.setUTCFullYear(dt.getUTCFullYear() + dir);
    let next = dt.toISOString().slice(0, 10);
    if (dateInput.max && next > dateInput.max) next = dateInput.max;
    if (next < dateInput.min) next = dateInput.min;
    dateInput.value = next;
    showRange();
  }
  $("#history-prev").addEventListener("click", () => step(-1));
  $("#history-next").addEventListener("click", () => step(1));

  const dayTitle = dtf({ weekday: "long", day: "numeric", month: "long", year: "numeric" });
  const monthTitle = dtf({ month: "long", year: "numeric" });
  const yearTitle = dtf({ year: "numeric" });
  const dayShort = dtf({ day: "numeric", month: "short" });
  const weekdayShort = dtf({ weekday: "short", day: "numeric" });
  const monthShort = dtf({ month: "short" });
  const dateLong = dtf({ day: "numeric", month: "long", year: "numeric" });
  function rangeTitle(r) {
    const a = new Date(r.start), b = new Date(Date.parse(r.end) - 1000);
    if (r.view === "day") return cap(dayTitle.format(a));
    if (r.view === "week") {
      const f = dtf({ day: "numeric", month: "short", year: "numeric" });
      return f.formatRange ? f.formatRange(a, b) : `${f.format(a)} – ${f.format(b)}`;
    }
    if (r.view === "month") return cap(monthTitle.format(a));
    return yearTitle.format(a);
  }

  function showTotals(r) {
    const dl = $("#range-totals");
    dl.textContent = "";
    const tot = r.totals || {};
    const rows = [
      [t("production"), kwh(tot.production_wh)], [t("consumption"), kwh(tot.consumption_wh)],
      [t("imported"), kwh(tot.import_wh)], [t("exported"), kwh(tot.export_wh)],
      [t("captured"), kwh(tot.captured_wh)],
      [t("self_consumption"), pct(tot.self_consumption_pct)], [t("self_sufficiency"), pct(tot.self_sufficiency_pct)],
      [t("cost_with"), eur(tot.cost_eur)], [t("cost_without"), eur(tot.cost_without_eur)], [t("saved"), eur(tot.saved_eur)],
    ];
    const fill = (list, pairs) => {
      list.textContent = "";
      for (const [k, v] of pairs) {
        const dt = document.createElement("dt"), dd = document.createElement("dd");
        dt.textContent = cap(k); dd.textContent = v;
        list.append(dt, dd);
      }
      list.hidden = false;
    };
    fill(dl, rows);
    // the euros since installation: the whole story, whatever the range
    const si = r.since_install;
    const since = $("#since-totals");
    if (si && si.since) {
      $("#since-title").textContent = t("since_install", { date: dateLong.format(new Date(si.since)) });
      fill(since, [[t("saved"), eur(si.saved_eur)], [t("cost_with"), eur(si.cost_eur)], [t("cost_without"), eur(si.cost_without_eur)]]);
    }
    $("#since-title").hidden = since.hidden = !(si && si.since);
    // hours missing from the history: only those already over (today's later hours are not missing)
    const nowMs = Date.parse(body.dataset.at || "") || Date.now();
    const bs = r.buckets || [];
    const incomplete = bs.some((b, i) => b.complete === false && Date.parse(i + 1 < bs.length ? bs[i + 1].start : r.end) <= nowMs);
    $("#history-summary").textContent = incomplete ? t("incomplete") : "";
    // each load: its energy and time on over the range
    const tbody = $("#range-loads tbody");
    tbody.textContent = "";
    const loads = tot.loads || {};
    for (const [name, v] of Object.entries(loads)) {
      const tr = document.createElement("tr");
      const th = document.createElement("th"); th.scope = "row"; th.textContent = loadName(name);
      const e = document.createElement("td"); e.textContent = kwh(v.energy_wh);
      const h = document.createElement("td"); h.textContent = duration(v.on_s).replace(/(\d) /g, "$1\u00a0");
      tr.append(th, e, h); tbody.appendChild(tr);
    }
    $("#range-loads").hidden = Object.keys(loads).length === 0;
  }

  function rangeCharts(r) {
    const bs = r.buckets || [];
    const starts = bs.map((b) => Date.parse(b.start) / 1000);
    const ends = starts.slice(1).concat([Date.parse(r.end) / 1000]);
    const x = starts.map((s, i) => (s + ends[i]) / 2);
    const half = bs.length ? (ends[0] - starts[0]) / 2 : 1800;
    const label = r.view === "day" ? (v) => timeFmt.format(new Date((v - half) * 1e3))
      : r.view === "year" ? (v) => cap(monthShort.format(new Date((v - half) * 1e3)))
      : r.view === "week" ? (v) => weekdayShort.format(new Date((v - half) * 1e3))
      : (v) => dayShort.format(new Date((v - half) * 1e3));
    // one tick per bucket (a month, a day), at its middle: one label per month, never "Ene Ene
    // Feb"; on a narrow chart every n-th bucket is labelled, the others have a tick and no label
    const xAxis = axis({ splits: () => x, space: 1,
      values: (u, vals) => {
        const every = Math.max(1, Math.ceil(x.length * (r.view === "month" ? 48 : 34) / Math.max(1, u.bbox.width / devicePixelRatio)));
        return vals.map((v, i) => i % every === 0 ? label(v) : "");
      } });
    const xScale = { time: true, range: (u, min, max) => min === null ? [0, 1] : [min - half, max + half] };
    // consumption, drawn positive and stacked by where it came from: own solar (the hour's
    // consumption less its net import: what production, or a battery it charged, covered) below,
    // the grid (the settlement period's net import) on top; production as a line. The history
    // keeps no battery flows apart (devices_wh is every setpoint device together): no battery layer.
    const grid = bs.map((b) => none(b.import_wh) ? null : b.import_wh);
    const own = bs.map((b) => none(b.consumption_wh) ? null : Math.max(b.consumption_wh - (b.import_wh || 0), 0));
    const total = bs.map((b, i) => none(own[i]) ? grid[i] : own[i] + (grid[i] || 0));
    const at = (arr) => (u, v, si, i) => none(i) || none(arr[i]) ? "–" : kwh(arr[i], 1);
    chart("history-bars", `energy-${r.view}`, (w) => ({
      width: w, height: 240, tzDate: tzDate, cursor: { drag: { x: false, y: false } },
      scales: { x: xScale, y: { range: fromZero } },
      axes: [xAxis, valueAxis("kWh", { values: (u, vals) => vals.map((v) => num(v / 1000, 0)) })],
      series: [{ label: t(`x_${r.view}`), value: (u, v) => none(v) ? "–" : label(v) },
        { label: t("from_grid"), fill: css("--bad"), stroke: css("--bad"), paths: bars(0, 0.7), points: { show: false }, value: at(grid) },
        { label: t("own_solar"), fill: css("--ok"), stroke: css("--ok"), paths: bars(0, 0.7), points: { show: false }, value: at(own) },
        { label: t("production"), stroke: "#f0a500", width: 2, value: (u, v) => none(v) ? "–" : kwh(v, 1) }],
    }), [x, total, own, bs.map((b) => b.production_wh)]);
    chart("range-money", `money-${r.view}`, (w) => ({
      width: w, height: 200, tzDate: tzDate, cursor: { drag: { x: false, y: false } },
      scales: { x: xScale, y: { range: fromZero } },
      axes: [xAxis, valueAxis("€", { values: (u, vals) => vals.map((v) => eur(v)) })],
      series: [{ label: t(`x_${r.view}`), value: (u, v) => none(v) ? "–" : label(v) },
        { label: t("cost_with"), fill: css("--with"), stroke: css("--with"), paths: bars(1), points: { show: false }, value: (u, v) => eur(v) },
        { label: t("cost_without"), fill: css("--without"), stroke: css("--without"), paths: bars(-1), points: { show: false }, value: (u, v) => eur(v) }],
    }), [x, bs.map((b) => b.cost_eur), bs.map((b) => b.cost_without_eur)]);
  }

  async function showDay(day) {
    const sum = $("#history-summary");
    try {
      const d = await api(`/api/day?date=${encodeURIComponent(day)}`);
      const imp = d.periods.reduce((a, p) => a + Math.max(-(p.balance_wh || 0), 0), 0);
      const imp0 = d.periods.reduce((a, p) => a + Math.max(-(p.without_wh || 0), 0), 0);
      const exp = d.periods.reduce((a, p) => a + Math.max(p.balance_wh || 0, 0), 0);
      const exp0 = d.periods.reduce((a, p) => a + Math.max(p.without_wh || 0, 0), 0);
      const k = (v) => num(v / 1000, 2);
      const text = d.periods.length
        ? t("day_summary", { hours: d.periods.length, exported: k(exp), exported0: k(exp0), imported: k(imp), imported0: k(imp0) })
        : t("nothing_stored");
      sum.textContent = hasRange && sum.textContent ? `${sum.textContent} ${text}` : text;
      barsChart("history-bars", d.periods);
      powerChart("history-power", d.curves);
    } catch (e) { sum.textContent = t("history_na", { error: e.message }); }
  }

  let asked = 0;
  async function showRange() {
    const day = dateInput.value;
    if (!day) return;
    const mine = ++asked;
    $("#range-title").textContent = "…";  // never an empty heading (axe: empty-heading) while it loads
    if (hasRange !== false) {
      try {
        const r = await api(`/api/range?view=${view}&date=${encodeURIComponent(day)}`);
        if (mine !== asked) return;
        hasRange = true;
        $("#range-title").textContent = rangeTitle(r);
        showTotals(r);
        $("#history-csv").href = `/api/range.csv?view=${view}&date=${encodeURIComponent(day)}&lang=${LANG}`;
        if (view === "day") { drop("range-money"); await showDay(day); }
        else { drop("history-power"); rangeCharts(r); }
        document.dispatchEvent(new CustomEvent("gestor:range", { detail: { view: view, day: day, range: r } }));
        showDecisions();
        return;
      } catch (e) {
        if (e.status !== 404) { if (mine === asked) $("#history-summary").textContent = t("history_na", { error: e.message }); return; }
        hasRange = false;  // an older gestor web: the day view only
        for (const b of viewButtons) if (b.dataset.view !== "day") b.hidden = true;
        setView("day");
      }
    }
    $("#range-title").textContent = cap(dayTitle.format(new Date(`${day}T12:00:00Z`)));
    for (const id of ["#range-totals", "#range-loads", "#since-title", "#since-totals"]) $(id).hidden = true;
    drop("range-money");
    $("#history-csv").href = `/day.csv?date=${encodeURIComponent(day)}`;
    await showDay(day);
    showDecisions();
  }

  // --- prices and the tariff ----------------------------------------------------------------
  async function showPrices(day) {
    let p;
    try { p = await api(`/api/prices?date=${encodeURIComponent(day)}`); }
    catch (e) { $("#prices").hidden = true; return; }  // no prices (or no such endpoint): no card
    const slots = (p.days || []).flatMap((d) => d.hours || []);
    if (!slots.length) { $("#prices").hidden = true; return; }
    $("#prices").hidden = false;
    $("#prices-period").textContent = p.tariff_period_now ? t("period_now", { period: p.tariff_period_now }) : "";
    $("#prices-source").textContent = p.source ? t("prices_source", { source: T[`source_${p.source}`] || p.source }) : "";
    const x = slots.map((h) => Date.parse(h.start) / 1000);
    const pv = (u, v) => none(v) ? "–" : `${num(v, 4)} €/kWh`;
    const dayHour = dtf({ weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    const dayName = dtf({ weekday: "short", day: "numeric" });
    // each tick its hour; the first tick of each day also its day ("00:00" over "lun 8")
    const priceTicks = (u, vals) => {
      let last = null;
      return vals.map((v) => {
        const d = dayName.format(new Date(v * 1e3)), h = timeFmt.format(new Date(v * 1e3));
        const said = d !== last ? `${h}\n${cap(d)}` : h;
        last = d;
        return said;
      });
    };
    // "now": a line at the Pi's time of the last live state (not the phone's clock)
    const now = Date.parse(body.dataset.at || "") / 1000;
    const drawNow = (u) => {
      if (!(now >= u.scales.x.min && now <= u.scales.x.max)) return;
      const cx = u.valToPos(now, "x", true), ctx = u.ctx, top = u.bbox.top;
      ctx.save();
      ctx.strokeStyle = css("--fg"); ctx.lineWidth = 2 * devicePixelRatio; ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(cx, top); ctx.lineTo(cx, top + u.bbox.height); ctx.stroke();
      ctx.fillStyle = css("--fg"); ctx.font = `bold ${12 * devicePixelRatio}px system-ui`; ctx.textBaseline = "top";
      ctx.fillText(t("now"), cx + 4 * devicePixelRatio, top + 2 * devicePixelRatio);
      ctx.restore();
    };
    const pc = chart("prices-chart", "prices", (w) => ({
      width: w, height: 220, tzDate: tzDate, cursor: { drag: { x: false, y: false } }, hooks: { draw: [drawNow] },
      scales: { x: { time: true } },
      axes: [axis({ values: priceTicks, size: 50, space: 45, incrs: [3600, 7200, 10800, 21600, 43200] }),
        valueAxis("€/kWh", { values: (u, vals) => vals.map((v) => num(v, 2)) })],
      series: [{ label: t("time"), value: (u, v) => none(v) ? "–" : dayHour.format(new Date(v * 1e3)) },
        { label: t("price_import"), stroke: css("--bad"), width: 2, paths: uPlot.paths.stepped({ align: 1 }), value: pv },
        { label: t("price_surplus"), stroke: css("--ok"), width: 2, paths: uPlot.paths.stepped({ align: 1 }), value: pv }],
    }), [x, slots.map((h) => h.import_eur_per_kwh), slots.map((h) => h.surplus_eur_per_kwh)]);
    pc.gestorNow = now;
    const ul = $("#prices-min-run");
    ul.textContent = "";
    for (const [name, starts] of Object.entries(p.min_run || {})) {
      const li = document.createElement("li");
      li.textContent = t("min_run", { load: loadName(name), hours: starts.map((s) => hhmm(s)).join(", ") || "–" });
      ul.appendChild(li);
    }
    if (!ul.children.length) { const li = document.createElement("li"); li.textContent = t("min_run_none"); ul.appendChild(li); }
  }

  // --- what gestor did, and why -------------------------------------------------------------
  const decisionLoad = $("#decisions-load");
  decisionLoad.addEventListener("change", () => showDecisions());
  async function showDecisions() {
    const day = dateInput.value;
    if (!day || view !== "day") { $("#decisions").hidden = view !== "day" || $("#decisions").hidden; return; }
    let rows;
    const load = decisionLoad.value;
    try { rows = await api(`/api/decisions?date=${encodeURIComponent(day)}${load ? `&load=${encodeURIComponent(load)}` : ""}`); }
    catch (e) { $("#decisions").hidden = true; return; }
    $("#decisions").hidden = false;
    const tbody = $("#decisions-table tbody");
    const cards = $("#decisions-cards");  // the same rows as cards, for a phone (style.css shows one or the other)
    tbody.textContent = ""; cards.textContent = "";
    for (const r of rows) {
      const tr = document.createElement("tr");
      const why = r.reason_text || r.reason || "";
      const cells = [hhmm(r.at), loadName(r.load), t(`switched_${r.on ? "on" : "off"}_${gender(r.load)}`),
        r.ok === false ? `${why} — ${t("failed", { error: r.error || "?" })}` : why];
      cells.forEach((c, i) => { const td = document.createElement("td"); td.textContent = c; if (i === 3 && r.ok === false) td.className = "neg"; tr.appendChild(td); });
      tbody.appendChild(tr);
      const li = document.createElement("li");
      const head = document.createElement("div"); head.className = "decision-head";
      for (const [cls, text] of [["time", cells[0]], ["decision-load", cells[1]], [r.on ? "change on" : "change", cells[2]]]) {
        const span = document.createElement("span"); span.className = cls; span.textContent = text; head.appendChild(span);
      }
      const p = document.createElement("p"); p.className = r.ok === false ? "why neg" : "why"; p.textContent = cells[3];
      li.append(head, p);
      cards.appendChild(li);
    }
    $("#decisions-table").hidden = rows.length === 0;
    cards.hidden = rows.length === 0;
    $("#decisions-empty").textContent = rows.length ? "" : t("no_decisions");
  }

  // the system's dark mode switched while the page is open: the charts are drawn again in its colours
  const scheme = window.matchMedia("(prefers-color-scheme: dark)");
  scheme.addEventListener("change", () => {
    for (const id of Object.keys(charts)) { charts[id].destroy(); delete charts[id]; }
    if (lastStatus) render(lastStatus);
    showRange(); if (dateInput.max) showPrices(dateInput.max);
  });

  poll();
  setInterval(poll, POLL_MS);
})();
