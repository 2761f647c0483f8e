// The live dashboard: every saved query (connectors/dashboard/*.sql) as a panel, from the
// sink's /dashboard/data, refreshed every few seconds. Charts: Chart.js, served by the
// sink itself (vendor/), no network beyond it. A token (when the sink requires one) is
// read from the page's fragment: /dashboard/#token=... (never sent in a URL to the server).
"use strict";

const REFRESH_MS = 5000;
const COLORS = ["#3867d6", "#20bf6b", "#f7b731", "#eb3b5a", "#8854d0", "#0fb9b1", "#fa8231",
                "#4b6584", "#a5b1c2", "#2d98da"];

const money = (v) => Number(v).toFixed(2);
const count = (v) => String(Math.round(Number(v)));
const pct = (v) => (100 * Number(v)).toFixed(1) + "%";
const sum = (rows, f) => rows.reduce((a, r) => a + Number(r[f] || 0), 0);

// name -> how to draw it: a chart of some columns, a headline of totals
const PANELS = {
  gmv_per_minute: {
    title: "GMV per minute by channel (24 h)", type: "line", series: "channel", newest: true,
    label: (r) => String(r.minute).slice(11, 16), value: "gmv",
    headline: (rows) => `GMV ${money(sum(rows, "gmv"))} · orders ${count(sum(rows, "orders"))}`,
  },
  online_offline_split: {
    title: "Online / offline (24 h)", type: "doughnut", label: (r) => r.side, value: "gmv",
    headline: (rows) => rows.map((r) => `${r.side} ${money(r.gmv)}`).join(" · "),
  },
  store_leaderboard: {
    title: "Store leaderboard (24 h)", type: "bar", label: (r) => r.store_id, value: "gmv",
    headline: (rows) => rows.length ? `top ${rows[0].store_id} ${money(rows[0].gmv)}` : "",
  },
  livestream_conversion: {
    title: "Livestream click → order", type: "bar", label: (r) => r.room_id,
    values: ["viewers", "buyers"],
    headline: (rows) => `viewers ${count(sum(rows, "viewers"))} · buyers ${count(sum(rows, "buyers"))}`,
  },
  red_envelope_conversion: {
    title: "Red envelope claim → purchase", type: "bar", label: (r) => r.campaign_id,
    values: ["claims", "refused", "orders"],
    headline: (rows) => `claims ${count(sum(rows, "claims"))} · orders ${count(sum(rows, "orders"))}`,
  },
  new_members_per_day: {
    title: "New members per day", type: "bar", label: (r) => String(r.day), newest: true,
    values: ["new_members", "from_public", "public_to_own"],
    headline: (rows) => `new members ${count(sum(rows, "new_members"))}`,
  },
  average_order_value: {
    title: "Average order value by channel", type: "bar", label: (r) => r.channel, value: "aov",
    headline: (rows) => `orders ${count(sum(rows, "orders"))}`,
  },
  repurchase_rate: {
    title: "Repurchase rate", type: "doughnut",
    slices: (r) => [["bought again", r.repeat_buyers], ["bought once", r.buyers - r.repeat_buyers]],
    headline: (rows) => rows.length ? `${pct(rows[0].repurchase_rate)} of ${count(rows[0].buyers)} buyers` : "",
  },
  points_liability: {
    title: "Points liability by rule", type: "bar", label: (r) => r.rule, value: "points",
    headline: (rows) => `outstanding ${count(sum(rows, "points"))} points`,
  },
  low_stock: {
    title: "Low-stock alerts", type: "bar", label: (r) => `${r.sku}@${r.location}`,
    value: "available", headline: (rows) => `${rows.length} SKU-locations low`,
  },
};

const state = { charts: {}, refreshes: 0, lastError: "" };
window.omniDashboard = state;

function token() {
  const m = /token=([^&]+)/.exec(window.location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

function panel(name, spec) {
  const section = document.createElement("section");
  section.id = "panel-" + name;
  section.innerHTML = `<h2>${spec.title}</h2><div class="headline"></div>` +
    `<div class="chart"><canvas></canvas></div><table></table>`;
  document.getElementById("panels").appendChild(section);
  return section;
}

function chartData(spec, rows) {
  if (spec.slices) {
    const pairs = rows.length ? spec.slices(rows[0]) : [];
    return { labels: pairs.map((p) => p[0]),
             datasets: [{ data: pairs.map((p) => Number(p[1])), backgroundColor: COLORS }] };
  }
  if (spec.series) {  // one line per series value, over the shared labels
    const labels = [...new Set(rows.map(spec.label))];
    const names = [...new Set(rows.map((r) => r[spec.series]))].sort();
    return {
      labels,
      datasets: names.map((n, i) => ({
        label: n, borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length],
        data: labels.map((l) => {
          const r = rows.find((x) => spec.label(x) === l && x[spec.series] === n);
          return r ? Number(r[spec.value]) : 0;
        }),
      })),
    };
  }
  const values = spec.values || [spec.value];
  return {
    labels: rows.map(spec.label),
    datasets: values.map((v, i) => ({
      label: v,
      data: rows.map((r) => Number(r[v])),
      backgroundColor: spec.type === "doughnut" ? COLORS : COLORS[i % COLORS.length],
    })),
  };
}

// the table under a chart: its first rows, or its newest for a time series
function table(el, columns, rows, newest) {
  if (!rows.length) {
    el.innerHTML = `<tr><td class="empty">no data yet</td></tr>`;
    return;
  }
  const head = "<tr>" + columns.map((c) => `<th>${c}</th>`).join("") + "</tr>";
  const shown = newest ? rows.slice(-12).reverse() : rows.slice(0, 12);
  const body = shown.map((r) => "<tr>" + columns.map((c) => {
    const v = r[c];
    const text = typeof v === "string" && /^-?\d+\.\d+$/.test(v) ? money(v) : v;
    return `<td>${text}</td>`;
  }).join("") + "</tr>").join("");
  el.innerHTML = head + body;
}

function render(data) {
  for (const [name, spec] of Object.entries(PANELS)) {
    const result = data[name];
    if (!result) continue;
    const section = document.getElementById("panel-" + name) || panel(name, spec);
    if (result.error) {
      section.querySelector(".headline").textContent = "error: " + result.error;
      continue;
    }
    const rows = result.rows.map((row) => Object.fromEntries(result.columns.map((c, i) => [c, row[i]])));
    section.querySelector(".headline").textContent = spec.headline(rows);
    table(section.querySelector("table"), result.columns, rows, spec.newest);
    const drawn = chartData(spec, rows);
    const chart = state.charts[name];
    if (chart) {
      chart.data = drawn;
      chart.update("none");
    } else {
      state.charts[name] = new Chart(section.querySelector("canvas"), {
        type: spec.type, data: drawn,
        options: { animation: false, maintainAspectRatio: false,
                   plugins: { legend: { display: spec.type !== "bar" || (spec.values || []).length > 1 } } },
      });
    }
  }
}

async function refresh() {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  try {
    const reply = await fetch("data", { headers, cache: "no-store" });
    if (!reply.ok) throw new Error(`${reply.status} ${reply.statusText}`);
    render(await reply.json());
    state.refreshes += 1;
    state.lastError = "";
    document.getElementById("error").textContent = "";
    document.getElementById("updated").textContent =
      "updated " + new Date().toLocaleTimeString() + ` · every ${REFRESH_MS / 1000} s`;
  } catch (e) {
    state.lastError = String(e);
    document.getElementById("error").textContent = "refresh failed: " + e;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
