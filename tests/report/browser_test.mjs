// `memfit report` in a real headless browser (Debian's chromium, driven by
// playwright-core from web/node_modules): the page loads from a file with no
// console error and no request outside it, each chart draws (its screenshot
// is not blank), hovering a rectangle of the arena shows its tensor, a
// decision focuses the charts on its step, the search's chart draws and a
// decision of the search (the plan kept, read from PLAN.json's decisions)
// focuses the charts on the plan's peak, --compare and fissioned pages load
// too, and so do `optimize --pareto --report`'s page, its front drawn, and
// `dtr --sweep --report`'s, one line per heuristic.
//
//   node browser_test.mjs --cli build/bin/memfit --web web [--keep DIR]
//   node browser_test.mjs --web web --page report.html --shots DIR [--prefix NAME-]
//       (screenshots of each chart for docs/; no checks but the load)
//
// Exits 1 with one line per failed check. CTest runs the first form
// (tests/CMakeLists.txt). MEMFIT_CHROMIUM names another browser binary.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.web) { console.error('browser_test: --web DIR is required'); process.exit(2); }
const playwright = path.join(path.resolve(args.web), 'node_modules', 'playwright-core', 'index.mjs');
if (!fs.existsSync(playwright)) {
  console.error(`browser_test: ${playwright} is missing: run scripts/setup.sh (npm ci in web/)`);
  process.exit(1);
}
const { chromium } = await import(pathToFileURL(playwright).href);
const browserPath = process.env.MEMFIT_CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(browserPath)) {
  console.error(`browser_test: no browser at ${browserPath}: run scripts/setup.sh (it installs Debian's chromium)`);
  process.exit(1);
}

const failures = [];
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
}

const browser = await chromium.launch({
  executablePath: browserPath,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});

// Opens `file` and waits until every chart has drawn. Returns the page and
// what went wrong on the way (console errors, page errors, requests that
// left the file).
async function open(file, viewport) {
  const page = await browser.newPage({ viewport: viewport || { width: 1400, height: 1000 } });
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith('file:') && !url.startsWith('data:') && !url.startsWith('blob:')) problems.push('request: ' + url);
  });
  const start = Date.now();
  await page.goto(pathToFileURL(file).href);
  try {
    await page.waitForFunction(() => window.memfitReport && window.memfitReport.ready, null, { timeout: 120000 });
  } catch (e) {
    problems.push('the charts never finished drawing');
  }
  return { page, problems, loadMs: Date.now() - start };
}

// Not blank: the screenshot, decoded in the page, has many pixels off the
// background and several colours.
async function screenshotStats(page, png) {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    let ink = 0;
    for (let i = 0; i < px.length; i += 4) {
      const r = px[i], g = px[i + 1], b = px[i + 2];
      if (r < 235 || g < 235 || b < 235) ink++;
      if (colours.size < 1000) colours.add((r << 16) | (g << 8) | b);
    }
    return { ink: ink / (px.length / 4), colours: colours.size, width: c.width, height: c.height };
  }, png.toString('base64'));
}

const CHARTS = ['chart-memory', 'chart-arena', 'chart-streams'];

// A check that nothing went wrong on the page (console or page errors, requests).
function noErrors(problems, what) {
  check(problems.length === 0, what + (problems.length ? ': ' + problems.join('; ') : ''));
}
// A check that chart `id` draws (its screenshot is not blank); returns the png.
async function draws(page, id, minInk) {
  await page.locator('#' + id).scrollIntoViewIfNeeded();
  const png = await page.locator('#' + id).screenshot();
  const s = await screenshotStats(page, png);
  check(s.ink > minInk && s.colours >= 4, `${id} draws: ${(100 * s.ink).toFixed(1)}% ink, ${s.colours} colours`);
  return png;
}

