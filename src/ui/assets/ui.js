// Mandate's people pages. Two jobs: refresh a live page when the state
// moves (another approver acted, a new request came in), and show a trail
// mark's decision record on click. No inline script: the CSP forbids it.
"use strict";

(function () {
  const main = document.getElementById("main");

  // Live pages carry the revision they were made at; poll for a newer one.
  if (main && main.dataset.revision) {
    let shown = main.dataset.revision;
    setInterval(async () => {
      try {
        const r = await fetch("/revision", { credentials: "same-origin", cache: "no-store" });
        if (!r.ok) return;
        const now = (await r.text()).trim();
        if (now === shown) return;
        const page = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
        if (!page.ok) return;
        const doc = new DOMParser().parseFromString(await page.text(), "text/html");
        const fresh = doc.getElementById("main");
        if (!fresh) return;
        main.innerHTML = fresh.innerHTML;
        shown = fresh.dataset.revision || now;
        main.dataset.revision = shown;
      } catch (_) {
        // Offline for a moment: the next tick tries again.
      }
    }, 1500);
  }

  // The trail picture: a click (or Enter) on a call shows its record.
  const data = document.getElementById("records");
  const panel = document.getElementById("record");
  if (data && panel) {
    const records = JSON.parse(data.textContent);
    const show = (mark) => {
      const rec = records[Number(mark.dataset.record)];
      if (!rec) return;
      document.querySelectorAll("rect.call.selected").forEach((m) => m.classList.remove("selected"));
      mark.classList.add("selected");
      const rows = [
        ["decision", rec.decision], ["time", rec.time], ["agent", rec.subject],
        ["caller", rec.caller], ["action", rec.action], ["resource", rec.resource],
        ["task", rec.task], ["determining policies", (rec.determining_policies || []).join(", ") || "none"],
        ["reasons", (rec.reasons || []).join(", ") || "none"], ["errors", (rec.errors || []).join("; ") || "none"],
        ["approval", rec.approval_id || ""], ["decision id", rec.decision_id], ["latency", rec.latency_us + " µs"],
      ];
      const dl = document.createElement("dl");
      for (const [k, v] of rows) {
        const dt = document.createElement("dt");
        dt.textContent = k;
        const dd = document.createElement("dd");
        dd.textContent = v == null ? "" : String(v);
        dd.dataset.field = k;
        dl.append(dt, dd);
      }
      panel.replaceChildren(dl);
      panel.hidden = false;
    };
    document.querySelectorAll("rect.call").forEach((mark) => {
      mark.addEventListener("click", () => show(mark));
      mark.addEventListener("keydown", (e) => { if (e.key === "Enter") show(mark); });
    });
  }
})();
