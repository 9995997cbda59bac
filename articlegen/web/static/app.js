// The review workspace's own script: keyboard shortcuts and live job counts. Every page
// works without it; nothing here is fetched from elsewhere.
"use strict";

function typing(event) {
  const target = event.target;
  return target.closest("input, textarea, select, [contenteditable]") !== null;
}

function follow(selector) {
  const link = document.querySelector(selector);
  if (link) window.location.assign(link.href);
}

function moveRow(step) {
  const links = Array.from(document.querySelectorAll("[data-row-link]"));
  if (!links.length) return false;
  const at = links.indexOf(document.activeElement);
  const next = links[Math.min(links.length - 1, Math.max(0, at < 0 ? 0 : at + step))];
  next.focus();
  return true;
}

function toggleHelp() {
  const help = document.getElementById("help");
  if (!help) return;
  if (help.open) help.close(); else help.showModal();
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
  switch (event.key) {
    case "j":
      if (!moveRow(1)) follow('a[rel="next"][data-key]');
      break;
    case "k":
      if (!moveRow(-1)) follow('a[rel="prev"][data-key]');
      break;
    case "a": {
      const form = document.getElementById("approve-form");
      if (form) form.requestSubmit();
      break;
    }
    case "r": {
      const reason = document.getElementById("reject-reason");
      if (reason) { event.preventDefault(); reason.focus(); }
      break;
    }
    case "e":
      follow('a[data-key="e"]');
      break;
    case "?":
      toggleHelp();
      break;
    default:
      return;
  }
});

// Enter in the reason field submits the rejection (Shift+Enter: a new line).
document.addEventListener("keydown", (event) => {
  if (event.target.id === "reject-reason" && event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    event.target.form.requestSubmit();
  }
});

document.addEventListener("click", (event) => {
  if (event.target.closest("[data-help]")) toggleHelp();
});

// "Select every article on this page".
document.addEventListener("change", (event) => {
  if (!event.target.matches("[data-select-all]")) return;
  for (const box of document.querySelectorAll('input[name="ids"]')) box.checked = event.target.checked;
});

// Live counts on the jobs page.
const liveJobs = document.querySelector("[data-live-jobs]");
if (liveJobs) {
  const refresh = async () => {
    try {
      const response = await fetch("/jobs.json", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      for (const job of await response.json()) {
        const row = liveJobs.querySelector(`tr[data-job="${job.id}"]`);
        if (!row) continue;
        for (const field of ["done", "failed", "total", "finished"]) {
          const cell = row.querySelector(`[data-field="${field}"]`);
          if (cell) cell.textContent = String(job[field]);
        }
        const status = row.querySelector('[data-field="status"] span');
        if (status) { status.textContent = job.status; status.className = `status ${job.status}`; }
      }
    } catch (error) {
      // The server is away for a moment: try again at the next beat.
    }
  };
  setInterval(refresh, 2000);
}
