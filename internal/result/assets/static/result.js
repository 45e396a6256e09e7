// Keeps the results page live. A WebSocket to /ws sends the whole result on connect and on
// every change; each one updates the numbers, the bars and the chart of votes over time.
// When the socket drops, it reconnects with exponential backoff and jitter (so a restarted
// server is not hit by every browser at once) and says so on the page. Without JavaScript
// the page still shows the numbers the server rendered.
"use strict";
(() => {
  const svgNS = "http://www.w3.org/2000/svg";
  // The chart spans the time since the page opened, at least minSpan (so the first seconds
  // do not zoom in on nothing) and at most maxSpan, after which old points scroll away.
  const minSpan = 5 * 1000;
  const maxSpan = 10 * 60 * 1000;

  let conn, connText, results, totalEl, chart, updated, instanceEl, pipelineEl, drillsEl;
  const rows = new Map(); // option id -> its elements
  const series = []; // [{t, counts: {id: n}, total}], oldest first

  const el = (name, attrs, text) => {
    const e = document.createElementNS(svgNS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };

  const clock = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

  // bump replays a short emphasis on a number that just changed.
  const bump = (e) => {
    e.classList.remove("bump");
    void e.offsetWidth; // restart the animation
    e.classList.add("bump");
  };

  const record = (counts, total) => {
    const last = series[series.length - 1];
    if (last && last.total === total && Object.keys(counts).every((id) => last.counts[id] === counts[id])) return;
    series.push({ t: Date.now(), counts, total });
    // A busy vote sends several updates a second; beyond this many points the oldest go, so
    // a page left open under load keeps drawing quickly.
    if (series.length > 3000) series.splice(0, series.length - 3000);
  };

  const render = (res) => {
    const counts = {};
    for (const o of res.options) {
      counts[o.id] = o.count;
      const r = rows.get(o.id);
      if (!r) continue;
      const pct = o.percent.toFixed(1) + "%";
      if (r.count.textContent !== String(o.count)) {
        r.count.textContent = o.count;
        bump(r.count);
      }
      r.unit.textContent = o.count === 1 ? "vote" : "votes";
      if (r.percent.textContent !== pct) {
        r.percent.textContent = pct;
        bump(r.percent);
      }
      const w = o.percent.toFixed(2) + "%";
      r.fill.setAttribute("width", w);
      r.fill.style.width = w; // a CSS width animates; the attribute keeps the DOM truthful
    }
    results.dataset.total = res.total;
    if (res.total > 0) {
      const n = document.createElement("span");
      n.id = "total-count";
      n.textContent = res.total;
      totalEl.replaceChildren(n, res.total === 1 ? " vote in total" : " votes in total");
    } else {
      totalEl.replaceChildren("No votes yet");
    }
    updated.textContent = "updated " + clock(Date.now());
    // The drill faults that are on, this service's and the workers'.
    drillsEl.replaceChildren(...(res.drills || []).map((d) => {
      const n = document.createElement("p");
      n.className = "drill";
      n.setAttribute("role", "alert");
      n.textContent = d;
      return n;
    }));
    // Whether counting is up to date (an older server sends no pipeline: the line stays).
    if (res.pipeline) {
      pipelineEl.dataset.state = res.pipeline.state;
      pipelineEl.textContent = res.pipeline.message;
      pipelineEl.hidden = false;
    }
    // After a reconnect another replica may be the one pushing.
    if (res.instance && instanceEl.textContent !== res.instance) instanceEl.textContent = res.instance;
    record(counts, res.total);
    draw();
  };

  // scale returns the top of the y axis and the step between grid lines: 1, 2 or 5 times a
  // power of ten, about four lines high.
  const scale = (max) => {
    if (max <= 4) return { top: 4, step: 1 };
    const raw = max / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
    return { top: Math.ceil(max / step) * step, step };
  };

  // draw redraws the chart of votes over time: one stepped line per option (a count holds
  // until the next change), drawn in the chart's own pixels so the text is never stretched.
  const draw = () => {
    const w = chart.clientWidth, h = chart.clientHeight;
    if (!w || !h || series.length === 0) return;
    chart.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const now = Date.now();
    while (series.length > 1 && series[1].t <= now - maxSpan) series.shift();
    const t0 = Math.max(series[0].t, now - maxSpan);
    const t1 = Math.max(now, t0 + minSpan);
    const pad = { l: 44, r: 48, t: 10, b: 26 }; // the right margin holds the end labels
    const x = (t) => pad.l + ((Math.max(t, t0) - t0) / (t1 - t0)) * (w - pad.l - pad.r);
    let max = 0;
    for (const p of series) for (const id in p.counts) max = Math.max(max, p.counts[id]);
    const { top, step } = scale(max);
    const y = (v) => pad.t + (1 - v / top) * (h - pad.t - pad.b);

    const nodes = [];
    const grid = el("g", { class: "grid-lines" });
    for (let v = 0; v <= top; v += step) {
      grid.append(el("line", { class: "grid", x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v) }),
        el("text", { class: "axis", x: pad.l - 8, y: y(v) + 4, "text-anchor": "end" }, v));
    }
    grid.append(el("text", { class: "axis", x: pad.l, y: h - 6, "text-anchor": "start" }, clock(t0)),
      el("text", { class: "axis", x: w - pad.r, y: h - 6, "text-anchor": "end" }, clock(t1)));
    nodes.push(grid);

    const last = series[series.length - 1];
    const summary = [];
    const ends = [];
    let i = 0;
    for (const [id, r] of rows) {
      let d = `M${x(series[0].t).toFixed(1)},${y(series[0].counts[id] || 0).toFixed(1)}`;
      for (const p of series.slice(1)) d += `H${x(p.t).toFixed(1)}V${y(p.counts[id] || 0).toFixed(1)}`;
      d += `H${x(now).toFixed(1)}`;
      const n = last.counts[id] || 0;
      const g = el("g", { class: "series", "data-index": i, "data-option": id, "data-count": n });
      g.append(el("path", { class: "line", d }),
        el("circle", { class: "end", cx: x(now).toFixed(1), cy: y(n).toFixed(1), r: 4.5 }));
      nodes.push(g);
      ends.push({ g, y: y(n), n });
      summary.push(`${r.label} ${n}`);
      i++;
    }
    // Each line ends with its count. Labels closer than a line of text are pushed apart,
    // downwards, then upwards again where that would take them below the axis.
    if (last.total > 0) {
      const gap = 15;
      ends.sort((p, q) => p.y - q.y);
      for (let k = 1; k < ends.length; k++) ends[k].y = Math.max(ends[k].y, ends[k - 1].y + gap);
      for (let k = ends.length - 1; k >= 0; k--) ends[k].y = Math.min(ends[k].y, (k === ends.length - 1 ? y(0) : ends[k + 1].y - gap));
      for (const e of ends) {
        e.g.append(el("text", { class: "end-label", x: (x(now) + 9).toFixed(1), y: (e.y + 4.5).toFixed(1) }, e.n));
      }
    }
    if (last.total === 0) {
      nodes.push(el("text", { class: "empty", x: (pad.l + w - pad.r) / 2, y: (pad.t + h - pad.b) / 2, "text-anchor": "middle" },
        "No votes yet: the lines rise with the first vote"));
    }
    chart.replaceChildren(...nodes);
    chart.dataset.points = series.length;
    chart.setAttribute("aria-label", `Votes over time since ${clock(t0)}: ${summary.join(", ")}`);
  };

  const setState = (state, text) => {
    conn.hidden = false;
    conn.className = "conn " + state;
    connText.textContent = text;
    document.body.dataset.connection = state;
  };

  // Reconnect delays grow from about 0.5 s to at most 10 s; each is drawn from the upper half
  // of its range so that browsers dropped together come back spread out.
  let attempt = 0, timer = 0, socket = null;
  const connect = () => {
    clearTimeout(timer);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    socket = ws;
    ws.onopen = () => {
      attempt = 0;
      setState("live", "Live");
    };
    ws.onmessage = (ev) => {
      try {
        render(JSON.parse(ev.data));
      } catch (err) {
        console.error("result update:", err);
      }
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      const base = Math.min(500 * 2 ** attempt, 10000);
      attempt++;
      setState("reconnecting", "Reconnecting…");
      timer = setTimeout(connect, base / 2 + Math.random() * base / 2);
    };
  };

  document.addEventListener("DOMContentLoaded", () => {
    conn = document.getElementById("connection");
    connText = conn.querySelector(".text");
    results = document.getElementById("results");
    totalEl = document.getElementById("total");
    chart = document.getElementById("history");
    updated = document.getElementById("updated");
    instanceEl = document.getElementById("instance");
    pipelineEl = document.getElementById("pipeline");
    drillsEl = document.getElementById("drills");
    const counts = {};
    for (const row of results.querySelectorAll(".row[data-option]")) {
      const r = {
        label: row.querySelector(".label").textContent,
        count: row.querySelector(".count"),
        unit: row.querySelector(".unit"),
        percent: row.querySelector(".percent"),
        fill: row.querySelector(".fill"),
      };
      rows.set(row.dataset.option, r);
      counts[row.dataset.option] = Number(r.count.textContent) || 0;
    }
    // The numbers the server rendered are the chart's first point.
    record(counts, Number(results.dataset.total) || 0);
    document.getElementById("timeline").hidden = false;
    setState("connecting", "Connecting…");
    draw();
    new ResizeObserver(draw).observe(chart);
    setInterval(draw, 1000); // the lines run on to "now" even when nobody votes
    // A browser that comes back online or to the foreground retries at once instead of
    // waiting out a long backoff.
    const retry = () => { if (socket && socket.readyState === WebSocket.CLOSED) { attempt = 0; connect(); } };
    window.addEventListener("online", retry);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) retry(); });
    connect();
  });
})();
