// gestor setup's steps in the page (gestor/web/setup_page.py): find, check the meter, switch the
// relays, the loads and the tariff, the settings' diff, and the proposal the Pi applies as root.
"use strict";
(function () {
  const T = JSON.parse(document.getElementById("setup-i18n").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const locale = document.body.dataset.locale || undefined;
  const $ = (id) => document.getElementById(id);
  const fmt = (s, v) => s.replace(/\{(\w+)\}/g, (m, k) => (k in v ? v[k] : m));
  let meters = [], relays = [];

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  async function post(path, body) {
    const r = await fetch(path, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf}, body: JSON.stringify(body)});
    const d = await r.json().catch(() => ({error: r.statusText}));
    if (!r.ok) throw new Error(d.error || r.statusText);
    return d;
  }

  function power(w) {
    const a = Math.abs(w);
    const text = a >= 1000 ? new Intl.NumberFormat(locale, {maximumFractionDigits: 1}).format(a / 1000) + " kW"
      : new Intl.NumberFormat(locale, {maximumFractionDigits: 0}).format(a) + " W";
    if (a < 0.5) return T.balanced;
    return fmt(w > 0 ? T.exporting : T.importing, {power: text});
  }

  function chosenMeter() {
    const r = document.querySelector('input[name="meter"]:checked');
    return r ? Number(r.value) : null;
  }

  function describe(f) {
    let s = f.label + " · " + fmt(T.by, {how: T["how_" + f.how] || f.how});
    if (f.channels > 1) s += " · " + fmt(T.channels, {n: f.channels});
    if (f.needs_password) s += " · " + T.password;
    return s;
  }

  $("find").addEventListener("click", async () => {
    $("find-status").textContent = T.searching;
    const finders = [...document.querySelectorAll('input[name="finder"]:checked')].map((x) => x.value);
    const hosts = $("hosts").value.split(",").map((x) => x.trim()).filter(Boolean);
    try {
      const d = await post("/setup/api/find", {finders, network: $("network").value.trim(), hosts});
      meters = d.meters; relays = d.relays;
      $("find-status").textContent = (meters.length + relays.length ? "" : T.none_found)
        + (d.skipped.length ? " " + fmt(T.skipped, {finders: d.skipped.join(", ")}) : "");
      const m = $("meters"); m.replaceChildren();
      meters.forEach((f, i) => {
        const label = el("label");
        const input = el("input", {type: "radio", name: "meter", value: String(f.id)});
        if (i === 0) input.checked = true;
        label.append(input, " " + describe(f));
        m.append(el("div"), label);
      });
      $("relays").replaceChildren(...relays.map((f) => el("li", {}, describe(f))));
      drawRelayButtons();
      $("loads").replaceChildren();
    } catch (e) {
      $("find-status").textContent = fmt(T.failed, {error: e.message});
    }
  });

  $("read").addEventListener("click", async () => {
    const meter = chosenMeter();
    const out = $("readings");
    if (meter === null) { out.replaceChildren(el("li", {}, T.choose_meter)); return; }
    out.replaceChildren(el("li", {}, T.reading));
    try {
      const d = await post("/setup/api/read", {meter, flipped: $("flipped").checked});
      out.replaceChildren(...d.net_w.map((w, i) => el("li", {}, fmt(T.read_n, {n: i + 1, words: power(w)}))),
        ...d.errors.map((e) => el("li", {}, fmt(T.no_reading, {error: e}))));
    } catch (e) {
      out.replaceChildren(el("li", {}, fmt(T.failed, {error: e.message})));
    }
  });

  function drawRelayButtons() {
    const box = $("relay-buttons"); box.replaceChildren();
    relays.forEach((f) => {
      for (let ch = 0; ch < f.channels; ch++) {
        const row = el("div", {class: "controls"});
        row.append(el("span", {}, f.label + " · " + fmt(T.channel_n, {n: ch})));
        for (const on of [true, false]) {
          const b = el("button", {}, on ? T.switch_on : T.switch_off);
          b.addEventListener("click", async () => {
            try {
              const d = await post("/setup/api/relay", {relay: f.id, channel: ch, on});
              $("relay-status").textContent = fmt(T.relay_state, {relay: f.label, channel: ch, state: d.on ? T.on : T.off});
            } catch (e) {
              $("relay-status").textContent = fmt(T.failed, {error: e.message});
            }
          });
          row.append(b);
        }
        box.append(row);
      }
    });
  }

  let nLoads = 0;
  $("add-load").addEventListener("click", () => {
    if (!relays.length) return;
    const i = nLoads++;
    const row = el("div", {class: "controls load-row"});
    const name = el("input", {id: `load-name-${i}`, class: "load-name", size: "14"});
    const pw = el("input", {id: `load-power-${i}`, class: "load-power", inputmode: "numeric", size: "6"});
    const relay = el("select", {id: `load-relay-${i}`, class: "load-relay"});
    relays.forEach((f) => relay.append(el("option", {value: String(f.id)}, f.label)));
    const channel = el("input", {id: `load-channel-${i}`, class: "load-channel", inputmode: "numeric", size: "2", value: "0"});
    const rm = el("button", {}, T.remove);
    rm.addEventListener("click", () => row.remove());
    row.append(el("label", {for: name.id}, T.name), name, el("label", {for: pw.id}, T.power_w), pw,
      el("label", {for: relay.id}, T.relay), relay, el("label", {for: channel.id}, T.channel), channel, rm);
    $("loads").append(row);
  });

  $("tariff").addEventListener("change", () => { $("prices").hidden = $("tariff").value !== "fixed"; });

  function proposal(apply) {
    const loads = [...document.querySelectorAll(".load-row")].map((r) => ({
      name: r.querySelector(".load-name").value.trim(), power_w: Number(r.querySelector(".load-power").value),
      relay: Number(r.querySelector(".load-relay").value), channel: Number(r.querySelector(".load-channel").value)}));
    const body = {meter: chosenMeter(), flipped: $("flipped").checked, loads, tariff: $("tariff").value, apply};
    if (body.tariff === "fixed") {
      body.prices = Object.fromEntries(["p1", "p2", "p3", "surplus"].map((k) => [k, Number($(k).value.replace(",", "."))]));
    }
    return body;
  }

  async function send(apply) {
    if (chosenMeter() === null) { $("apply-status").textContent = T.choose_meter; return; }
    try {
      const d = await post("/setup/api/propose", proposal(apply));
      $("diff").textContent = d.diff || T.no_change;
      $("apply-status").textContent = apply ? T.proposed : "";
      if (apply) waitResult(0);
    } catch (e) {
      $("apply-status").textContent = fmt(T.failed, {error: e.message});
    }
  }

  async function waitResult(n) {
    const r = await fetch("/setup/api/result", {credentials: "same-origin"});
    const d = await r.json().catch(() => ({}));
    if (d.pending || !("ok" in d)) {
      $("apply-status").textContent = T.pending;
      if (n < 60) setTimeout(() => waitResult(n + 1), 2000);
      return;
    }
    $("apply-status").textContent = fmt(d.ok ? T.applied : T.refused, {message: d.message});
  }

  $("show-diff").addEventListener("click", () => send(false));
  $("apply").addEventListener("click", () => send(true));
})();
