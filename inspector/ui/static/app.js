// worldflow inspector: live updates (SSE), JSON checks before a form posts, copy buttons,
// keyboard shortcuts. Pages work without it. It only inserts HTML the server rendered (with
// the same escaping as the page); it never builds markup from data.
"use strict";

(function () {
  const announce = (() => {
    let last = 0;
    return (text) => {
      const now = Date.now();
      if (now - last < 5000) return; // throttled: screen readers are not a firehose
      last = now;
      const el = document.getElementById("live-status");
      if (el) el.textContent = text;
    };
  })();

  function fragment(html, context) {
    const t = document.createElement(context || "template");
    if (context === "tbody") { t.innerHTML = html; return Array.from(t.children); }
    t.innerHTML = html;
    return t.content ? Array.from(t.content.children) : Array.from(t.children);
  }

  // -- the run page ------------------------------------------------------------------------
  function liveRun(root) {
    let seq = Number(root.dataset.seq || "0");
    const label = document.getElementById("live-label");
    const bar = root.querySelector(".live-bar");
    let source = null;
    function open() {
      const url = new URL(root.dataset.live, location.href);
      url.searchParams.set("last", String(seq));
      source = new EventSource(url.toString());
      source.addEventListener("update", (msg) => {
        const data = JSON.parse(msg.data);
        const body = document.getElementById("event-rows");
        if (body && data.rows) {
          for (const row of fragment(data.rows, "tbody")) {
            if (document.getElementById(row.id)) continue; // already shown: never twice
            row.classList.add("fresh");
            body.appendChild(row);
          }
        }
        for (const [name, html] of Object.entries(data.regions || {})) {
          const region = root.querySelector(`[data-region="${name}"]`);
          if (!region || region.contains(document.activeElement) && name !== "header") continue;
          if (region.querySelector("details[open]")) continue; // the user is filling a form
          region.innerHTML = html;
          wire(region);
        }
        seq = Math.max(seq, Number(data.seq));
        root.dataset.seq = String(seq);
        if (data.count) announce(`${data.count} new event${data.count === 1 ? "" : "s"}`);
      });
      source.addEventListener("end", () => {
        source.close();
        if (label) label.textContent = "Finished";
        const dot = root.querySelector(".live-dot");
        if (dot) dot.classList.remove("on");
      });
      source.onerror = () => {
        // EventSource reconnects by itself and sends Last-Event-ID; nothing to do here
        if (label && source.readyState !== EventSource.CLOSED) label.textContent = "Reconnecting…";
      };
      source.onopen = () => { if (label) label.textContent = "Live"; };
    }
    open();
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && source && source.readyState === EventSource.CLOSED
          && root.dataset.live && label && label.textContent !== "Finished") open();
    });
    if (bar) bar.classList.add("js");
  }

  // -- the runs list -----------------------------------------------------------------------
  function liveRuns(table) {
    const url = new URL(table.dataset.live, location.href);
    url.searchParams.set("ids", table.dataset.ids || "");
    url.searchParams.set("newest", table.dataset.newest || "");
    const source = new EventSource(url.toString());
    source.addEventListener("runs", (msg) => {
      const data = JSON.parse(msg.data);
      for (const [id, html] of Object.entries(data.rows || {})) {
        const old = document.getElementById("run-" + id);
        const row = fragment(html, "tbody")[0];
        if (old && row && old.innerHTML !== row.innerHTML) old.replaceWith(row);
      }
      let total = 0;
      for (const [status, n] of Object.entries(data.counts || {})) {
        total += n;
        const el = document.querySelector(`[data-count="${status}"]`);
        if (el) el.textContent = n.toLocaleString("en");
      }
      const all = document.querySelector('[data-count="all"]');
      if (all && data.counts) all.textContent = total.toLocaleString("en");
      const bar = document.getElementById("new-runs");
      if (bar && data.new > 0) {
        bar.hidden = false;
        bar.querySelector("a").textContent = `${data.new}${data.new >= 100 ? "+" : ""} new run${data.new === 1 ? "" : "s"}: show`;
      }
    });
  }

  // -- a stream's live tail ----------------------------------------------------------------
  function liveChunks(list) {
    const url = new URL(list.dataset.live, location.href);
    url.searchParams.set("next", list.dataset.next || "0");
    const source = new EventSource(url.toString());
    source.addEventListener("chunk", (msg) => {
      const data = JSON.parse(msg.data);
      for (const li of fragment(data.html)) {
        if (!document.getElementById(li.id)) list.appendChild(li);
      }
      while (list.children.length > 2000) list.removeChild(list.firstElementChild);
    });
    source.addEventListener("end", () => source.close());
  }

  // -- forms and buttons -------------------------------------------------------------------
  function wire(scope) {
    for (const form of scope.querySelectorAll("form")) {
      if (form.dataset.wired) continue;
      form.dataset.wired = "1";
      form.addEventListener("submit", (ev) => {
        for (const area of form.querySelectorAll("textarea[data-json]")) {
          const text = area.value.trim();
          const out = form.querySelector(".json-error");
          if (!text) continue;
          try { JSON.parse(text); if (out) out.hidden = true; }
          catch (err) {
            ev.preventDefault(); // nothing is sent while the JSON does not parse
            if (out) { out.textContent = `Not valid JSON: ${err.message}`; out.hidden = false; }
            area.focus();
            return;
          }
        }
      });
      form.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
      });
    }
    for (const btn of scope.querySelectorAll("button.copy")) {
      if (btn.dataset.wired) continue;
      btn.dataset.wired = "1";
      btn.addEventListener("click", () => {
        if (navigator.clipboard) navigator.clipboard.writeText(btn.dataset.copy || "");
        btn.classList.add("copied");
        setTimeout(() => { btn.classList.remove("copied"); }, 1200);
      });
    }
  }

  function keys() {
    let rows = [];
    let at = -1;
    document.addEventListener("keydown", (ev) => {
      const t = ev.target;
      if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) {
        if (ev.key === "Escape") t.blur();
        return;
      }
      if (ev.key === "/") { const s = document.getElementById("search"); if (s) { ev.preventDefault(); s.focus(); } return; }
      if (ev.key === "Escape") { for (const d of document.querySelectorAll("details[open]")) d.open = false; return; }
      if (ev.key === "j" || ev.key === "k") {
        rows = Array.from(document.querySelectorAll("table.runs tbody tr"));
        if (!rows.length) return;
        if (at >= 0 && rows[at]) rows[at].classList.remove("hl");
        at = Math.max(0, Math.min(rows.length - 1, at + (ev.key === "j" ? 1 : -1)));
        rows[at].classList.add("hl");
        rows[at].scrollIntoView({ block: "nearest" });
      }
      if (ev.key === "Enter" && at >= 0 && rows[at]) {
        const link = rows[at].querySelector("a");
        if (link) link.click();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire(document);
    keys();
    const run = document.querySelector(".run[data-live]");
    if (run) liveRun(run);
    const table = document.querySelector("table.runs[data-live]");
    if (table) liveRuns(table);
    const chunks = document.querySelector("#chunks[data-live]");
    if (chunks) liveChunks(chunks);
  });
})();
