// Budget what-if: POST the form to the service's /allocate with the console's key, then draw the plan
// (stacked bars per week and channel, the reserve beside them) and the per-channel summary.
(function () {
  var PALETTE = ["#2563eb", "#f97316", "#16a34a", "#dc2626", "#7c3aed", "#0891b2", "#ca8a04", "#db2777", "#475569"];
  var form = document.getElementById("whatif");
  var status = document.getElementById("status");

  function key() {
    var m = document.cookie.match(/(?:^|;\s*)omnidecide_key=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function money(x) { return Math.round(x).toLocaleString("en-US"); }

  function svgEl(name, attrs) {
    var el = document.createElementNS("http://www.w3.org/2000/svg", name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    return el;
  }

  function draw(plan) {
    var channels = Object.keys(plan.per_channel);
    var weeks = {};
    plan.rows.forEach(function (r) {
      if (r.channel === "reserve") return;
      weeks[r.period] = weeks[r.period] || {};
      weeks[r.period][r.channel] = (weeks[r.period][r.channel] || 0) + r.spend;
    });
    var periods = Object.keys(weeks).map(Number).sort(function (a, b) { return a - b; });
    var bars = periods.map(function (p) { return { label: "W" + p, parts: weeks[p] }; });
    if (plan.reserve > 0) bars.push({ label: "reserve", parts: { reserve: plan.reserve } });
    var top = Math.max.apply(null, bars.map(function (b) {
      return Object.values(b.parts).reduce(function (s, v) { return s + v; }, 0);
    })) || 1;
    var svg = document.getElementById("chart");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = 640, H = 260, left = 56, bottom = 24, bw = (W - left) / bars.length;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    [0, 0.5, 1].forEach(function (f) {
      var y = H - bottom - f * (H - bottom - 8);
      svg.appendChild(svgEl("line", { x1: left, x2: W, y1: y, y2: y, stroke: "#e2e8f0" }));
      var t = svgEl("text", { x: left - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#475569" });
      t.textContent = money(top * f);
      svg.appendChild(t);
    });
    bars.forEach(function (b, i) {
      var y = H - bottom;
      Object.keys(b.parts).forEach(function (ch) {
        var h = b.parts[ch] / top * (H - bottom - 8);
        y -= h;
        var c = ch === "reserve" ? "#cbd5e1" : PALETTE[channels.indexOf(ch) % PALETTE.length];
        var rect = svgEl("rect", { x: left + i * bw + 3, y: y, width: Math.max(bw - 6, 1), height: h, fill: c,
                                   "data-channel": ch });
        var tip = svgEl("title", {});
        tip.textContent = b.label + " " + ch + ": " + money(b.parts[ch]);
        rect.appendChild(tip);
        svg.appendChild(rect);
      });
      var t = svgEl("text", { x: left + i * bw + bw / 2, y: H - 8, "text-anchor": "middle", "font-size": 10,
                              fill: "#475569" });
      t.textContent = b.label;
      svg.appendChild(t);
    });
    var legend = document.getElementById("legend");
    legend.innerHTML = "";
    channels.concat(plan.reserve > 0 ? ["reserve"] : []).forEach(function (ch, i) {
      var s = document.createElement("span");
      var sw = document.createElement("i");
      sw.style.background = ch === "reserve" ? "#cbd5e1" : PALETTE[i % PALETTE.length];
      s.appendChild(sw);
      s.appendChild(document.createTextNode(ch));
      legend.appendChild(s);
    });
    var body = document.querySelector("#per-channel tbody");
    body.innerHTML = "";
    channels.forEach(function (ch) {
      var c = plan.per_channel[ch], tr = document.createElement("tr");
      [ch, money(c.spend), money(c.incremental_revenue), c.roi == null ? "—" : c.roi.toFixed(2),
       c.marginal_roi.toFixed(2)].forEach(function (v) {
        var td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    document.getElementById("summary").textContent = "Plan from " + plan.model + ": spend " + money(plan.planned_spend) +
      ", reserve " + money(plan.reserve) + ", expected incremental revenue " + money(plan.expected_incremental_revenue) +
      (plan.roi == null ? "" : " (ROI " + plan.roi.toFixed(2) + ")") + ".";
    document.getElementById("result").hidden = false;
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = new FormData(form);
    var body = { budget: Number(f.get("budget")), periods: Number(f.get("periods")),
                 reserve: Number(f.get("reserve")) / 100 };
    var headers = { "content-type": "application/json" };
    if (key()) headers.authorization = "Bearer " + key();
    status.textContent = "planning…";
    fetch(form.dataset.allocate, { method: "POST", headers: headers, body: JSON.stringify(body) })
      .then(function (r) {
        return r.text().then(function (t) {
          if (!r.ok) throw new Error(r.status + ": " + t.slice(0, 300));
          return JSON.parse(t);
        });
      })
      .then(function (plan) { draw(plan); status.textContent = "planned in " + Math.round(plan.latency_ms) + " ms"; })
      .catch(function (e) { status.textContent = "failed: " + e.message; });
  });
})();
