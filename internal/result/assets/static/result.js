// Keeps the results live: a WebSocket to /ws sends the whole result on connect and on
// every change. When the socket drops, it reconnects with exponential backoff (with jitter,
// so a restarted server is not hit by every browser at once) and shows the state.
"use strict";
(() => {
  const conn = document.getElementById("connection");
  const totalEl = document.getElementById("total");
  const history = document.getElementById("history");
  const series = []; // [{t, counts: {id: n}}], newest last
  const maxPoints = 120;
  const svgNS = "http://www.w3.org/2000/svg";

  const setState = (state, text) => {
    conn.className = "conn " + state;
    conn.querySelector(".text").textContent = text;
    document.body.dataset.connection = state;
  };

  const render = (res) => {
    for (const o of res.options) {
      const row = document.querySelector(`.row[data-option="${CSS.escape(o.id)}"]`);
      if (!row) continue;
      row.querySelector(".count").textContent = o.count;
      row.querySelector(".percent").textContent = o.percent.toFixed(1) + "%";
      row.querySelector(".fill").setAttribute("width", o.percent.toFixed(2));
    }
    document.getElementById("results").dataset.total = res.total;
    totalEl.textContent = "";
    if (res.total > 0) {
      const n = document.createElement("span");
      n.id = "total-count";
      n.textContent = res.total;
      totalEl.append(n, " votes in total");
    } else {
      totalEl.textContent = "No votes yet";
    }
    const counts = {};
    for (const o of res.options) counts[o.id] = o.count;
    series.push({ t: Date.now(), counts });
    if (series.length > maxPoints) series.shift();
    drawHistory(res.options);
  };

  const drawHistory = (options) => {
    history.replaceChildren();
    if (series.length < 2) return;
    const t0 = series[0].t, t1 = series[series.length - 1].t || t0 + 1;
    let max = 1;
    for (const p of series) for (const id in p.counts) max = Math.max(max, p.counts[id]);
    options.forEach((o, i) => {
      const line = document.createElementNS(svgNS, "polyline");
      line.setAttribute("class", "opt-" + i);
      line.setAttribute("points", series.map((p) =>
        `${(((p.t - t0) / Math.max(1, t1 - t0)) * 300).toFixed(1)},${(78 - ((p.counts[o.id] || 0) / max) * 76).toFixed(1)}`).join(" "));
      history.append(line);
    });
  };

  let delay = 500;
  const connect = () => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.onopen = () => { delay = 500; setState("live", "live"); };
    ws.onmessage = (ev) => { try { render(JSON.parse(ev.data)); } catch (e) { console.error(e); } };
    ws.onclose = () => {
      const wait = delay / 2 + Math.random() * delay / 2;
      setState("reconnecting", "reconnecting…");
      setTimeout(connect, wait);
      delay = Math.min(delay * 2, 10000);
    };
  };
  document.addEventListener("DOMContentLoaded", connect);
})();
