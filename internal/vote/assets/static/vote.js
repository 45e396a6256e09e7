// Enhances the plain form: votes go to /api/vote without reloading the page. Without
// JavaScript the form posts to / and the server renders the same page.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("ballot");
  const status = document.getElementById("status");
  if (!form || !window.fetch) return;

  const mark = (id) => {
    form.classList.add("voted");
    form.dataset.choice = id;
    for (const b of form.querySelectorAll("button.option")) {
      const on = b.value === id;
      b.classList.toggle("chosen", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
    const chosen = form.querySelector(`button.option[value="${CSS.escape(id)}"] .label`);
    status.textContent = "";
    status.append("You voted for ", Object.assign(document.createElement("strong"), { textContent: chosen ? chosen.textContent : id }), ". You can change your vote.");
  };

  form.addEventListener("submit", async (ev) => {
    const button = ev.submitter;
    if (!button || !button.value) return; // let the browser post the form
    ev.preventDefault();
    form.classList.add("busy");
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
      status.innerHTML = "";
      status.append(Object.assign(document.createElement("span"), { className: "error", textContent: `Your vote was not recorded: ${err.message}. Please try again.` }));
    } finally {
      form.classList.remove("busy");
    }
  });
});
