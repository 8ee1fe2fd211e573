// Lore's web console: the chat, keyboard shortcuts for the review queue, live reindex progress,
// export status and model promotions. No framework; answers arrive as server-sanitised HTML,
// everything else is inserted as text.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function post(url, body, asForm) {
    const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
    let payload;
    if (asForm) {
      payload = new URLSearchParams(body);
    } else {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const response = await fetch(url, { method: "POST", headers, body: payload, credentials: "same-origin" });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    return { ok: response.ok, status: response.status, data };
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  const typing = (event) => {
    const t = event.target;
    return t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
  };

  // ---- chat ---------------------------------------------------------------------------------

  function chat() {
    const form = document.getElementById("ask-form");
    const box = document.getElementById("question");
    const list = document.getElementById("conversation");
    const template = document.getElementById("answer-template");
    const button = document.getElementById("ask-button");
    const viewAs = document.getElementById("view-as"); // admins only
    let conversation = sessionStorage.getItem("lore-conversation");

    document.getElementById("new-conversation").addEventListener("click", () => {
      conversation = null;
      sessionStorage.removeItem("lore-conversation");
      list.replaceChildren();
      box.focus();
    });
    if (viewAs) {
      viewAs.addEventListener("change", () => {
        // Another view is another conversation: its turns must not carry over.
        conversation = null;
        sessionStorage.removeItem("lore-conversation");
      });
    }
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        form.requestSubmit();
      }
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const question = box.value.trim();
      if (!question) return;
      const asked = { question, conversation };
      if (viewAs && viewAs.value.trim()) asked.view_as = viewAs.value.trim();
      const card = template.content.firstElementChild.cloneNode(true);
      card.querySelector(".question").textContent = question;
      const body = card.querySelector(".body");
      body.textContent = "Searching the docs…";
      card.classList.add("pending");
      card.querySelector(".vote").hidden = true;
      list.append(card);
      card.scrollIntoView({ block: "end" });
      button.disabled = true;
      box.value = "";
      const started = performance.now();
      let reply;
      try {
        reply = await post("/api/ask", asked);
      } catch (e) {
        reply = { ok: false, data: { error: "Lore could not be reached. Check your connection and try again." } };
      } finally {
        button.disabled = false;
      }
      card.classList.remove("pending");
      if (!reply.ok) {
        body.textContent = reply.data.error || "Sorry, something went wrong.";
        card.classList.add("failed");
        return;
      }
      const a = reply.data;
      conversation = a.conversation;
      sessionStorage.setItem("lore-conversation", conversation);
      card.dataset.answerId = a.answer_id;
      if (a.view) {
        const note = card.querySelector(".view-note");
        note.textContent = a.view.text;
        note.hidden = false;
        card.classList.add("viewed-as");
      }
      body.innerHTML = a.html; // built server-side from escaped text and fixed tags only
      if (a.notice) card.querySelector(".notice").textContent = a.notice;
      const sources = card.querySelector(".sources");
      for (const s of a.sources) {
        const li = el("li");
        li.value = s.n;
        li.id = `src-${a.answer_id.slice(0, 12)}-${s.n}`;
        if (s.href) {
          const link = el("a", s.title);
          link.href = s.href;
          link.rel = "noopener noreferrer";
          link.target = "_blank";
          li.append(link);
        } else {
          li.append(el("span", s.title));
        }
        if (s.updated) li.append(el("span", ` · updated ${s.updated}`, "muted small"));
        sources.append(li);
      }
      const seconds = ((a.timings.wall_ms || performance.now() - started) / 1000).toFixed(1);
      card.querySelector(".meta").textContent =
        `Answered in ${seconds} s (retrieval ${Math.round(a.timings.retrieve_ms)} ms, ` +
        `generation ${Math.round(a.timings.generate_ms)} ms) · ${a.model}`;
      wireVotes(card, a.answer_id);
      card.querySelector(".vote").hidden = false;
      card.scrollIntoView({ block: "end" });
    });
    box.focus();
  }

  function wireVotes(card, answerId) {
    const thanks = card.querySelector(".thanks");
    const feedback = card.querySelector("form.feedback");
    const up = card.querySelector("button.up");
    const down = card.querySelector("button.down");

    async function send(value, extra) {
      const reply = await post("/api/vote", { answer_id: answerId, value, ...extra });
      thanks.textContent = reply.ok ? reply.data.message : reply.data.error || "Your vote could not be recorded.";
      return reply.ok;
    }
    up.addEventListener("click", async () => {
      up.classList.add("chosen");
      down.classList.remove("chosen");
      feedback.hidden = true;
      await send("up", {});
    });
    down.addEventListener("click", async () => {
      down.classList.add("chosen");
      up.classList.remove("chosen");
      feedback.hidden = false;
      await send("down", {});
      feedback.querySelector("textarea").focus();
    });
    feedback.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(feedback);
      const ok = await send("down", { reason: data.get("reason"), correction: data.get("correction") });
      if (ok) feedback.hidden = true;
    });
  }

  // ---- review queue ---------------------------------------------------------------------------

  function queue() {
    const rows = Array.from(document.querySelectorAll("#queue tbody tr"));
    let i = Math.max(0, rows.findIndex((r) => r.classList.contains("selected")));
    const select = (n) => {
      if (!rows.length) return;
      rows[i].classList.remove("selected");
      i = Math.min(rows.length - 1, Math.max(0, n));
      rows[i].classList.add("selected");
      rows[i].scrollIntoView({ block: "nearest" });
    };
    document.addEventListener("keydown", (event) => {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "j") select(i + 1);
      else if (event.key === "k") select(i - 1);
      else if ((event.key === "Enter" || event.key === "o") && rows.length) location.href = rows[i].dataset.href;
      else if (event.key === "/") {
        event.preventDefault();
        document.querySelector("#filters select").focus();
      } else return;
      event.preventDefault();
    });
  }

  function item() {
    const section = document.querySelector("section.item");
    const click = (id) => document.getElementById(id) && document.getElementById(id).click();
    const text = document.getElementById("ideal-answer");
    const judging = relevance();
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        click("save-edit");
      }
    });
    document.addEventListener("keydown", (event) => {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      const go = (where) => where && (location.href = where);
      if (/^[1-9]$/.test(event.key)) {
        judging.select(Number(event.key) - 1);
        event.preventDefault();
        return;
      }
      switch (event.key) {
        case "a": click("approve"); break;
        case "r": click("reject"); break;
        case "e": text.focus(); text.setSelectionRange(text.value.length, text.value.length); break;
        case "t": document.getElementById("tags").focus(); break;
        case "j": case "n": go(section.dataset.next); break;
        case "k": case "p": go(section.dataset.prev); break;
        case "u": go(document.querySelector(".crumbs a").getAttribute("href")); break;
        case "]": judging.select(judging.current + 1); break;
        case "[": judging.select(judging.current - 1); break;
        case "y": judging.toggle("relevant"); break;
        case "x": judging.toggle("not_relevant"); break;
        case "/": document.getElementById("find").focus(); break;
        default: return;
      }
      event.preventDefault();
    });
  }

  // Relevance judgments on the item page: the forms work without this; with it they post in
  // place, and the keys above pick a chunk and judge it (the same key again clears the verdict).
  function relevance() {
    const chunks = Array.from(document.querySelectorAll("#chunks .chunk"));
    const state = { current: -1 };

    function show(chunk, verdict) {
      chunk.dataset.verdict = verdict || "";
      chunk.querySelector("button.relevant").setAttribute("aria-pressed", String(verdict === "relevant"));
      chunk.querySelector("button.not-relevant").setAttribute("aria-pressed", String(verdict === "not_relevant"));
      chunk.querySelector("button.clear").hidden = !verdict;
    }

    async function judge(chunk, verdict) {
      const form = chunk.querySelector("form.judge");
      const status = form.querySelector(".judge-state");
      const reply = await post(form.action, { chunk_id: chunk.dataset.chunkId, verdict }, true);
      if (!reply.ok) {
        status.textContent = reply.data.error || "The judgment could not be saved.";
        return;
      }
      show(chunk, reply.data.verdict);
      status.textContent = reply.data.verdict ? "saved" : "cleared";
    }

    for (const chunk of chunks) {
      const form = chunk.querySelector("form.judge");
      if (!form) continue;
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        judge(chunk, event.submitter ? event.submitter.value : "clear");
      });
    }

    document.querySelectorAll("form.attach").forEach((form) => {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const button = form.querySelector("button");
        const status = form.querySelector(".judge-state");
        const reply = await post(form.action, new FormData(form), true);
        if (!reply.ok) {
          status.textContent = reply.data.error || "The passage could not be attached.";
          return;
        }
        button.textContent = "Attached ✓";
        button.disabled = true;
        const li = el("li");
        li.dataset.chunkId = reply.data.chunk_id;
        li.append(el("strong", reply.data.title || reply.data.path), el("span", ` ${reply.data.path} · just now`, "muted small"));
        document.getElementById("attached").append(li);
        const retrieved = chunks.find((c) => c.dataset.chunkId === reply.data.chunk_id);
        if (retrieved) show(retrieved, "relevant");
      });
    });

    state.select = (n) => {
      if (!chunks.length) return;
      if (state.current >= 0) chunks[state.current].classList.remove("selected");
      state.current = Math.min(chunks.length - 1, Math.max(0, n));
      const chunk = chunks[state.current];
      chunk.classList.add("selected");
      chunk.querySelector("details").open = true;
      chunk.querySelector("summary").focus({ preventScroll: true });
      chunk.scrollIntoView({ block: "nearest" });
    };
    state.toggle = (verdict) => {
      const chunk = chunks[state.current];
      if (!chunk || !chunk.querySelector("form.judge")) return;
      judge(chunk, chunk.dataset.verdict === verdict ? "clear" : verdict);
    };

    // Just searched: the first result's button has the focus, so Enter attaches it (focus also
    // scrolls it into view; the search form has no #fragment, which made Chromium drop this focus).
    const first = document.querySelector("#search-results form.attach button:not(:disabled)");
    if (first && new URLSearchParams(location.search).get("find")) first.focus();
    return state;
  }

  // ---- sources: reindex with live progress -------------------------------------------------------

  function sources() {
    const message = document.getElementById("sync-message");
    const waiting = new Map(); // source -> task id
    let timer = null;

    function show(source, progress, state) {
      const row = document.querySelector(`tr[data-source="${CSS.escape(source)}"]`);
      if (!row) return;
      const bar = row.querySelector("progress");
      const label = row.querySelector(".progress-text");
      bar.hidden = false;
      if (progress && typeof progress.percent === "number") bar.value = progress.percent;
      else bar.removeAttribute("value");
      label.textContent = state;
    }

    async function poll() {
      const response = await fetch("/admin/sync-status", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const status = await response.json();
      for (const [source, taskId] of Array.from(waiting.entries())) {
        const last = status.last[source];
        const running = status.running[source];
        if (last && last.task_id === taskId && (last.state === "done" || last.state === "failed")) {
          waiting.delete(source);
          show(source, { percent: 100 }, last.state === "done"
            ? `done: +${last.added || 0} ~${last.changed || 0} -${last.deleted || 0}, ${last.chunks_embedded || 0} chunks`
            : `failed: ${last.error}`);
        } else if (running) {
          const seen = running.total ? `${running.seen || 0}/${running.total}` : `${running.seen || 0}`;
          show(source, running, `${running.phase || "running"} · ${seen} documents · ${running.chunks_embedded || 0} chunks`);
        } else {
          show(source, null, "queued");
        }
      }
      if (!waiting.size) {
        clearInterval(timer);
        timer = null;
        message.textContent = "Reindex finished. Reload the page for the new counts.";
      }
    }

    document.querySelectorAll("form.reindex").forEach((form) => {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const reply = await post("/admin/reindex", new FormData(form), true);
        if (!reply.ok) {
          message.textContent = reply.data.error || "The reindex could not be queued.";
          return;
        }
        for (const h of reply.data.queued) {
          waiting.set(h.source, h.task_id);
          show(h.source, null, h.joined ? "joined the running sync" : "queued");
        }
        message.textContent = "Reindexing…";
        if (!timer) timer = setInterval(poll, 1000);
      });
    });
  }

  // ---- exports: follow a running export ------------------------------------------------------------

  function exportsPage() {
    const status = document.getElementById("export-status");
    if (status.dataset.running !== "true") return;
    const timer = setInterval(async () => {
      const response = await fetch("/admin/exports/status", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const state = await response.json();
      if (!state.running) {
        clearInterval(timer);
        location.reload();
      }
    }, 1000);
  }

  // ---- models: follow a running promotion or rollback ----------------------------------------------

  function modelsPage() {
    const status = document.getElementById("models-status");
    if (status.dataset.running !== "true") return;
    const timer = setInterval(async () => {
      const response = await fetch("/admin/models/status", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const state = await response.json();
      if (!state.busy) {
        clearInterval(timer);
        location.reload();
      }
    }, 1000);
  }

  const pages = { chat, queue, item, sources, exports: exportsPage, models: modelsPage };
  document.addEventListener("DOMContentLoaded", () => {
    const page = pages[document.body.dataset.page];
    if (page) page();
  });
})();
