// gestor's page: the month shown compared with the month before and the same month a year
// before (consumption in kWh, the cost with gestor and the saving in €; three columns: a 360 px phone), from the
// same /api/range the charts use. app.js says which range it shows ("gestor:range" event); a
// month with no settlement period stored shows "–" (not 0: a missing month is not a free one).
"use strict";
(function () {
  const P = window.gestorPage;
  const table = document.getElementById("compare");
  if (!P || !table) return;
  const { kwh, eur, cap, api, dtf } = P;
  const monthTitle = dtf({ month: "long", year: "numeric" });
  let asked = 0;
  const shift = (day, months) => {  // the 15th of the month `months` away (a date string, no clock)
    const [y, m] = day.split("-").map(Number);
    const d = new Date(Date.UTC(y, m - 1 + months, 15));
    return d.toISOString().slice(0, 10);
  };
  document.addEventListener("gestor:range", async (ev) => {
    const { view, day, range } = ev.detail;
    const mine = ++asked;
    if (view !== "month") { table.hidden = true; return; }
    const others = await Promise.all([shift(day, -1), shift(day, -12)].map((d) =>
      api(`/api/range?view=month&date=${encodeURIComponent(d)}`).catch(() => null)));
    if (mine !== asked) return;
    const rows = [range, others[0], others[1]];
    const tbody = table.querySelector("tbody");
    tbody.textContent = "";
    for (const r of rows) {
      const tot = r && r.totals;
      const has = !!(tot && tot.periods > 0);
      const tr = document.createElement("tr");
      tr.dataset.periods = has ? String(tot.periods) : "0";
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = r ? cap(monthTitle.format(new Date(r.start))) : "–";
      const cells = has ? [kwh(tot.consumption_wh, 0), eur(tot.cost_eur), eur(tot.saved_eur)] : ["–", "–", "–"];
      tr.appendChild(th);
      for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
      tbody.appendChild(tr);
    }
    table.hidden = false;
  });
})();