if (args.page) {
  // Screenshots for docs/.
  const { page, problems, loadMs } = await open(path.resolve(args.page), { width: 1200, height: 900 });
  for (const p of problems) check(false, p);
  const [drawMs, pageMs, format] = await page.evaluate(() => [window.memfitReport.drawMs, window.memfitReport.pageMs,
    window.memfitReport.data.format]);
  const sweep = { 'memfit.pareto': 'chart-pareto', 'memfit.dtr-sweep': 'chart-dtr' }[format];
  if (!sweep) {
    const buffers = await page.evaluate(() => window.memfitReport.data.arena.start.length);
    console.log(`${buffers} storage instances drawn ${pageMs.toFixed(0)} ms after the navigation started ` +
      `(its script: ${drawMs.toFixed(0)} ms; the driver saw ${loadMs} ms)`);
  }
  if (args.shots) {
    fs.mkdirSync(args.shots, { recursive: true });
    const searched = await page.evaluate(() => !!document.getElementById('chart-search') &&
      !document.getElementById('chart-search').hidden && window.memfitReport.data.format === 'memfit.report');
    const ids = sweep ? [sweep] : CHARTS.concat(['summary'], searched ? ['chart-search'] : []);
    for (const id of ids) {
      const file = path.join(args.shots, (args.prefix || '') + id.replace('chart-', '') + '.png');
      await page.locator('#' + id).screenshot({ path: file });
      console.log('wrote ' + file);
    }
  }
  await browser.close();
  process.exit(failures.length ? 1 : 0);
}

