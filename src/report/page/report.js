// memfit report: draws the data that `memfit report` inlined into this page
// (docs/report.md describes it) with ECharts, which is inlined too. No network.
(function () {
  'use strict';
  const t0 = performance.now();
  const data = JSON.parse(document.getElementById('memfit-data').textContent);
  const timings = { parse: performance.now() - t0 };
  const MiB = 1024 * 1024;
  const ROLE_COLOURS = ['#4e79a7', '#9c755f', '#bab0ac', '#f28e2b', '#e15759', '#76b7b2'];
  const HOST_COLOUR = '#59a14f';
  // compute, recompute, swap_out, swap_in, free
  const KIND_COLOURS = ['#4e79a7', '#f28e2b', '#8e5fbf', '#59a14f', '#999999'];
  const FISSION_COLOUR = '#2ca6a4';
  const METHOD_COLOURS = ['#4e79a7', '#e15759', '#f28e2b', '#59a14f', '#8e5fbf', '#76b7b2', '#b07aa1'];
  if (data.format === 'memfit.pareto') {
    drawPareto();
    return;
  }
  if (data.format === 'memfit.dtr-sweep') {
    drawDtrSweep();
    return;
  }

  function fmtBytes(b) {
    if (b === null || b === undefined) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = Math.abs(b), u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    return (b < 0 ? '-' : '') + (u === 0 ? v.toFixed(0) : v.toFixed(2)) + ' ' + units[u];
  }
  // A `memfit optimize --pareto --report` page: one front per method.
  function drawPareto() {
    showSweepSection('pareto-section');
    const points = data.points, orig = data.original;
    document.getElementById('subtitle').textContent = 'device ' + data.device + ' · program order ' +
      fmtBytes(orig.peak_bytes) + ', ' + fmtMs(orig.latency_ms) + ' · ' + points.length + ' limits tried';
    const methods = [];
    for (const p of points) if (!methods.includes(p.method)) methods.push(p.method);
    const series = methods.map((m, i) => ({
      name: m, type: 'line', symbol: 'circle', symbolSize: 8, animation: false,
      itemStyle: { color: METHOD_COLOURS[i % METHOD_COLOURS.length] },
      data: points.map((p, k) => [p, k]).filter(([p]) => p.method === m && p.peak_bytes !== null)
        .sort((a, b) => a[0].peak_bytes - b[0].peak_bytes)
        .map(([p, k]) => [p.peak_bytes / MiB, 100 * p.overhead, k]),
    }));
    series.push({ name: 'program order', type: 'scatter', symbol: 'diamond', symbolSize: 12, animation: false,
      itemStyle: { color: '#333' }, data: [[orig.peak_bytes / MiB, 0, -1]] });
    drawSweep('pareto', 'pareto-table', {
      xAxis: { type: 'value', name: 'peak MiB', scale: true },
      yAxis: { type: 'value', name: 'overhead %', scale: true },
      tooltip: (q) => {
        const k = q.data[2];
        if (k < 0) return 'program order: ' + fmtBytes(orig.peak_bytes) + ', ' + fmtMs(orig.latency_ms);
        const p = points[k];
        return '<b>' + esc(p.method) + '</b> at ' + p.ratio.toFixed(2) + ' of the peak<br>peak ' + fmtBytes(p.peak_bytes) +
          ', arena ' + fmtBytes(p.arena_bytes) + '<br>latency ' + fmtMs(p.latency_ms) + ' (' + (100 * p.overhead).toFixed(2) +
          '%)<br>by ' + esc(p.found_by);
      },
      series: series,
      headers: ['method', 'limit', 'peak', 'arena', 'latency', 'overhead', 'found by', 'seconds'],
      cells: (p) => p.peak_bytes === null
        ? [p.method, p.ratio.toFixed(2) + ' (' + fmtBytes(p.limit_bytes) + ')', 'no plan: ' + p.error, '', '', '', '', '']
        : [p.method, p.ratio.toFixed(2) + ' (' + fmtBytes(p.limit_bytes) + ')', fmtBytes(p.peak_bytes), fmtBytes(p.arena_bytes),
          fmtMs(p.latency_ms), (100 * p.overhead).toFixed(2) + '%', p.found_by, p.seconds === null ? '' : p.seconds.toFixed(2)],
    });
  }
  // A sweep page shows its own section instead of a plan's.
  function showSweepSection(id) {
    for (const plan of ['summary-section', 'memory-section', 'arena-section', 'streams-section', 'decisions-section']) {
      document.getElementById(plan).hidden = true;
    }
    document.getElementById(id).hidden = false;
    document.getElementById('title').textContent = 'memfit report: ' + data.title;
    document.title = 'memfit report: ' + data.title;
  }
  // A sweep page's chart ('chart-' + name: a line chart of `spec.series` on
  // spec.xAxis / spec.yAxis, its tooltip text spec.tooltip(item)) and table
  // (`tableId`: spec.headers, then spec.cells(point) for every point); for
  // tests and scripts, window.memfitReport holds the chart, ready once drawn.
  function drawSweep(name, tableId, spec) {
    const chart = echarts.init(document.getElementById('chart-' + name), null, { renderer: 'canvas' });
    const finished = new Promise((resolve) => chart.on('finished', resolve));
    chart.setOption({
      animation: false,
      legend: { top: 0 },
      grid: { left: 70, right: 60, top: 40, bottom: 50 },
      xAxis: spec.xAxis,
      yAxis: spec.yAxis,
      tooltip: { trigger: 'item', className: 'memfit-tooltip', formatter: spec.tooltip },
      series: spec.series,
    });
    const table = document.getElementById(tableId);
    const head = el('tr');
    for (const h of spec.headers) head.appendChild(el('th', {}, h));
    table.appendChild(head);
    for (const p of data.points) {
      const tr = el('tr');
      for (const c of spec.cells(p)) tr.appendChild(el('td', {}, c));
      table.appendChild(tr);
    }
    window.memfitReport = { data: data, charts: { [name]: chart }, ready: false, drawMs: null, pageMs: null };
    finished.then(() => {
      window.memfitReport.drawMs = performance.now() - t0;
      window.memfitReport.pageMs = performance.now();
      window.memfitReport.ready = true;
    });
  }
  // A `memfit dtr TRACE --sweep --report` page: overhead against budget, one
  // line per eviction heuristic.
  function drawDtrSweep() {
    showSweepSection('dtr-section');
    const points = data.points, base = data.unconstrained;
    const heuristics = [];
    for (const p of points) if (!heuristics.includes(p.heuristic)) heuristics.push(p.heuristic);
    document.getElementById('subtitle').textContent = 'unconstrained peak ' + fmtBytes(base.peak_bytes) + ', compute ' +
      fmtMs(base.compute_ns / 1e6) + ' · ' + heuristics.length + ' heuristics, ' + points.length + ' runs';
    const series = heuristics.map((h, i) => ({
      name: h, type: 'line', symbol: 'circle', symbolSize: 7, animation: false, connectNulls: false,
      itemStyle: { color: METHOD_COLOURS[i % METHOD_COLOURS.length] },
      data: points.map((p, k) => [p, k]).filter(([p]) => p.heuristic === h).sort((a, b) => a[0].ratio - b[0].ratio)
        .map(([p, k]) => [p.ratio, p.overhead, k]),
    }));
    drawSweep('dtr', 'dtr-table', {
      xAxis: { type: 'value', name: 'budget (of the unconstrained peak)', nameLocation: 'middle', nameGap: 28, min: 0, max: 1.05 },
      yAxis: { type: 'value', name: 'overhead (x)', scale: true },
      tooltip: (q) => {
        const p = points[q.data[2]];
        return '<b>' + esc(p.heuristic) + '</b> at ' + p.ratio.toFixed(2) + ' of the peak (' + fmtBytes(p.budget_bytes) +
          ')<br>overhead ' + (p.overhead === null ? p.status : p.overhead.toFixed(3) + 'x') + '<br>' + p.evictions +
          ' evictions, ' + p.recomputations + ' recomputations<br>peak ' + fmtBytes(p.peak_bytes);
      },
      series: series,
      headers: ['heuristic', 'budget', 'status', 'overhead', 'evictions', 'recomputations', 'peak'],
      cells: (p) => [p.heuristic, p.ratio.toFixed(2) + ' (' + fmtBytes(p.budget_bytes) + ')', p.status,
        p.overhead === null ? '—' : p.overhead.toFixed(3) + 'x', String(p.evictions), String(p.recomputations),
        fmtBytes(p.peak_bytes)],
    });
  }
  function fmtMs(ms) { return ms === null || ms === undefined ? '—' : ms.toFixed(3) + ' ms'; }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  const tensors = data.tensors, ops = data.ops, steps = data.steps, arena = data.arena;
  function tensorName(id) { return id >= 0 ? tensors.name[id] : '—'; }
  function opName(id) { return id >= 0 ? ops.name[id] + ' (' + ops.type[id] + ')' : '—'; }
  function stepLabel(i) {
    const kind = steps.kinds[steps.kind[i]], ref = steps.ref[i];
    return kind + ' ' + (kind === 'compute' || kind === 'recompute' ? "'" + ops.name[ref] + "'" : "'" + tensors.name[ref] + "'");
  }
  function stepTimeMs(i) { return steps.start_us[i] / 1000; }

  document.getElementById('title').textContent = 'memfit report: ' + data.title;
  document.title = 'memfit report: ' + data.title;
  document.getElementById('subtitle').textContent =
    'device ' + data.device + ' · ' + steps.kind.length + ' steps · ' + arena.start.length + ' storage instances';

  // --- Summary --------------------------------------------------------------
  (function summary() {
    const table = document.getElementById('summary');
    const plans = data.summary;
    const head = el('tr');
    head.appendChild(el('th', {}, ''));
    for (const p of plans) head.appendChild(el('th', {}, p.label));
    table.appendChild(head);
    const rows = [
      ['limit', (p) => p.limit_bytes !== null ? fmtBytes(p.limit_bytes) + ' (' + (p.limit_bytes / p.original_peak_bytes).toFixed(3) + ' of the peak)'
        : (p.latency_limit_ms !== null ? 'latency ' + fmtMs(p.latency_limit_ms) : '—')],
      ['peak (simulated)', (p) => fmtBytes(p.peak_bytes) + ' (' + (p.peak_bytes / p.original_peak_bytes).toFixed(3) + ')'],
      ['arena', (p) => fmtBytes(p.arena_bytes) + (p.proven_optimal ? ' (proven optimal)' : '')],
      ['lower bound', (p) => fmtBytes(p.lower_bound_bytes)],
      ['least memory within the latency', (p) => p.latency_bound_bytes !== null && p.latency_bound_bytes !== undefined
        ? fmtBytes(p.latency_bound_bytes) + ' (' + (p.latency_bound_bytes / p.original_peak_bytes).toFixed(3) + '): no plan of this graph needs less'
        : '—'],
      ['latency', (p) => fmtMs(p.latency_ms)],
      ['overhead', (p) => (100 * p.overhead >= 0 ? '+' : '') + (100 * p.overhead).toFixed(2) + '%'],
      ['method', (p) => p.method || (p.scheduler ? p.scheduler : '—')],
      ['solve time', (p) => p.solve_seconds !== null ? p.solve_seconds.toFixed(2) + ' s' : '—'],
      ['program order', (p) => fmtBytes(p.original_peak_bytes) + ', ' + fmtMs(p.original_latency_ms)],
      ['recompute', (p) => fmtMs(p.recompute_ms)],
      ['swapped out', (p) => fmtBytes(p.swap_out_bytes) + ' (host peak ' + fmtBytes(p.peak_host_bytes) + ')'],
      ['steps / instances', (p) => p.steps + ' / ' + p.buffers],
      ['rewrites', (p) => (p.rewrites && p.rewrites.length ? p.rewrites.join('; ') : 'none')],
      ['fission', (p) => (p.fissions && p.fissions.length ? p.fissions.join('; ') : 'none')],
      ['offset planner', (p) => p.planner || '—'],
    ];
    for (const [name, f] of rows) {
      const tr = el('tr');
      tr.appendChild(el('th', {}, name));
      for (const p of plans) tr.appendChild(el('td', {}, f(p)));
      table.appendChild(tr);
    }
  })();

  const charts = {};
  const pending = [];
  function makeChart(id) {
    const chart = echarts.init(document.getElementById(id), null, { renderer: 'canvas' });
    pending.push(new Promise((resolve) => chart.on('finished', resolve)));
    window.addEventListener('resize', () => chart.resize());
    return chart;
  }
  const zoom = (xAxisIndex, extra) => [
    Object.assign({ type: 'inside', xAxisIndex: xAxisIndex, filterMode: 'none' }, extra || {}),
    Object.assign({ type: 'slider', xAxisIndex: xAxisIndex, filterMode: 'none', height: 18, bottom: 6 }, extra || {}),
  ];

  // --- Memory over time -----------------------------------------------------
  (function memory() {
    const m = data.memory, n = m.time_us.length, roles = data.roles;
    const series = [];
    // Stacked by hand: series k holds roles 0..k; the tallest is drawn first.
    const cumulative = [];
    let running = new Float64Array(n);
    for (let r = 0; r < roles.length; r++) {
      const next = new Float64Array(n);
      for (let p = 0; p < n; p++) next[p] = running[p] + m.by_role[r][p];
      cumulative.push(next);
      running = next;
    }
    // Roles that never hold a byte get no series (each costs a 20k-point area on a large plan).
    const used = roles.map((_, r) => m.by_role[r].some((b) => b !== 0));
    for (let r = roles.length - 1; r >= 0; r--) {
      if (!used[r]) continue;
      const pts = new Array(n);
      for (let p = 0; p < n; p++) pts[p] = [m.time_us[p] / 1000, cumulative[r][p] / MiB, p];
      series.push({
        name: roles[r], type: 'line', step: 'end', data: pts, showSymbol: false, symbol: 'none', sampling: 'max',
        lineStyle: { width: 0 }, areaStyle: { color: ROLE_COLOURS[r], opacity: 1 }, itemStyle: { color: ROLE_COLOURS[r] },
        xAxisIndex: 0, yAxisIndex: 0, animation: false, large: true, silent: false,
      });
    }
    const line = (curve, name, colour, type) => ({
      name: name, type: 'line', step: 'end', showSymbol: false, symbol: 'none', animation: false, sampling: 'max',
      data: curve.time_us.map((t, i) => [t / 1000, curve.total[i] / MiB]),
      lineStyle: { color: colour, width: 1.5, type: type }, itemStyle: { color: colour }, xAxisIndex: 0, yAxisIndex: 0,
    });
    series.push(line(data.original, 'program order', '#333', 'dashed'));
    if (data.compare) series.push(line(data.compare, 'compared: ' + data.compare.label, '#d62728', 'dotted'));
    if (data.measured) series.push(line(data.measured, 'measured: ' + data.measured.label, '#2ca02c', 'solid'));
    const limit = data.summary[0].limit_bytes;
    if (limit !== null) {
      series[0].markLine = {
        silent: true, symbol: 'none', label: { formatter: 'limit ' + fmtBytes(limit), position: 'insideEndTop' },
        lineStyle: { color: '#d62728', type: 'solid' }, data: [{ yAxis: limit / MiB }],
      };
    }
    series.push({
      name: 'host', type: 'line', step: 'end', showSymbol: false, symbol: 'none', animation: false, sampling: 'max',
      data: m.time_us.map((t, i) => [t / 1000, m.host[i] / MiB]),
      lineStyle: { width: 0 }, areaStyle: { color: HOST_COLOUR, opacity: 0.8 }, itemStyle: { color: HOST_COLOUR },
      xAxisIndex: 1, yAxisIndex: 1,
    });
    let latestMs = 1e-6;
    for (const c of [m, data.original].concat(data.compare ? [data.compare] : [], data.measured ? [data.measured] : [])) {
      if (c.time_us.length) latestMs = Math.max(latestMs, c.time_us[c.time_us.length - 1] / 1000);
    }
    const chart = makeChart('chart-memory');
    chart.setOption({
      animation: false,
      legend: { top: 0, data: roles.filter((_, r) => used[r]).concat(['host', 'program order']).concat(data.compare ? ['compared: ' + data.compare.label] : [], data.measured ? ['measured: ' + data.measured.label] : []) },
      grid: [{ left: 70, right: 60, top: 30, height: '58%' }, { left: 70, right: 60, top: '74%', bottom: 50 }],
      xAxis: [
        { type: 'value', gridIndex: 0, min: 0, max: latestMs, axisLabel: { formatter: (v) => +v.toPrecision(6) + ' ms' } },
        { type: 'value', gridIndex: 1, min: 0, max: latestMs, axisLabel: { formatter: (v) => +v.toPrecision(6) + ' ms' } },
      ],
      yAxis: [
        { type: 'value', gridIndex: 0, name: 'device MiB' },
        { type: 'value', gridIndex: 1, name: 'host MiB', splitNumber: 2 },
      ],
      dataZoom: zoom([0, 1]),
      tooltip: {
        trigger: 'axis', className: 'memfit-tooltip', axisPointer: { type: 'line' },
        formatter: (params) => {
          const p = params.find((q) => q.seriesType === 'line' && q.data && q.data.length === 3);
          if (!p) return '';
          const i = p.data[2];
          let total = 0;
          let html = '<b>' + (m.time_us[i] / 1000).toFixed(3) + ' ms</b><br>';
          for (let r = roles.length - 1; r >= 0; r--) {
            total += m.by_role[r][i];
            if (!used[r]) continue;
            html += '<span style="color:' + ROLE_COLOURS[r] + '">■</span> ' + esc(roles[r]) + ': ' + fmtBytes(m.by_role[r][i]) + '<br>';
          }
          html += '<b>device ' + fmtBytes(total) + '</b>, host ' + fmtBytes(m.host[i]);
          return html;
        },
      },
      series: series,
    });
    charts.memory = chart;
    timings.memory = performance.now() - t0;
  })();

  // Rectangles drawn on a canvas over an ECharts grid: ECharts draws the
  // axes and handles zoom and pan, the overlay draws tens of thousands of
  // rectangles in milliseconds (one ECharts element each would take
  // seconds) and finds the one under the mouse for its tooltip.
  //   rects: {count, x0(i), x1(i), y0(i), y1(i), colour(i), tip(i) -> html,
  //           after(ctx, map): draws over the rectangles (optional)}
  function rectOverlay(chart, rects) {
    const dom = chart.getDom();
    dom.style.position = 'relative';
    const canvas = el('canvas', { class: 'overlay' });
    canvas.style.cssText = 'position:absolute;left:0;top:0;pointer-events:none;';
    dom.appendChild(canvas);
    const tip = el('div', { class: 'memfit-tooltip overlay-tip' });
    tip.style.cssText = 'position:absolute;display:none;pointer-events:none;background:rgba(255,255,255,0.96);' +
      'border:1px solid #999;border-radius:4px;padding:6px 8px;font-size:12px;z-index:10;box-shadow:0 1px 4px rgba(0,0,0,.2);';
    dom.appendChild(tip);
    let map = null;  // data -> pixel, for the current zoom
    function mapping() {
      const grid = chart.getModel().getComponent('grid', 0).coordinateSystem.getRect();
      const p0 = chart.convertToPixel({ gridIndex: 0 }, [0, 0]), p1 = chart.convertToPixel({ gridIndex: 0 }, [1, 1]);
      return { grid: grid, ox: p0[0], oy: p0[1], sx: p1[0] - p0[0], sy: p1[1] - p0[1] };
    }
    function draw() {
      map = mapping();
      const dpr = window.devicePixelRatio || 1, w = dom.clientWidth, h = dom.clientHeight;
      if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
        canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
        canvas.style.width = w + 'px'; canvas.style.height = h + 'px';
      }
      const ctx = canvas.getContext('2d');
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      const g = map.grid;
      ctx.save();
      ctx.beginPath(); ctx.rect(g.x, g.y, g.width, g.height); ctx.clip();
      let colour = null;
      for (let i = 0; i < rects.count; i++) {
        let xa = map.ox + map.sx * rects.x0(i), xb = map.ox + map.sx * rects.x1(i);
        if (xb < g.x || xa > g.x + g.width) continue;
        let ya = map.oy + map.sy * rects.y0(i), yb = map.oy + map.sy * rects.y1(i);
        if (ya > yb) { const t = ya; ya = yb; yb = t; }
        if (yb < g.y || ya > g.y + g.height) continue;
        const c = rects.colour(i);
        if (c !== colour) { ctx.fillStyle = c; colour = c; }
        ctx.fillRect(xa, ya, Math.max(xb - xa, 0.5), Math.max(yb - ya, 0.5));
      }
      if (rects.after) rects.after(ctx, map);
      ctx.restore();
    }
    // The rectangle under pixel (x, y) of the chart, or -1 (the last drawn wins).
    function hit(x, y) {
      if (!map) return -1;
      const g = map.grid;
      if (x < g.x || x > g.x + g.width || y < g.y || y > g.y + g.height) return -1;
      const dx = (x - map.ox) / map.sx, dy = (y - map.oy) / map.sy;
      for (let i = rects.count - 1; i >= 0; i--) {
        if (dx >= rects.x0(i) && dx <= rects.x1(i)) {
          const lo = Math.min(rects.y0(i), rects.y1(i)), hi = Math.max(rects.y0(i), rects.y1(i));
          if (dy >= lo && dy <= hi) return i;
        }
      }
      return -1;
    }
    // Drawn now (setOption has laid the grid out) and after every render
    // (zoom, pan, resize).
    draw();
    chart.on('finished', draw);
    chart.getZr().on('mousemove', (e) => {
      const i = hit(e.offsetX, e.offsetY);
      if (i < 0) { tip.style.display = 'none'; return; }
      tip.innerHTML = rects.tip(i);
      tip.style.display = 'block';
      const left = Math.min(e.offsetX + 14, dom.clientWidth - tip.offsetWidth - 4);
      const top = e.offsetY + 14 + tip.offsetHeight > dom.clientHeight ? e.offsetY - tip.offsetHeight - 10 : e.offsetY + 14;
      tip.style.left = Math.max(left, 0) + 'px';
      tip.style.top = Math.max(top, 0) + 'px';
    });
    chart.getZr().on('globalout', () => { tip.style.display = 'none'; });
    return {
      draw: draw, hit: hit,
      // Page pixel of the centre of rectangle i under the current zoom.
      pixel(i) {
        const m = mapping(), r = dom.getBoundingClientRect();
        const x = m.ox + m.sx * (rects.x0(i) + rects.x1(i)) / 2, y = m.oy + m.sy * (rects.y0(i) + rects.y1(i)) / 2;
        return [r.left + window.scrollX + x, r.top + window.scrollY + y];
      },
    };
  }
  const overlays = {};

  // --- The arena ------------------------------------------------------------
  (function arenaChart() {
    const n = arena.start.length;
    // Bytes reserved at each step (the planner's lower bound is their maximum).
    const numSteps = steps.kind.length;
    const diff = new Float64Array(numSteps + 1);
    for (let k = 0; k < n; k++) { diff[arena.start[k]] += arena.size[k]; diff[arena.end[k]] -= arena.size[k]; }
    const reserved = new Array(numSteps + 1);
    let live = 0;
    for (let s = 0; s < numSteps; s++) { live += diff[s]; reserved[s] = [s, live / MiB]; }
    reserved[numSteps] = [numSteps, live / MiB];
    const top = Math.max(arena.arena_bytes / MiB, 1e-6);
    const chart = makeChart('chart-arena');
    chart.setOption({
      animation: false,
      grid: { left: 70, right: 60, top: 24, bottom: 60 },
      xAxis: { type: 'value', name: 'step', min: 0, max: numSteps, axisLabel: { formatter: (v) => String(Math.round(v)) } },
      yAxis: { type: 'value', name: 'offset MiB', min: 0, max: top, axisLabel: { formatter: (v) => String(+v.toFixed(1)) } },
      dataZoom: zoom(0).concat([{ type: 'inside', yAxisIndex: 0, filterMode: 'none', zoomOnMouseWheel: 'shift', moveOnMouseWheel: false }]),
      series: [
        {
          // The rectangles and the reserved bytes are drawn by the overlay;
          // this series carries the arena's top line.
          type: 'line', name: 'reserved', data: [[0, 0], [numSteps, 0]], showSymbol: false, symbol: 'none', silent: true,
          lineStyle: { opacity: 0 }, animation: false,
          markLine: { silent: true, symbol: 'none', label: { formatter: 'arena ' + fmtBytes(arena.arena_bytes), position: 'insideEndTop' },
            lineStyle: { color: '#000', type: 'dashed' }, data: [{ yAxis: top }] },
        },
      ],
    });
    overlays.arena = rectOverlay(chart, {
      count: n,
      x0: (k) => arena.start[k], x1: (k) => arena.end[k],
      y0: (k) => arena.offset[k] / MiB, y1: (k) => (arena.offset[k] + arena.size[k]) / MiB,
      colour: (k) => ROLE_COLOURS[arena.role[k]],
      after: (ctx, map) => {
        // Bytes reserved at each step, as a step line over the rectangles.
        ctx.strokeStyle = '#000';
        ctx.lineWidth = 1;
        ctx.beginPath();
        for (let s = 0; s < reserved.length; s++) {
          const x = map.ox + map.sx * reserved[s][0], y = map.oy + map.sy * reserved[s][1];
          if (s === 0) ctx.moveTo(x, y); else ctx.lineTo(x, map.oy + map.sy * reserved[s - 1][1]), ctx.lineTo(x, y);
        }
        ctx.stroke();
      },
      tip: (k) => {
        const storage = arena.storage[k], op = arena.op[k];
        const first = arena.start[k], last = arena.end[k] - 1;
        const head = storage >= 0 ? 'tensor <b>' + esc(tensors.name[storage]) + '</b> (t' + storage + ')' : '<b>workspace</b> of ' + esc(opName(op));
        return head + '<br>role: ' + esc(data.roles[arena.role[k]]) + ', ' + esc(arena.origins[arena.origin[k]]) +
          (storage >= 0 ? '<br>producer: ' + esc(opName(op)) + '<br>bytes: ' + fmtBytes(tensors.bytes[storage]) : '') +
          '<br>buffer: ' + fmtBytes(arena.size[k]) + ' at offset ' + fmtBytes(arena.offset[k]) +
          '<br>lifetime: steps ' + first + '..' + last + ' (' + fmtMs(steps.start_us[first] / 1000) + ' to ' + fmtMs(steps.end_us[last] / 1000) + ')';
      },
    });
    charts.arena = chart;
    timings.arena = performance.now() - t0;
  })();

  // --- The two streams ------------------------------------------------------
  (function streams() {
    const idx = [];
    for (let i = 0; i < steps.kind.length; i++) if (steps.stream[i] <= 1) idx.push(i);  // free steps take no time
    let end = 0;
    for (const i of idx) end = Math.max(end, steps.end_us[i] / 1000);
    const chart = makeChart('chart-streams');
    chart.setOption({
      animation: false,
      grid: { left: 70, right: 60, top: 10, bottom: 60 },
      xAxis: { type: 'value', min: 0, max: Math.max(end, 1e-6), axisLabel: { formatter: (v) => +v.toPrecision(6) + ' ms' } },
      // Rows by category index (0 compute, 1 copy): the overlay maps them linearly.
      yAxis: { type: 'category', data: ['compute', 'copy'], inverse: true },
      dataZoom: zoom(0),
      series: [{ type: 'line', data: [[0, 0], [end, 0]], showSymbol: false, silent: true, lineStyle: { opacity: 0 } }],
    });
    overlays.streams = rectOverlay(chart, {
      count: idx.length,
      x0: (j) => steps.start_us[idx[j]] / 1000, x1: (j) => steps.end_us[idx[j]] / 1000,
      y0: (j) => steps.stream[idx[j]] - 0.35, y1: (j) => steps.stream[idx[j]] + 0.35,
      // Compute steps of a fissioned op's parts in teal.
      colour: (j) => (steps.kind[idx[j]] === 0 && ops.part[steps.ref[idx[j]]] >= 0 ? FISSION_COLOUR : KIND_COLOURS[steps.kind[idx[j]]]),
      tip: (j) => {
        const i = idx[j];
        const part = steps.kind[i] <= 1 && ops.part[steps.ref[i]] >= 0 ? ' (fission part ' + ops.part[steps.ref[i]] + ')' : '';
        return 'step ' + i + ': <b>' + esc(stepLabel(i)) + '</b>' + part + '<br>' + fmtMs(steps.start_us[i] / 1000) + ' to ' + fmtMs(steps.end_us[i] / 1000) +
          ' (' + (steps.end_us[i] - steps.start_us[i]).toFixed(2) + ' us)';
      },
    });
    overlays.streamStep = idx;
    charts.streams = chart;
    timings.streams = performance.now() - t0;
  })();

  // --- Decisions and the search trace ---------------------------------------
  function focusStep(i, until) {
    const last = until === null || until === undefined ? i : until;
    const a = steps.start_us[i] / 1000, b = Math.max(steps.end_us[last] / 1000, a);
    const total = Math.max(...[data.memory.time_us[data.memory.time_us.length - 1] / 1000, b, 1e-9]);
    const pad = Math.max((b - a) * 0.5, total * 0.01);
    for (const c of [charts.memory, charts.streams]) {
      c.dispatchAction({ type: 'dataZoom', dataZoomIndex: 0, startValue: Math.max(a - pad, 0), endValue: b + pad });
    }
    const sPad = Math.max(Math.round((last - i) * 0.5), 20);
    charts.arena.dispatchAction({ type: 'dataZoom', dataZoomIndex: 0, startValue: Math.max(i - sPad, 0), endValue: last + sPad });
  }
  // The step at which the plan's simulated device memory peaks (the last
  // step that starts at or before the peak's time).
  function peakStep() {
    const m = data.memory;
    let best = 0, most = -1;
    for (let p = 0; p < m.time_us.length; p++) {
      let total = 0;
      for (const r of m.by_role) total += r[p];
      if (total > most) { most = total; best = p; }
    }
    const time = m.time_us[best], start = steps.start_us;
    let lo = 0, hi = start.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (start[mid] <= time) lo = mid; else hi = mid - 1;
    }
    return lo;
  }
  // Where a decision of the search shows in the charts: the plan kept (its
  // result, its placement) at its peak; a fission kept at its split ops.
  // Null for the plans tried and dropped, which the charts do not draw.
  function traceLinks(trace) {
    const links = trace.map(() => null);
    let last = -1;
    for (let k = 0; k < trace.length; k++) if (trace[k].stage === 'result') last = k;
    if (last < 0 || !steps.kind.length) return links;
    const kept = trace[last], peak = peakStep();
    const arenaBytes = data.summary[0].arena_bytes;
    const d = data.decisions;
    let fission = -1;
    for (let j = 0; j < d.kind.length && fission < 0; j++) if (d.kind[j] === 'fission') fission = j;
    for (let k = 0; k < trace.length; k++) {
      const e = trace[k];
      if (k === last) {
        links[k] = { step: peak, until: null, what: 'the plan kept, at its peak (step ' + peak + ')' };
      } else if (e.stage === 'placement' && e.outcome === 'packed' && e.arena_bytes === arenaBytes &&
                 kept.method.startsWith(e.method)) {
        links[k] = { step: peak, until: null, what: 'the plan kept, placed (its peak: step ' + peak + ')' };
      } else if (e.stage === 'fission' && fission >= 0 && /kept/.test(e.outcome) && kept.method.includes(e.method)) {
        links[k] = { step: d.step[fission], until: d.until[fission], what: 'the split ops (step ' + d.step[fission] + ')' };
      }
    }
    return links;
  }
  // The search: a chart of every plan tried (its simulated peak against the
  // budget it worked under: fits, over, placed) and the table of every
  // decision. A point or a row of the plan kept shows it in the charts.
  function searchTrace() {
    const trace = data.trace, tt = document.getElementById('trace');
    document.getElementById('trace-note').textContent = trace.length
      ? 'Every plan the optimizer tried and why it kept or dropped it (' + trace.length + ' events). The chart: each ' +
        'plan simulated (its peak against the budget it ran under, in the order tried) and each placement; rows and ' +
        'points of the plan kept are links (underlined): click one to show it in the charts above.'
      : 'No search trace: give a PLAN.json written by `memfit optimize` (it keeps its decisions), `--trace` the output ' +
        'of `memfit optimize --json --verbose`, or let `memfit report --mem-limit-ratio` optimize the graph.';
    const searchChart = document.getElementById('chart-search');
    if (!trace.length) { searchChart.hidden = true; return; }
    const links = traceLinks(trace);
    const rows = [];
    function select(k) {
      for (const r of tt.querySelectorAll('tr.selected')) r.classList.remove('selected');
      const tr = rows[k];
      tr.classList.add('selected');
      const box = tt.parentElement;
      box.scrollTop = tr.offsetTop - box.clientHeight / 2;
      if (links[k]) focusStep(links[k].step, links[k].until);
    }
    const head = el('tr');
    for (const h of ['s', 'stage', 'schedule', 'method', 'budget', 'peak / arena', 'latency', 'outcome', 'in the charts']) {
      head.appendChild(el('th', {}, h));
    }
    tt.appendChild(head);
    // Deterministic runs record no seconds (all read as 0): the column stays empty.
    const timed = trace.some((e) => e.seconds > 0);
    trace.forEach((e, k) => {
      const tr = el('tr', links[k] ? { class: 'row link', 'data-event': k, 'data-step': links[k].step } : { 'data-event': k });
      const cells = [timed ? e.seconds.toFixed(3) : '', e.stage, e.schedule, e.method, e.budget_bytes !== null ? fmtBytes(e.budget_bytes) : '',
        e.peak_bytes !== null ? fmtBytes(e.peak_bytes) : (e.arena_bytes !== null ? 'arena ' + fmtBytes(e.arena_bytes) : ''),
        e.latency_ms !== null ? fmtMs(e.latency_ms) : '', e.outcome, links[k] ? links[k].what : ''];
      for (const c of cells) tr.appendChild(el('td', {}, c));
      if (links[k]) tr.addEventListener('click', () => select(k));
      rows.push(tr);
      tt.appendChild(tr);
    });

    const groups = { 'fits': [], 'over the budget': [], 'packed': [], 'does not pack': [], 'the plan kept': [] };
    const budgets = [];
    trace.forEach((e, k) => {
      if (e.stage === 'plan' && e.peak_bytes !== null) {
        groups[e.outcome.startsWith('fits') ? 'fits' : 'over the budget'].push([k, e.peak_bytes / MiB, k]);
      } else if (e.stage === 'placement' && e.arena_bytes !== null) {
        groups[e.outcome === 'packed' ? 'packed' : 'does not pack'].push([k, e.arena_bytes / MiB, k]);
      }
      if (links[k] && (e.peak_bytes !== null || e.arena_bytes !== null)) {
        groups['the plan kept'].push([k, (e.peak_bytes !== null ? e.peak_bytes : e.arena_bytes) / MiB, k]);
      }
      if ((e.stage === 'plan' || e.stage === 'search') && e.budget_bytes !== null) budgets.push([k, e.budget_bytes / MiB]);
    });
    const colours = { 'fits': '#59a14f', 'over the budget': '#f28e2b', 'packed': '#4e79a7', 'does not pack': '#e15759', 'the plan kept': '#111' };
    const series = Object.keys(groups).map((name) => ({
      name: name, type: 'scatter', data: groups[name], animation: false, large: groups[name].length > 2000,
      symbol: name === 'the plan kept' ? 'pin' : (name === 'packed' || name === 'does not pack' ? 'diamond' : 'circle'),
      symbolSize: name === 'the plan kept' ? 18 : 6, itemStyle: { color: colours[name] },
    }));
    series.push({ name: 'budget', type: 'line', step: 'end', data: budgets, showSymbol: false, symbol: 'none', animation: false,
      lineStyle: { color: '#999', width: 1 }, itemStyle: { color: '#999' }, silent: true });
    const limit = data.summary[0].limit_bytes;
    if (limit !== null) {
      series[series.length - 1].markLine = { silent: true, symbol: 'none', data: [{ yAxis: limit / MiB }],
        label: { formatter: 'limit ' + fmtBytes(limit), position: 'insideStartTop' }, lineStyle: { color: '#d62728', type: 'solid' } };
    }
    const chart = makeChart('chart-search');
    charts.search = chart;
    chart.setOption({
      animation: false,
      legend: { top: 0 },
      grid: { left: 70, right: 40, top: 40, bottom: 72 },
      xAxis: { type: 'value', name: 'decision (in the order made)', nameLocation: 'middle', nameGap: 26, min: 0, max: trace.length },
      yAxis: { type: 'value', name: 'MiB', scale: true },
      dataZoom: zoom(0),
      tooltip: {
        trigger: 'item', className: 'memfit-tooltip',
        formatter: (q) => {
          const e = trace[q.data[2]];
          if (!e) return '';
          return '<b>' + esc(e.stage) + '</b> ' + esc(e.schedule) + ' ' + esc(e.method) + '<br>' +
            (e.budget_bytes !== null ? 'budget ' + fmtBytes(e.budget_bytes) + '<br>' : '') +
            (e.peak_bytes !== null ? 'peak ' + fmtBytes(e.peak_bytes) : 'arena ' + fmtBytes(e.arena_bytes)) +
            (e.latency_ms !== null ? ', ' + fmtMs(e.latency_ms) : '') + '<br>' + esc(e.outcome) +
            (links[q.data[2]] ? '<br><i>click: ' + esc(links[q.data[2]].what) + '</i>' : '');
        },
      },
      series: series,
    });
    chart.on('click', (q) => { if (q.data && q.data[2] !== undefined) select(q.data[2]); });
  }
  (function decisions() {
    const d = data.decisions, n = d.kind.length;
    const table = document.getElementById('decisions');
    const filter = document.getElementById('decision-filter');
    const counts = {};
    for (const k of d.kind) counts[k] = (counts[k] || 0) + 1;
    const MAX_ROWS = 3000;
    let shown = 'all';
    function render() {
      table.textContent = '';
      const head = el('tr');
      for (const h of ['step', 'what', 'bytes', 'why']) head.appendChild(el('th', {}, h));
      table.appendChild(head);
      let rows = 0;
      for (let j = 0; j < n && rows < MAX_ROWS; j++) {
        if (shown !== 'all' && d.kind[j] !== shown) continue;
        const tr = el('tr', { class: 'row', 'data-step': d.step[j] });
        tr.appendChild(el('td', {}, String(d.step[j])));
        tr.appendChild(el('td', { class: 'kind-' + d.kind[j] }, d.kind[j]));
        tr.appendChild(el('td', {}, d.bytes[j] ? fmtBytes(d.bytes[j]) : ''));
        tr.appendChild(el('td', {}, d.why[j]));
        tr.addEventListener('click', () => {
          for (const s of table.querySelectorAll('tr.selected')) s.classList.remove('selected');
          tr.classList.add('selected');
          focusStep(d.step[j], d.until[j]);
        });
        table.appendChild(tr);
        rows++;
      }
      const total = shown === 'all' ? n : counts[shown];
      if (total > rows) table.appendChild(el('tr', {}, '')).appendChild(el('td', { colspan: 4 }, '… and ' + (total - rows) + ' more'));
      if (n === 0) table.appendChild(el('tr', {})).appendChild(el('td', { colspan: 4 }, 'none: the plan runs every op once, in program order, keeping every tensor on the device'));
    }
    const buttons = [];
    for (const k of ['all'].concat(Object.keys(counts))) {
      const b = el('button', { type: 'button' }, k + ' (' + (k === 'all' ? n : counts[k]) + ')');
      b.addEventListener('click', () => { shown = k; for (const x of buttons) x.classList.toggle('on', x === b); render(); });
      if (k === 'all') b.classList.add('on');
      buttons.push(b);
      filter.appendChild(b);
    }
    render();

    searchTrace();
  })();

  timings.tables = performance.now() - t0;
  // For tests and scripts: the charts, and where buffer k is drawn (page pixels).
  window.memfitReport = {
    data: data, charts: charts, timings: timings, ready: false, drawMs: null, pageMs: null, focusStep: focusStep,
    pixelOfBuffer(k) { return overlays.arena.pixel(k); },
    // The overlay rectangle under a chart pixel (-1: none), for tests.
    bufferAt(x, y) { return overlays.arena.hit(x, y); },
  };
  Promise.all(pending).then(() => {
    window.memfitReport.drawMs = performance.now() - t0;  // from this script's start
    window.memfitReport.pageMs = performance.now();        // from the navigation's start
    window.memfitReport.ready = true;
    document.body.setAttribute('data-ready', '1');
  });
})();
