/*
 * app.js: the page. Polls the metrics API, keeps the live buffer, renders the header and the
 * panels, routes between the live view (#live) and a burst run's report (#report=RUN_ID), and
 * owns the theme button. Pure logic lives in dashboard-core.js, the charts in charts.js.
 *
 * It never writes to console.error: a failing API is shown on the page (and in
 * window.dashboardStats.lastError).
 */
(function () {
  "use strict";
  const core = window.DashboardCore;
  const ChartSet = window.DashboardCharts.ChartSet;

  const raw = window.DASHBOARD_CONFIG || {};
  const config = {
    apiUrl: typeof raw.apiUrl === "string" ? raw.apiUrl : "",
    stage: typeof raw.stage === "string" ? raw.stage : "",
    refreshSeconds: Number(raw.refreshSeconds) > 0 ? Number(raw.refreshSeconds) : 1.5,
    windowMinutes: Number(raw.windowMinutes) > 0 ? Number(raw.windowMinutes) : 15,
  };
  const WINDOW_SECONDS = Math.round(config.windowMinutes * 60);
  // A burst of a minute is lost on a 15-minute axis: show 5 minutes unless the user asks.
  const DEFAULT_VIEW_SECONDS = Math.min(300, WINDOW_SECONDS);
  const THEME_KEY = "dashboard-theme";

  const stats = (window.dashboardStats = { refreshes: 0, lastRefreshMs: null, maxRefreshMs: null, lastError: null });

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    if (attrs) for (const k of Object.keys(attrs)) {
      if (k === "class") e.className = attrs[k];
      else if (k.indexOf("data-") === 0) e.setAttribute(k, attrs[k]);
      else e[k] = attrs[k];
    }
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  };

  // --- fetching ----------------------------------------------------------------------------

  /* GET a JSON document. Resolves {ok: true, json} or {ok: false, status, reason}; never
   * rejects, never logs. */
  async function getJson(url, timeoutMs) {
    const ctrl = typeof AbortController !== "undefined" ? new AbortController() : null;
    const timer = ctrl ? setTimeout(() => ctrl.abort(), timeoutMs) : null;
    try {
      const res = await fetch(url, { cache: "no-store", signal: ctrl ? ctrl.signal : undefined });
      if (!res.ok) return { ok: false, status: res.status, reason: "HTTP " + res.status + (res.statusText ? " " + res.statusText : "") };
      try {
        return { ok: true, json: await res.json() };
      } catch (e) {
        return { ok: false, status: res.status, reason: "the answer is not JSON" };
      }
    } catch (e) {
      return { ok: false, status: 0, reason: core.describeError(e) };
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  // --- live view ---------------------------------------------------------------------------

  const live = {
    buffer: core.emptyBuffer(1),
    charts: [],
    signature: null,
    built: false,
    settings: {},
    set: new ChartSet($("live-charts"), { syncKey: "live", zoomable: false }),
    timer: null,
    running: false,
    lastSuccessAt: null, // client clock, ms
    lastEnd: null, // answer's end, epoch s
    failingSince: null,
    panels: {},
    viewSeconds: DEFAULT_VIEW_SECONDS, // how much of the buffer the charts show
  };

  function liveView() {
    return core.viewOf(live.buffer, live.viewSeconds);
  }

  function showRange(seconds) {
    live.viewSeconds = seconds;
    document.querySelectorAll("[data-range]").forEach((button) => {
      button.setAttribute("aria-pressed", String(Number(button.dataset.range) === seconds));
    });
    if (live.built) live.set.update(liveView(), live.settings);
  }

  document.querySelectorAll("[data-range]").forEach((button) => {
    button.addEventListener("click", () => showRange(Number(button.dataset.range)));
  });

  /* Test hook: the live buffer's values for the seconds in [start, end), as the charts draw them
   * ({t: [...], series: {key: [...]}}), so a test can compare what the page shows with CloudWatch. */
  window.dashboardData = function (start, end) {
    const buffer = live.buffer;
    const picked = [];
    buffer.t.forEach(function (t, i) {
      if (t >= start && t < end) picked.push(i);
    });
    const series = {};
    Object.keys(buffer.series).forEach(function (key) {
      series[key] = picked.map(function (i) { return buffer.series[key][i]; });
    });
    return { t: picked.map(function (i) { return buffer.t[i]; }), series: series };
  };

  function applyAnswer(answer) {
    const t0 = performance.now();
    const defs = core.validCharts(answer.charts);
    const signature = core.chartsSignature(defs);
    live.buffer = core.mergeAnswer(live.buffer, answer, WINDOW_SECONDS);
    live.settings = answer.settings && typeof answer.settings === "object" ? answer.settings : {};
    if (signature !== live.signature) {
      live.charts = defs;
      live.signature = signature;
      live.built = false;
    }
    // The live charts exist in the live view only (a report's page holds the report's charts).
    if (document.body.dataset.view === "live") {
      if (!live.built) {
        // First answer, or the server's chart list changed: (re)build the charts.
        live.set.build(live.charts, liveView(), live.settings);
        live.built = true;
      } else {
        live.set.update(liveView(), live.settings);
      }
    }
    const ms = performance.now() - t0;
    stats.refreshes += 1;
    stats.lastRefreshMs = Math.round(ms * 100) / 100;
    stats.maxRefreshMs = Math.max(stats.maxRefreshMs || 0, stats.lastRefreshMs);
    stats.lastError = null;
    if (typeof answer.end === "number") live.lastEnd = answer.end;
    live.lastSuccessAt = Date.now();
    live.failingSince = null;
    renderState(answer.state);
    renderCurrent(answer);
    renderRecommendations(answer.recommendations);
    renderSettings(live.settings);
    renderFreshness();
  }

  async function poll() {
    const started = Date.now();
    if (!config.apiUrl) {
      showApiError("config.js sets no apiUrl");
      return;
    }
    const minutes = live.buffer.t.length ? core.pollMinutes(live.lastEnd, Date.now() / 1000, config.windowMinutes) : config.windowMinutes;
    const timeout = Math.max(5000, config.refreshSeconds * 3000);
    const res = await getJson(core.metricsUrl(config.apiUrl, minutes, 1), timeout);
    if (res.ok && res.json && typeof res.json === "object" && Array.isArray(res.json.t)) {
      try {
        applyAnswer(res.json);
        hideApiError();
      } catch (e) {
        showApiError("could not draw the answer: " + core.describeError(e));
      }
    } else {
      showApiError(res.ok ? "the answer has no t" : res.reason);
    }
    const wait = Math.max(200, config.refreshSeconds * 1000 - (Date.now() - started));
    live.timer = setTimeout(poll, wait);
  }

  function startLive() {
    if (live.running) return;
    live.running = true;
    poll();
  }

  function showApiError(reason) {
    stats.lastError = reason;
    if (live.failingSince === null) live.failingSince = Date.now();
    const box = $("api-error");
    box.hidden = false;
    box.textContent = "API not answering: " + reason + " (since " + core.formatClock(live.failingSince / 1000) + ")";
    document.body.classList.add("api-failing");
  }

  function hideApiError() {
    $("api-error").hidden = true;
    document.body.classList.remove("api-failing");
  }

  function renderFreshness() {
    const box = $("freshness");
    if (live.lastSuccessAt === null) {
      box.textContent = "no data yet";
      return;
    }
    const ago = (Date.now() - live.lastSuccessAt) / 1000;
    const lastPoint = core.lastDataTime(live.buffer);
    box.textContent =
      "data arrived " + core.formatClock(live.lastSuccessAt / 1000) + " (" + core.formatAgo(ago) + ")" +
      (lastPoint !== null ? "; newest datapoint " + core.formatClock(lastPoint) : "");
    box.classList.toggle("stale", ago > Math.max(10, config.refreshSeconds * 4));
  }

  function renderState(state) {
    const name = core.stateName(state);
    document.body.dataset.state = name;
    $("state").dataset.state = name;
    $("state-headline").textContent = (state && state.headline) || (name === "unknown" ? "State not known" : name.replace(/_/g, " "));
    $("state-detail").textContent = (state && state.detail) || "";
  }

  /* Replace a panel's content only when what it shows changed (keeps text selectable). */
  function changed(key, value) {
    const s = JSON.stringify(value === undefined ? null : value);
    if (live.panels[key] === s) return false;
    live.panels[key] = s;
    return true;
  }

  function renderCurrent(answer) {
    const rows = core.currentNumbers(answer);
    if (!changed("current", rows)) return;
    const box = $("current");
    box.textContent = "";
    for (const [key, label, v] of rows) {
      const tile = el("div", { class: "tile" + (key === "dlq_visible" && v ? " alert" : "") });
      tile.appendChild(el("div", { class: "tile-value", "data-current": key }, v === null ? "–" : core.formatNumber(v)));
      tile.appendChild(el("div", { class: "tile-label" }, label + " (messages)"));
      box.appendChild(tile);
    }
  }

  function renderRecommendations(recs) {
    const list = Array.isArray(recs) ? recs.filter((r) => r && typeof r === "object") : [];
    if (!changed("recs", list)) return;
    const box = $("recommendations");
    box.textContent = "";
    if (!list.length) {
      box.appendChild(el("p", { class: "muted", "data-recommendations": "none" }, "No recommendations: nothing to act on"));
      return;
    }
    for (const r of list) {
      const sev = ["info", "warning", "critical"].indexOf(r.severity) >= 0 ? r.severity : "info";
      const item = el("article", { class: "rec rec-" + sev, "data-recommendation": String(r.id || ""), "data-severity": sev });
      const head = el("h3");
      head.appendChild(el("span", { class: "sev" }, sev));
      head.appendChild(document.createTextNode(" " + (r.title || r.id || "recommendation")));
      item.appendChild(head);
      if (r.advice) item.appendChild(el("p", { class: "advice" }, r.advice));
      if (r.rule) item.appendChild(el("p", { class: "rule" }, "rule: " + r.rule));
      if (r.evidence) item.appendChild(el("p", { class: "evidence" }, "evidence: " + r.evidence));
      box.appendChild(item);
    }
  }

  function renderSettings(settings) {
    const rows = core.settingsRows(settings);
    if (!changed("settings", rows)) return;
    const box = $("settings");
    box.textContent = "";
    for (const [key, label, text] of rows) {
      box.appendChild(el("dt", null, label));
      box.appendChild(el("dd", { "data-setting": key, class: text === "not set" ? "muted" : "" }, text));
    }
  }

  // --- past runs and the report view ---------------------------------------------------------

  const reports = { set: new ChartSet($("report-charts"), { syncKey: "report", zoomable: true }), current: null, token: 0, runs: null };

  function renderRuns(target, runs, message, exclude) {
    target.textContent = "";
    if (message) {
      target.appendChild(el("p", { class: "muted" }, message));
      return;
    }
    const shown = runs.filter((r) => r.run_id !== exclude);
    if (!shown.length) {
      target.appendChild(el("p", { class: "muted" }, runs.length ? "no other runs" : "No runs yet: scripts/burst or scripts/demo writes one"));
      return;
    }
    const ul = el("ul", { class: "run-list" });
    for (const r of shown) {
      const li = el("li", { "data-run": r.run_id });
      li.appendChild(el("a", { href: "#report=" + r.run_id }, r.run_id));
      const when = Date.parse(r.first_send_at);
      const bits = [];
      if (Number.isFinite(when)) bits.push(new Date(when).toLocaleString());
      bits.push([r.profile, r.task_type].filter(Boolean).join(" "));
      if (typeof r.tasks === "number") bits.push(r.tasks + " tasks" + (typeof r.done === "number" ? " (" + r.done + " done, " + (r.failed || 0) + " failed)" : ""));
      if (typeof r.peak_batches === "number") bits.push("peak " + r.peak_batches + (typeof r.max_concurrency === "number" ? " of " + r.max_concurrency : "") + " batches");
      if (typeof r.drain_seconds === "number") bits.push("drained in " + core.formatNumber(r.drain_seconds) + " s");
      if (typeof r.cost_usd === "number") bits.push(core.formatCost(r.cost_usd) + " on AWS");
      if (r.integrity_ok === false) bits.push("INTEGRITY FAILED");
      li.appendChild(el("div", { class: "run-meta" + (r.integrity_ok === false ? " bad" : "") }, bits.filter(Boolean).join(" · ")));
      ul.appendChild(li);
    }
    target.appendChild(ul);
  }

  /* Loads reports/index.json and shows the runs; resolves true when the index was there. */
  async function loadRuns() {
    const res = await getJson("reports/index.json", 10000);
    let message = null;
    if (res.ok) reports.runs = core.normalizeRuns(res.json);
    else if (res.status === 404 || res.status === 403) {
      // No index yet: no runs (S3 answers 403 for a missing key when the bucket may not be listed).
      reports.runs = [];
    } else {
      reports.runs = null;
      message = "could not load reports/index.json: " + res.reason;
    }
    renderRuns($("runs-list"), reports.runs || [], message);
    renderRuns($("report-runs-list"), reports.runs || [], message, reports.current);
    return res.ok;
  }

  async function openReport(route, indexLoaded) {
    const token = ++reports.token;
    reports.set.destroy();
    $("report-summary").textContent = "";
    const status = $("report-status");
    if (!route.runId) {
      reports.current = null;
      $("report-title").textContent = "Burst run";
      status.textContent = "Not a run id: " + JSON.stringify(String(route.invalid).slice(0, 80)) + " (letters, digits and '-' only)";
      status.className = "error";
      return;
    }
    reports.current = route.runId;
    $("report-title").textContent = "Burst run " + route.runId;
    status.textContent = "loading reports/" + route.runId + ".json…";
    status.className = "muted";
    // A run the index does not list is not fetched: its 404 would be a console error.
    if ((await indexLoaded) && reports.runs && !reports.runs.some((r) => r.run_id === route.runId)) {
      if (token !== reports.token) return;
      status.textContent = "No report for run " + route.runId + " (reports/index.json does not list it)";
      status.className = "error";
      return;
    }
    if (token !== reports.token) return;
    const res = await getJson("reports/" + encodeURIComponent(route.runId) + ".json", 15000);
    if (token !== reports.token) return;
    if (!res.ok || !res.json || typeof res.json !== "object") {
      status.textContent =
        res.status === 404 || res.status === 403 ? "No report for run " + route.runId + " (reports/" + route.runId + ".json is not there)" : "Could not load the report: " + (res.reason || "empty answer");
      status.className = "error";
      return;
    }
    renderReport(res.json);
  }

  function renderReport(report) {
    reports.report = report;
    const when = Date.parse(report.first_send_at);
    const status = $("report-status");
    status.className = "muted";
    status.textContent = Number.isFinite(when) ? "first task sent " + new Date(when).toLocaleString() + "; drag across a chart to zoom, double-click to zoom out" : "first_send_at missing: the time axis starts at 1970";
    const dl = $("report-summary");
    dl.textContent = "";
    for (const [key, label, text] of core.reportSummary(report)) {
      const item = el("div", { class: "summary-item" + (key === "integrity" && text === "FAILED" ? " bad" : "") });
      item.appendChild(el("dt", null, label));
      item.appendChild(el("dd", { "data-summary": key }, text));
      dl.appendChild(item);
    }
    reports.set.build(core.REPORT_CHARTS, core.reportBuffer(report), core.reportSettings(report));
    renderRuns($("report-runs-list"), reports.runs || [], reports.runs ? null : "no list of runs", reports.current);
  }

  // --- routing -----------------------------------------------------------------------------

  function route() {
    const r = core.parseHash(window.location.hash);
    document.body.dataset.view = r.view;
    $("live-view").hidden = r.view !== "live";
    $("report-view").hidden = r.view !== "report";
    $("nav-live").classList.toggle("current", r.view === "live");
    // The live poll goes on in the report view too: the header keeps saying what runs now.
    startLive();
    if (r.view === "live") {
      reports.token++;
      reports.current = null;
      reports.report = null;
      reports.set.destroy();
      if (!live.built && live.charts.length) {
        live.set.build(live.charts, liveView(), live.settings);
        live.built = true;
      }
      if (window.location.hash === "#runs") loadRuns();
    } else {
      live.set.destroy();
      live.built = false;
      openReport(r, loadRuns());
    }
  }

  // --- theme -------------------------------------------------------------------------------

  function storedTheme() {
    try {
      const v = window.localStorage.getItem(THEME_KEY);
      return v === "dark" || v === "light" ? v : null;
    } catch (e) {
      return null;
    }
  }

  const media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const systemTheme = () => (media && media.matches ? "dark" : "light");

  function applyTheme(theme) {
    const before = document.documentElement.dataset.theme;
    document.documentElement.dataset.theme = theme;
    const next = theme === "dark" ? "light" : "dark";
    const button = $("theme-toggle");
    button.textContent = next === "dark" ? "Switch to dark" : "Switch to light";
    button.setAttribute("aria-label", "Switch to the " + next + " theme");
    if (before !== theme) {
      // uPlot takes its colours as options: the one re-creation allowed.
      if (live.built) live.set.build(live.charts, liveView(), live.settings);
      if (reports.report && reports.current && reports.set.items.length) {
        reports.set.build(core.REPORT_CHARTS, core.reportBuffer(reports.report), core.reportSettings(reports.report));
      }
    }
  }

  $("theme-toggle").addEventListener("click", () => {
    const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    try {
      window.localStorage.setItem(THEME_KEY, theme);
    } catch (e) {
      /* storage disabled: the choice lasts for this page only */
    }
    applyTheme(theme);
  });
  if (media) {
    const onSystem = () => {
      if (!storedTheme()) applyTheme(systemTheme());
    };
    if (media.addEventListener) media.addEventListener("change", onSystem);
    else if (media.addListener) media.addListener(onSystem);
  }

  // --- start -------------------------------------------------------------------------------

  $("stage").textContent = config.stage || "not set";
  applyTheme(storedTheme() || systemTheme());
  window.addEventListener("hashchange", route);
  setInterval(renderFreshness, 1000);
  route();
  if (document.body.dataset.view === "live") loadRuns();
})();