if (!args.cli) { console.error('browser_test: --cli PATH is required'); process.exit(2); }
const dir = args.keep || fs.mkdtempSync(path.join(os.tmpdir(), 'memfit_report_'));
fs.mkdirSync(dir, { recursive: true });
const cli = path.resolve(args.cli);
const run = (...a) => execFileSync(cli, a, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
try {
  // ResNet-18's training step squeezed to half its peak: swaps and recomputes.
  run('zoo', 'resnet-18', '--train', '-o', 'g.json');
  run('report', 'g.json', '--mem-limit-ratio', '0.5', '--deterministic', '-o', 'report.html');
  run('report', 'g.json', '-o', 'order.html');
  run('optimize', 'g.json', '--mem-limit-ratio', '0.6', '--deterministic', '-o', 'p.json');
  run('report', 'p.json', '--compare', 'g.json', '-o', 'compare.html');
  run('optimize', 'g.json', '--pareto', '--time-budget', '3', '--report', 'pareto.html');
  run('zoo', 'mlp', '--train', '-o', 'mlp.json');
  run('fission', 'mlp.json', '--dim', 'batch', '--parts', '4', '-o', 'mlp4.json');
  run('report', 'mlp4.json', '-o', 'fission.html');
  run('report', 'p.json', '-o', 'plan.html');
  run('dtr', 'g.json', '--sweep', '--report', 'dtr.html');

  {
    const { page, problems } = await open(path.join(dir, 'report.html'));
    check(problems.length === 0, 'report.html loads offline with no console error' + (problems.length ? ': ' + problems.join('; ') : ''));
    const data = await page.evaluate(() => {
      const d = window.memfitReport.data;
      return { buffers: d.arena.start.length, decisions: d.decisions.kind.length, trace: d.trace.length, steps: d.steps.kind.length };
    });
    check(data.buffers > 0 && data.steps > 0, `the page holds ${data.buffers} storage instances and ${data.steps} steps`);
    check(data.decisions > 0, `the plan has decisions to show (${data.decisions})`);
    check(data.trace > 0, `the search trace came along (${data.trace} events)`);

    for (const id of CHARTS) {
      const png = await page.locator('#' + id).screenshot();
      const s = await screenshotStats(page, png);
      check(s.ink > 0.2 && s.colours >= 4, `${id} draws: ${(100 * s.ink).toFixed(1)}% ink, ${s.colours} colours in ${s.width}x${s.height}`);
      if (args.keep) fs.writeFileSync(path.join(dir, id + '.png'), png);
    }

    // Hover the largest storage instance of the arena: its tooltip names the tensor.
    await page.locator('#chart-arena').scrollIntoViewIfNeeded();
    const target = await page.evaluate(() => {
      const d = window.memfitReport.data, a = d.arena;
      let best = -1, area = -1;
      for (let k = 0; k < a.start.length; k++) {
        const s = (a.end[k] - a.start[k]) * a.size[k];
        if (a.storage[k] >= 0 && s > area) { area = s; best = k; }
      }
      const [x, y] = window.memfitReport.pixelOfBuffer(best);
      return { k: best, x: x - window.scrollX, y: y - window.scrollY, name: d.tensors.name[a.storage[best]] };
    });
    await page.mouse.move(target.x, target.y);
    const tip = page.locator('#chart-arena .overlay-tip');
    let tipText = '';
    try {
      await tip.waitFor({ state: 'visible', timeout: 5000 });
      tipText = await tip.innerText();
    } catch (e) { /* checked below */ }
    check(tipText.includes(target.name) && tipText.includes('producer') && tipText.includes('lifetime'),
      `hovering buffer ${target.k} shows its tensor '${target.name}': ${JSON.stringify(tipText.slice(0, 120))}`);
    await page.mouse.move(5, 5);

    // Hovering the memory chart shows the bytes by role.
    const mem = page.locator('#chart-memory');
    await mem.scrollIntoViewIfNeeded();
    const box = await mem.boundingBox();
    await page.mouse.move(box.x + box.width * 0.4, box.y + box.height * 0.3);
    let memTip = '';
    try {
      await page.locator('#chart-memory .memfit-tooltip').first().waitFor({ state: 'visible', timeout: 5000 });
      memTip = await page.locator('#chart-memory .memfit-tooltip').first().innerText();
    } catch (e) { /* checked below */ }
    check(memTip.includes('activations') && memTip.includes('device'), `hovering memory over time shows bytes by role: ${JSON.stringify(memTip.slice(0, 80))}`);

    // A decision focuses the charts on its step: the one spanning the fewest steps.
    const j = await page.evaluate(() => {
      const d = window.memfitReport.data.decisions;
      let best = 0;
      const span = (k) => (d.until[k] === null ? d.step[k] : d.until[k]) - d.step[k];
      for (let k = 1; k < d.step.length; k++) if (span(k) < span(best)) best = k;
      return best;
    });
    const row = page.locator('#decisions tr.row').nth(j);
    const step = Number(await row.getAttribute('data-step'));
    await row.click();
    const zoomed = await page.evaluate(() => {
      const z = window.memfitReport.charts.arena.getOption().dataZoom[0];
      const s = window.memfitReport.charts.streams.getOption().dataZoom[0];
      return { arena: [z.startValue, z.endValue], streams: [s.startValue, s.endValue] };
    });
    check(zoomed.arena[0] <= step && step <= zoomed.arena[1] && zoomed.arena[1] - zoomed.arena[0] < data.steps,
      `clicking the decision at step ${step} zooms the arena to steps ${zoomed.arena.map(Math.round).join('..')}`);
    // Zoom and pan by the sliders' actions, then no error after all the interactions.
    await page.evaluate(() => {
      for (const c of Object.values(window.memfitReport.charts)) c.dispatchAction({ type: 'dataZoom', start: 20, end: 40 });
    });
    await page.waitForTimeout(300);
    check(problems.length === 0, 'no console error after hovering, clicking, zooming and panning' +
      (problems.length ? ': ' + problems.join('; ') : ''));
    await page.close();
  }
  {
    // The search, from PLAN.json's decisions: its chart draws, and the plan
    // kept is a link that focuses the charts on the plan's peak.
    const { page, problems } = await open(path.join(dir, 'plan.html'));
    noErrors(problems, 'plan.html loads with no console error');
    const trace = await page.evaluate(() => window.memfitReport.data.trace.length);
    check(trace > 0, `plan.html draws the search from PLAN.json's decisions (${trace} events)`);
    await draws(page, 'chart-search', 0.03);
    const links = page.locator('#trace tr.link');
    const count = await links.count();
    check(count >= 1, `the plan kept is a link in the search's table (${count} links)`);
    if (count >= 1) {
      const link = links.last();
      const step = Number(await link.getAttribute('data-step'));
      await link.click();
      const state = await page.evaluate(() => {
        const z = window.memfitReport.charts.arena.getOption().dataZoom[0];
        return { arena: [z.startValue, z.endValue], steps: window.memfitReport.data.steps.kind.length,
          selected: document.querySelectorAll('#trace tr.selected').length };
      });
      check(state.selected === 1 && state.arena[0] <= step && step <= state.arena[1] && state.arena[1] - state.arena[0] < state.steps,
        `clicking the plan kept selects it and zooms the arena to its peak, step ${step} (${state.arena.map(Math.round).join('..')})`);
      // A click on the search chart's point of the plan kept does the same, with no error.
      await page.evaluate(() => window.memfitReport.charts.arena.dispatchAction({ type: 'dataZoom', start: 0, end: 100 }));
      const k = Number(await link.getAttribute('data-event'));
      await page.evaluate((k) => {
        const c = window.memfitReport.charts.search;
        const series = c.getOption().series.findIndex((x) => x.name === 'the plan kept');
        c.dispatchAction({ type: 'showTip', seriesIndex: series, dataIndex: 0 });
        c.trigger('click', { data: [k, 0, k] });
      }, k);
      await page.waitForTimeout(200);
      const again = await page.evaluate(() => {
        const z = window.memfitReport.charts.arena.getOption().dataZoom[0];
        return [z.startValue, z.endValue];
      });
      check(again[0] <= step && step <= again[1], `a click on the plan kept in the search chart zooms to step ${step} too`);
    }
    noErrors(problems, 'no console error after clicking the search');
    await page.close();
  }
  {
    const { page, problems } = await open(path.join(dir, 'dtr.html'));
    noErrors(problems, 'dtr.html loads with no console error');
    const png = await draws(page, 'chart-dtr', 0.03);
    const shown = await page.evaluate(() => [document.getElementById('dtr-section').hidden, document.getElementById('arena-section').hidden,
      window.memfitReport.charts.dtr.getOption().series.length]);
    check(!shown[0] && shown[1] && shown[2] === 7, `the DTR page shows its section alone, one line per heuristic (${shown[2]})`);
    const rows = await page.locator('#dtr-table tr').count();
    check(rows === 71, `the DTR table lists every run (${rows - 1})`);
    // Hover a point: its tooltip names the heuristic and its overhead.
    await page.evaluate(() => window.memfitReport.charts.dtr.dispatchAction({ type: 'showTip', seriesIndex: 0, dataIndex: 9 }));
    let tip = '';
    try {
      await page.locator('#chart-dtr .memfit-tooltip').first().waitFor({ state: 'visible', timeout: 5000 });
      tip = await page.locator('#chart-dtr .memfit-tooltip').first().innerText();
    } catch (e) { /* checked below */ }
    check(tip.includes('dtr') && tip.includes('overhead'), `a DTR point's tooltip: ${JSON.stringify(tip.slice(0, 80))}`);
    noErrors(problems, 'no console error on the DTR page after hovering');
    if (args.keep) fs.writeFileSync(path.join(dir, 'chart-dtr.png'), png);
    await page.close();
  }
  for (const name of ['order.html', 'compare.html', 'fission.html']) {
    const { page, problems } = await open(path.join(dir, name));
    check(problems.length === 0, `${name} loads with no console error` + (problems.length ? ': ' + problems.join('; ') : ''));
    if (name === 'fission.html') {
      const first = await page.locator('#decisions tr.row').first().innerText();
      check(first.includes('fission') && first.includes('x4'), `fission.html lists the fission first: ${JSON.stringify(first.slice(0, 80))}`);
    }
    const columns = await page.locator('#summary tr').first().locator('th').count();
    check(columns === (name === 'compare.html' ? 3 : 2), `${name}'s summary has ${columns - 1} plan column(s)`);
    await page.close();
  }
  {
    const { page, problems } = await open(path.join(dir, 'pareto.html'));
    noErrors(problems, 'pareto.html loads with no console error');
    const png = await draws(page, 'chart-pareto', 0.03);
    const hidden = await page.evaluate(() => document.getElementById('arena-section').hidden);
    check(hidden, 'the pareto page hides the plan sections');
    const rows = await page.locator('#pareto-table tr').count();
    check(rows === 22, `the pareto table lists every point (${rows - 1})`);
    if (args.keep) fs.writeFileSync(path.join(dir, 'chart-pareto.png'), png);
    await page.close();
  }
} catch (e) {
  check(false, 'unexpected: ' + (e.stderr || e.message || String(e)).split('\n')[0]);
} finally {
  await browser.close();
  if (!args.keep) fs.rmSync(dir, { recursive: true, force: true });
}
if (failures.length) {
  console.error(`browser_test: ${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('browser_test: all checks passed');
