// The clinic console's only script: live updates over server-sent events, and a reply box that
// sends without reloading and never loses what the operator typed. No build step, no libraries.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const status = document.getElementById("live-status");
  const pending = new Map();

  // Replace an element's content with its fragment URL's; never touches the reply form.
  function refresh(el) {
    if (pending.has(el)) return;
    pending.set(el, setTimeout(() => {
      pending.delete(el);
      fetch(el.dataset.live, { credentials: "same-origin", headers: { "X-Console": "1" } })
        .then((r) => (r.ok ? r.text() : null))
        .then((html) => {
          if (html === null || html === el.innerHTML) return;
          const thread = el.classList.contains("thread");
          const atBottom = thread && el.scrollHeight - el.scrollTop - el.clientHeight < 40;
          el.innerHTML = html;
          if (thread && atBottom) el.scrollTop = el.scrollHeight;
        })
        .catch(() => {});
    }, 80));
  }

  function on(kind, id) {
    document.querySelectorAll("[data-on]").forEach((el) => {
      const keys = el.dataset.on.split(" ");
      if (keys.includes(kind) || id === "*" || (id && keys.includes(kind + ":" + id))) refresh(el);
    });
  }

  if (window.EventSource && csrf) {
    const es = new EventSource("/events");
    ["thread", "cascade", "health"].forEach((k) => es.addEventListener(k, (e) => on(k, e.data)));
    es.onopen = () => { if (status) { status.textContent = "live"; status.className = "live-status on"; } };
    es.onerror = () => { if (status) { status.textContent = "reconnecting…"; status.className = "live-status off"; } };
  }

  const thread = document.getElementById("thread");
  if (thread) thread.scrollTop = thread.scrollHeight;

  const form = document.getElementById("reply");
  const text = document.getElementById("text");
  if (form && text) {
    const key = "draft:" + form.dataset.thread;
    // A draft survives reloads, live updates and failed sends.
    if (!text.value) text.value = localStorage.getItem(key) || "";
    text.addEventListener("input", () => localStorage.setItem(key, text.value));
    text.focus();
    text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    const notice = document.getElementById("reply-notice");
    const button = document.getElementById("send");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!text.value.trim()) return;
      button.disabled = true;
      const body = new URLSearchParams(new FormData(form));
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-Console": "1", "X-CSRF-Token": csrf },
        body,
      })
        .then((r) => r.text().then((html) => ({ ok: r.ok, html })))
        .then(({ ok, html }) => {
          if (ok) {
            text.value = "";
            localStorage.removeItem(key);
            notice.innerHTML = "";
            if (thread) refresh(thread);
          } else {
            notice.innerHTML = html;
          }
        })
        .catch(() => { notice.textContent = "Not sent: the console cannot be reached. Your text is kept."; })
        .finally(() => { button.disabled = false; text.focus(); });
    });
  }
})();
