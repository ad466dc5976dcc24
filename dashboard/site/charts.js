/*
 * charts.js: a set of uPlot charts built from chart definitions ({id, title, series, limit}),
 * all on one time axis with the cursor synced. build() creates them (once, and again only when
 * the theme or the definitions change); update() feeds new data in place with setData.
 */
(function (root) {
  "use strict";
  const core = root.DashboardCore;

  const PLOT_HEIGHT = 190;
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  const LABEL_FONT = "600 12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

  /* The current theme's colours, from the CSS custom properties of <html>. */
  function palette() {
    const css = getComputedStyle(document.documentElement);
    const v = (name, fallback) => (css.getPropertyValue(name) || "").trim() || fallback;
    const series = [];
    for (let i = 1; i <= 8; i++) series.push(v("--series-" + i, "#0072b2"));
    return {
      axis: v("--chart-axis", "#333"),
      grid: v("--chart-grid", "rgba(0,0,0,0.08)"),
      limit: v("--chart-limit", "#b00020"),
      series,
    };
  }

  /* Axis width that fits its longest tick label (uPlot's axis-autosize pattern). */
  function axisSize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
    let size = axis.ticks.size + axis.gap;
    const longest = (values || []).reduce((acc, val) => (String(val).length > acc.length ? String(val) : acc), "");
    if (longest !== "") {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / (window.devicePixelRatio || 1);
    }
    return Math.ceil(size) + 2;
  }

  function valueFormatter(unit) {
    return (u, v) => (v === null || v === undefined ? "–" : core.formatNumber(v) + (unit ? " " + unit : ""));
  }

  /* Index of the newest bucket where any of the chart's own series has a value. */
  function lastIndexWithData(data, seriesCount) {
    const n = data[0].length;
    for (let i = n - 1; i >= 0; i--) {
      for (let s = 1; s <= seriesCount; s++) if (data[s][i] !== null && data[s][i] !== undefined) return i;
    }
    return n ? n - 1 : null;
  }

  function options(def, width, syncKey, colours, zoomable, onXScale) {
    const units = core.axisUnits(def);
    const seriesCount = def.series.length;
    const series = [{ label: "time", value: (u, v) => (v === null || v === undefined ? "–" : core.formatClock(v)) }];
    def.series.forEach((s, i) => {
      const right = s.axis === "right";
      series.push({
        label: s.label + " (" + (s.unit || "no unit") + (right && units.hasRight ? ", right axis" : "") + ")",
        scale: right ? "y2" : "y",
        stroke: colours.series[i % colours.series.length],
        width: 2,
        spanGaps: false,
        // no dots on the line, except for a value alone between gaps (a line cannot show it)
        points: { show: false, size: 5, fill: colours.series[i % colours.series.length], filter: (u, si) => core.isolatedIndices(u.data[si]) },
        value: valueFormatter(s.unit),
      });
    });
    if (def.limit) {
      series.push({
        label: def.limit.label || "limit",
        scale: "y",
        stroke: colours.limit,
        width: 1.5,
        dash: [7, 5],
        points: { show: false },
        value: (u, v) => (v === null || v === undefined ? "not set" : core.formatNumber(v)),
      });
    }
    const axisBase = {
      stroke: colours.axis,
      font: FONT,
      labelFont: LABEL_FONT,
      grid: { stroke: colours.grid, width: 1 },
      ticks: { stroke: colours.grid, width: 1 },
    };
    const axes = [
      Object.assign({}, axisBase, { space: 70 }),
      Object.assign({}, axisBase, { scale: "y", label: units.left || "", labelSize: 20, size: axisSize }),
    ];
    const scales = {
      x: { time: true },
      y: { range: (u, min, max) => core.yRange(min, max) },
    };
    if (units.hasRight) {
      axes.push(Object.assign({}, axisBase, { scale: "y2", side: 1, label: units.right || "", labelSize: 20, size: axisSize, grid: { show: false } }));
      scales.y2 = { range: (u, min, max) => core.yRange(min, max) };
    }
    const hooks = {
      // With the cursor off the chart the legend shows the newest values, not dashes.
      setCursor: [
        (u) => {
          if (u.cursor.idx === null || u.cursor.idx === undefined) {
            const idx = lastIndexWithData(u.data, seriesCount);
            if (idx !== null) u.setLegend({ idx });
          }
        },
      ],
      setData: [
        (u) => {
          if (u.cursor.left === undefined || u.cursor.left < 0) {
            const idx = lastIndexWithData(u.data, seriesCount);
            if (idx !== null) u.setLegend({ idx });
          }
        },
      ],
    };
    if (def.limit) {
      // The limit line's label, drawn on the plot above the line's right end.
      hooks.draw = [
        (u) => {
          const arr = u.data[seriesCount + 1];
          const v = arr && arr.length ? arr[0] : null;
          if (v === null || v === undefined) return;
          const dpr = window.devicePixelRatio || 1;
          const y = u.valToPos(v, "y", true);
          const ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = colours.limit;
          ctx.font = Math.round(11 * dpr) + "px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
          ctx.textAlign = "right";
          ctx.textBaseline = "bottom";
          ctx.fillText((def.limit.label || "limit") + " " + core.formatNumber(v), u.bbox.left + u.bbox.width - 6 * dpr, y - 3 * dpr);
          ctx.restore();
        },
      ];
    }
    if (onXScale) hooks.setScale = [(u, key) => key === "x" && onXScale(u)];
    return {
      width,
      height: PLOT_HEIGHT,
      cursor: {
        sync: { key: syncKey, setSeries: false },
        drag: zoomable ? { x: true, y: false, setScale: true } : { x: false, y: false, setScale: false },
        points: { size: 6 },
      },
      legend: { live: true },
      scales,
      axes,
      series,
      hooks,
    };
  }

  /*
   * ChartSet(container, {syncKey, zoomable})
   *   build(defs, buffer, settings)  (re)create the charts with the current theme
   *   update(buffer, settings)       new data into the existing charts (setData, drawn at once)
   *   destroy()
   */
  function ChartSet(container, opts) {
    this.container = container;
    this.syncKey = (opts && opts.syncKey) || "dashboard";
    this.zoomable = !!(opts && opts.zoomable);
    this.items = [];
    this.observer = null;
    this.syncingX = false;
  }

  ChartSet.prototype.destroy = function () {
    if (this.observer) this.observer.disconnect();
    this.observer = null;
    for (const item of this.items) item.plot.destroy();
    this.items = [];
    this.container.textContent = "";
  };

  ChartSet.prototype.build = function (defs, buffer, settings) {
    this.destroy();
    if (typeof uPlot === "undefined") {
      // setup found no npm: the page still tells the state, the numbers and the advice
      const note = document.createElement("p");
      note.className = "panel missing-charts";
      note.dataset.missing = "uplot";
      note.textContent =
        "The chart library (uPlot) is not installed: install Node.js and npm, run scripts/setup, then scripts/deploy.";
      this.container.appendChild(note);
      return;
    }
    const colours = palette();
    const onXScale = this.zoomable ? (u) => this.shareX(u) : null;
    for (const def of defs) {
      const wrap = document.createElement("section");
      wrap.className = "chart panel";
      wrap.dataset.chart = def.id;
      wrap.dataset.points = "0";
      const h = document.createElement("h3");
      h.textContent = def.title;
      wrap.appendChild(h);
      const plotEl = document.createElement("div");
      plotEl.className = "plot";
      wrap.appendChild(plotEl);
      this.container.appendChild(wrap);
      const width = Math.max(200, plotEl.clientWidth || 600);
      const data = core.chartData(buffer, def, settings);
      const plot = new uPlot(options(def, width, this.syncKey, colours, this.zoomable, onXScale), data, plotEl);
      wrap.dataset.points = String(core.countPoints(data, def.series.length));
      this.items.push({ def, wrap, plotEl, plot, width });
    }
    if (typeof ResizeObserver !== "undefined") {
      let pending = false;
      this.observer = new ResizeObserver(() => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => {
          pending = false;
          this.resize();
        });
      });
      for (const item of this.items) this.observer.observe(item.wrap);
    }
  };

  ChartSet.prototype.resize = function () {
    for (const item of this.items) {
      const width = Math.max(200, Math.floor(item.plotEl.clientWidth));
      if (width !== item.width) {
        item.width = width;
        item.plot.setSize({ width, height: PLOT_HEIGHT });
      }
    }
  };

  /* A zoom (drag) on one chart zooms the others to the same time range. */
  ChartSet.prototype.shareX = function (source) {
    if (this.syncingX) return;
    this.syncingX = true;
    try {
      const { min, max } = source.scales.x;
      for (const item of this.items) if (item.plot !== source) item.plot.setScale("x", { min, max });
    } finally {
      this.syncingX = false;
    }
  };

  ChartSet.prototype.update = function (buffer, settings) {
    for (const item of this.items) {
      const data = core.chartData(buffer, item.def, settings);
      item.plot.batch(() => item.plot.setData(data));
      item.wrap.dataset.points = String(core.countPoints(data, item.def.series.length));
    }
  };

  root.DashboardCharts = { ChartSet, palette };
})(typeof globalThis !== "undefined" ? globalThis : this);
