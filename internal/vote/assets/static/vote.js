// Enhances the plain form: a vote goes to /api/vote without reloading the page, and the
// page marks it the way the server would after a form POST. Without JavaScript (or if this
// script fails to load) the form posts to / and the server renders the same page.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("ballot");
  const status = document.getElementById("status");
  if (!form || !window.fetch) return;
  const buttons = Array.from(form.querySelectorAll("button.option"));
  // One vote in flight at a time: a double click, or a second choice made before the
  // first is answered, is not sent. The buttons say so (aria-disabled) but keep the
  // keyboard focus, which the disabled attribute would take away.
  let inFlight = false;
  const busy = (on) => {
    inFlight = on;
    form.classList.toggle("busy", on);
    if (on) form.setAttribute("aria-busy", "true");
    else form.removeAttribute("aria-busy");
    for (const b of buttons) {
      if (on) b.setAttribute("aria-disabled", "true");
      else b.removeAttribute("aria-disabled");
    }
  };

  const say = (...parts) => {
    status.replaceChildren(...parts);
  };

  const mark = (id) => {
    form.classList.add("voted");
    form.dataset.choice = id;
    let label = id;
    for (const b of buttons) {
      const on = b.value === id;
      b.classList.toggle("chosen", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
      if (on) label = b.querySelector(".label").textContent;
    }
    const strong = document.createElement("strong");
    strong.textContent = label;
    say("You voted for ", strong, ". Choose another option to change your vote.");
  };

  form.addEventListener("submit", async (ev) => {
    const button = ev.submitter;
    if (!button || !button.value) return; // let the browser post the form
    ev.preventDefault();
    if (inFlight) return;
    busy(true);
    try {
      const res = await fetch("/api/vote", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ vote: button.value }),
        credentials: "same-origin",
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.error || `the server answered ${res.status}`);
      mark(body.vote);
    } catch (err) {
      const span = document.createElement("span");
      span.className = "error";
      // fetch rejects with a TypeError when the server cannot be reached at all.
      const why = err instanceof TypeError ? "the server could not be reached" : err.message;
      span.textContent = `Your vote was not recorded: ${why}. Please try again.`;
      say(span);
    } finally {
      busy(false);
    }
  });
});
