// The worklist: live rows (server-sent events), an alert for a new critical result, and keys.
"use strict";
(function () {
  const list = document.getElementById("worklist");
  if (!list) return;
  const tbody = document.getElementById("rows");
  const alerts = document.getElementById("alerts");
  const live = document.getElementById("live");
  const query = list.dataset.refresh;

  function rows() {
    return Array.from(tbody.querySelectorAll("tr.item"));
  }

  let refreshing = null;
  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      const focused = document.activeElement && document.activeElement.dataset
        ? document.activeElement.dataset.uid : null;
      const response = await fetch("/worklist/rows?" + query, { credentials: "same-origin" });
      // The session ended: the server sent the login page instead; show it.
      if (response.redirected || response.status === 401) { location.reload(); return; }
      if (!response.ok) return;
      // The fragment is server-rendered HTML with every value escaped.
      const html = await response.text();
      const template = document.createElement("template");
      template.innerHTML = html;
      tbody.replaceChildren(template.content);
      if (focused) {
        const again = tbody.querySelector('tr.item[data-uid="' + CSS.escape(focused) + '"]');
        if (again) again.focus();
      }
    })().finally(() => { refreshing = null; });
    return refreshing;
  }

  function alertCritical(data) {
    const box = document.createElement("div");
    box.className = "critical-alert";
    // A link only to a study whose UID is a DICOM UID (the server refuses any other).
    const text = document.createElement(/^[0-9.]{1,64}$/.test(data.uid) ? "a" : "span");
    if (text.tagName === "A") text.href = "/studies/" + data.uid;
    text.textContent = "New critical result: " + (data.patient || "unnamed patient") +
      (data.impression ? " — " + data.impression : "");
    const close = document.createElement("button");
    close.type = "button";
    close.textContent = "Dismiss";
    close.addEventListener("click", () => box.remove());
    box.append(text, " ", close);
    alerts.append(box);
  }

  const events = new EventSource("/events");
  events.addEventListener("open", () => live.classList.add("on"));
  events.addEventListener("error", () => live.classList.remove("on"));
  events.addEventListener("study", refresh);
  events.addEventListener("lagged", refresh);
  events.addEventListener("critical", (e) => {
    try { alertCritical(JSON.parse(e.data)); } catch (_) { /* a malformed event is ignored */ }
    refresh();
  });

  function move(step) {
    const all = rows();
    if (!all.length) return;
    const at = all.indexOf(document.activeElement);
    const next = all[Math.max(0, Math.min(all.length - 1, at < 0 ? 0 : at + step))];
    next.focus();
  }

  tbody.addEventListener("click", (e) => {
    const row = e.target.closest("tr.item");
    if (row && !e.target.closest("a, button, form")) location.href = row.dataset.href;
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "j" || e.key === "ArrowDown") { move(1); e.preventDefault(); }
    else if (e.key === "k" || e.key === "ArrowUp") { move(-1); e.preventDefault(); }
    else if (e.key === "Enter" && document.activeElement.matches("tr.item")) {
      location.href = document.activeElement.dataset.href;
    } else if (e.key === "c" && document.activeElement.matches("tr.item")) {
      const claim = document.activeElement.querySelector("button.claim");
      if (claim) claim.click();
    } else if (e.key === "/") { document.getElementById("filter-status").focus(); e.preventDefault(); }
    else if (e.key === "r") { refresh(); }
  });
  const first = rows()[0];
  if (first) first.focus();
})();
