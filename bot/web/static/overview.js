// The Overview's charts, drawn with Chart.js (vendored in /static/vendor/chartjs). The numbers
// come from the page's JSON data block; nothing here builds HTML.
"use strict";

(function () {
  const block = document.getElementById("overview-data");
  if (!block || typeof Chart === "undefined") return;
  const data = JSON.parse(block.textContent);
  const palette = ["#3b5bdb", "#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#f08c00"];
  const base = {
    animation: false, // charts appear at once, and stay still for screenshots and tests
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { position: "bottom" } },
  };
  const charts = {};

  function draw(id, type, datasets, options) {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    charts[id] = new Chart(canvas, {
      type,
      data: { labels: data.days, datasets },
      options: Object.assign({}, base, options || {}),
    });
    canvas.dataset.drawn = "true";
  }

  const platforms = Object.keys(data.questions);
  const questions = platforms.map((p, i) => ({ label: p, data: data.questions[p], backgroundColor: palette[i % palette.length] }));
  // Auto-answer questions Lore kept quiet on: a bar of their own, not a platform's answers.
  if ((data.silent || []).some((n) => n > 0)) {
    questions.push({ label: "left silent (auto-answer)", data: data.silent, backgroundColor: "#adb5bd" });
  }
  draw(
    "chart-questions",
    "bar",
    questions,
    { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
  );
  const percent = { scales: { y: { min: 0, max: 100 } }, spanGaps: true };
  draw("chart-up-share", "line", [{ label: "👍 share (%)", data: data.up_share, borderColor: palette[2], backgroundColor: palette[2] }], percent);
  draw("chart-abstention", "line", [{ label: "abstained (%)", data: data.abstention, borderColor: palette[1], backgroundColor: palette[1] }], percent);
  draw(
    "chart-latency",
    "line",
    [
      { label: "p50 (ms)", data: data.p50_ms, borderColor: palette[0], backgroundColor: palette[0] },
      { label: "p95 (ms)", data: data.p95_ms, borderColor: palette[3], backgroundColor: palette[3] },
    ],
    { scales: { y: { beginAtZero: true } }, spanGaps: true }
  );
  draw(
    "chart-escalations",
    "bar",
    [
      { label: "asked experts", data: data.escalations, backgroundColor: palette[4] },
      { label: "expert answers", data: data.expert_answers, backgroundColor: palette[5] },
    ],
    { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
  );
  window.loreCharts = charts; // for the browser test: what each chart was given
})();
