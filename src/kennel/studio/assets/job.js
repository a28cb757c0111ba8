// One job: facts, live curves of every metric (polling metrics?since=STEP
// while it runs), the resolved spec, the log tail, the debugger's rules, the
// profiler's summary, the evaluation and the model's files.
import {
  ApiError, formatBytes, formatTick, formatDuration, formatNumber, formatTime, getJson, h, markRendered, path, poll, postJson,
  setTitle, showError, statusBadge,
} from './app.js';
import { loadECharts, makeChart, titled } from './charts.js';

const METRICS_MS = 2000;
const JOB_MS = 4000;
const NOT_METRICS = new Set(['type', 'step', 'epoch', 'time', 'timestamp', 'wall_time', 'batch_size', 'samples', 'split']);

const GROUP_ORDER = ['Loss', 'Accuracy', 'Learning rate', 'Images per second', 'Seconds'];
const groupRank = (name) => (GROUP_ORDER.includes(name) ? GROUP_ORDER.indexOf(name) : GROUP_ORDER.length);

// Which chart a metric belongs on: metrics of one scale share an axis.
export function chartGroup(key) {
  if (/loss/.test(key)) return 'Loss';
  if (/acc|precision|recall|f1|auc|iou/.test(key)) return 'Accuracy';
  if (key === 'lr' || /learning_rate/.test(key)) return 'Learning rate';
  if (/images_per_second|throughput/.test(key)) return 'Images per second';
  if (/_seconds$/.test(key)) return 'Seconds';
  return key;
}

export function isMetric(key, value) {
  return typeof value === 'number' && isFinite(value) && !NOT_METRICS.has(key) && !key.endsWith('_at');
}

// Curves of one job, one chart per group, fed incrementally.
class Curves {
  constructor(echarts, container) {
    this.echarts = echarts;
    this.container = container;
    this.groups = new Map();  // group -> {chart, series: Map(name -> series)}
    this.stepKeys = new Set();
    this.points = 0;
  }

  add(records) {
    const touched = new Set();
    for (const record of records) {
      const type = record.type || 'step';
      for (const [key, value] of Object.entries(record)) {
        if (!isMetric(key, value)) continue;
        if (type === 'step') this.stepKeys.add(key);
        const name = type === 'step' || !this.stepKeys.has(key) ? key : `${key} (${type})`;
        const group = this.group(chartGroup(key));
        let series = group.series.get(name);
        if (!series) {
          series = { name, type: type === 'evaluation' ? 'scatter' : 'line', data: [], showSymbol: type === 'epoch',
            symbolSize: type === 'evaluation' ? 10 : 5, sampling: type === 'step' ? 'lttb' : undefined,
            lineStyle: { width: type === 'step' ? 1 : 2 } };
          group.series.set(name, series);
        }
        series.data.push([record.step, value]);
        touched.add(group);
      }
      this.points++;
    }
    for (const group of touched) {
      const series = [...group.series.values()];
      if (group.chart) group.chart.setOption({ series });
      else group.chart = makeChart(this.echarts, group.element, { ...group.option, series });  // one render
    }
    this.container.dataset.points = String(this.points);
  }

  group(name) {
    let group = this.groups.get(name);
    if (group) return group;
    const element = h('div', { class: 'chart', 'data-group': name });
    // Loss first, then accuracy, ...: whatever order the metrics arrive in.
    const after = [...this.container.children].find((c) => c.dataset.group && groupRank(c.dataset.group) > groupRank(name));
    this.container.insertBefore(element, after || null);
    const option = {
      title: titled(name),
      legend: { bottom: 2, type: 'scroll' },
      grid: { left: 60, right: 24, top: 36, bottom: 64 },
      xAxis: { type: 'value', name: 'step', nameLocation: 'middle', nameGap: 24, min: 'dataMin' },
      yAxis: { type: 'value', scale: true, axisLabel: { formatter: formatTick } },
    };
    group = { element, option, chart: null, series: new Map() };
    this.groups.set(name, group);
    return group;
  }
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '')
    .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function table(header, rows, id) {
  return h('table', { class: 'grid', id },
    h('thead', {}, h('tr', {}, header.map((c) => h('th', { class: c.num ? 'num' : '' }, c.label ?? c)))),
    h('tbody', {}, rows.map((row) => h('tr', {}, row.map((cell, i) => h('td', { class: header[i]?.num ? 'num' : '' }, cell))))));
}

function headerSection(detail, onStop) {
  const job = detail.job;
  const stop = job.status === 'InProgress' && job.kind !== 'tuning'
    ? h('button', { class: 'danger', id: 'stop', onclick: onStop }, 'Stop') : null;
  const parent = job.parent ? h('a', { href: path('studies', job.parent) }, job.parent) : null;
  return h('section', { id: 'summary' },
    h('h1', {}, job.name, statusBadge(job.status), stop,
      job.status === 'InProgress' ? h('span', { class: 'live', id: 'live' }, 'live') : null),
    job.reason ? h('p', { class: 'problem', id: 'reason' }, job.reason) : null,
    facts([
      ['Kind', job.kind], ['Study', parent], ['Arch', job.arch], ['Command', job.command], ['Dataset', job.dataset],
      ['Precision', job.precision], ['World size', job.world_size], ['Started', formatTime(job.started_at)],
      ['Ended', job.ended_at > 0 ? formatTime(job.ended_at) : null], ['Duration', formatDuration(job.duration_seconds)],
      ['Process', detail.pid ? `pid ${detail.pid} on ${detail.host}` : null], ['Directory', detail.job_dir],
      ['Final metrics', Object.entries(job.final_metrics || {}).map(([k, v]) => `${k}=${formatNumber(v)}`).join('  ') || null],
    ]),
    h('p', { class: 'problem', id: 'stop-message' }),
    detail.problems?.length ? h('ul', { class: 'problems', id: 'problems' }, detail.problems.map((p) => h('li', {}, p))) : null);
}

function logSection(detail) {
  const lines = detail.log?.lines || [];
  return h('section', { id: 'log' }, h('h2', {}, 'Log ', h('a', { href: detail.log_url, class: 'small' }, 'full log')),
    detail.log?.missing ? h('p', { class: 'muted' }, 'No log yet.')
      : h('pre', { id: 'log-tail' }, (detail.log.truncated ? '…\n' : '') + lines.join('\n')));
}

function debuggerSection(debug) {
  if (!debug) return null;
  const rules = debug.rules || [];
  return h('section', { id: 'debugger' }, h('h2', {}, 'Debugger rules'),
    debug.error ? h('p', { class: 'muted' }, debug.error) : null,
    rules.length ? table(['Rule', 'Status', 'Step', 'Tensor', 'Message'], rules.map((r) => [
      r.rule, statusBadge(r.status), r.step ?? '-',
      r.tensor ? (r.tensor_url ? h('a', { href: r.tensor_url, target: '_blank' }, r.tensor) : r.tensor) : '',
      r.message || '']), 'rules') : h('p', { class: 'muted' }, 'No rule results yet.'),
    h('p', { class: 'small' }, h('a', { href: debug.tensors_url, target: '_blank' }, 'every recorded tensor (JSON)')));
}

function profilerSection(profile) {
  if (!profile) return null;
  const job = profile.job || {};
  const steps = profile.steps || {};
  const phases = (profile.phases || []).filter((p) => p.seconds > 0);
  return h('section', { id: 'profiler' }, h('h2', {}, 'Profiler'),
    h('p', {}, profile.report_url ? h('a', { href: profile.report_url, target: '_blank' }, 'full report') : null,
      profile.trace_url ? ['  ·  ', h('a', { href: profile.trace_url }, 'Chrome trace (open in Perfetto)')] : null),
    profile.error ? h('p', { class: 'muted' }, profile.error) : null,
    facts([['Device', job.device], ['Initialisation', formatDuration(job.init_seconds)],
      ['Training loop', formatDuration(job.loop_seconds)], ['Finalisation', formatDuration(job.finalisation_seconds)],
      ['Steps', job.steps], ['Step time', steps.mean_ms ? `${formatNumber(steps.mean_ms, 1)} ms mean, ${formatNumber(steps.max_ms, 1)} ms max` : null]]),
    phases.length ? table(['Phase', { label: 'Seconds', num: true }, { label: 'Share', num: true }],
      phases.map((p) => [p.phase, formatNumber(p.seconds, 2), p.share === null ? '-' : `${(100 * p.share).toFixed(1)} %`]), 'phases') : null,
    (profile.rules || []).length ? [h('h3', {}, 'Rules'), table(['Rule', 'Triggered', 'Message', 'Recommendation'],
      profile.rules.map((r) => [r.rule, r.triggered ? 'yes' : 'no', r.message || '', r.recommendation || '']), 'profiler-rules')] : null);
}

function evaluationSection(echarts, evaluations) {
  if (!evaluations?.length) return null;
  const section = h('section', { id: 'evaluation' }, h('h2', {}, 'Evaluation'));
  for (const evaluation of evaluations) {
    const classes = evaluation.per_class || [];
    section.append(evaluation.name === 'evaluation' ? '' : h('h3', {}, `${evaluation.name} split`),
      facts([['Accuracy', formatNumber(evaluation.accuracy)], ['Top-5 accuracy', formatNumber(evaluation.top5_accuracy)],
        ['Macro F1', formatNumber(evaluation.macro_f1)], ['Samples', evaluation.samples]]));
    const matrix = h('div', { class: 'chart tall', id: `confusion-${evaluation.name}` });
    section.append(h('div', { class: 'columns' },
      table(['Class', { label: 'Support', num: true }, { label: 'Precision', num: true }, { label: 'Recall', num: true },
        { label: 'F1', num: true }], classes.map((c) => [c.class, c.support, formatNumber(c.precision, 3),
        formatNumber(c.recall, 3), formatNumber(c.f1, 3)]), `per-class-${evaluation.name}`),
      matrix));
    const names = classes.map((c) => c.class);
    const cells = [];
    let max = 0;
    (evaluation.confusion_matrix || []).forEach((row, truth) => (row || []).forEach((count, predicted) => {
      cells.push([predicted, truth, count]);
      max = Math.max(max, count);
    }));
    requestAnimationFrame(() => makeChart(echarts, matrix, {
      title: titled('Confusion matrix (rows: truth)'),
      tooltip: { position: 'top', formatter: (p) => `truth ${names[p.value[1]]}, predicted ${names[p.value[0]]}: ${p.value[2]}` },
      grid: { left: 110, right: 20, top: 40, bottom: 90 },
      xAxis: { type: 'category', data: names, name: 'predicted', axisLabel: { rotate: 45 } },
      yAxis: { type: 'category', data: names, inverse: true },
      visualMap: { min: 0, max: Math.max(1, max), show: false, inRange: { color: ['#f4f7fb', '#2f5d8a'] } },
      series: [{ type: 'heatmap', data: cells, label: { show: names.length <= 15 } }],
    }));
  }
  return section;
}

function filesSection(detail) {
  const model = detail.model;
  const rows = (files) => files.map((f) => [f.url ? h('a', { href: f.url }, f.name) : `${f.name}${f.dir ? '/' : ''}`,
    formatBytes(f.size)]);
  return h('section', { id: 'files' },
    model ? [h('h2', {}, 'Model'), model.info ? facts(Object.entries(model.info).map(([k, v]) =>
      [k, typeof v === 'object' ? JSON.stringify(v) : String(v)])) : null,
    table(['File', { label: 'Size', num: true }], rows(model.files || []), 'model-files')] : null,
    h('h2', {}, 'Job directory'), table(['Entry', { label: 'Size', num: true }], rows(detail.files || []), 'job-files'));
}

// first: the answer of /api/jobs/NAME the router already asked for (null: ask here).
export async function jobPage(app, name, first = null) {
  setTitle(name);
  let detail;
  try {
    detail = await (first ?? getJson(path('api', 'jobs', name)));
  } catch (error) {
    return showError(app, error, `Job ${name}`);
  }
  if (detail.job.kind === 'tuning') {
    location.replace(path('studies', name));
    return;
  }
  let echarts;
  try {
    echarts = await loadECharts();
  } catch (error) {
    return showError(app, error, `Job ${name}`);
  }
  const curves = h('div', { class: 'columns', id: 'curves', 'data-points': '0' });
  const onStop = async (event) => {
    event.target.disabled = true;
    try {
      document.getElementById('stop-message').textContent = (await postJson(`${path('api', 'jobs', name)}/stop`)).message;
    } catch (error) {
      document.getElementById('stop-message').textContent = `Stop failed: ${error.message}`;
      event.target.disabled = false;
    }
  };
  const draw = (d) => [headerSection(d, onStop), h('h2', {}, 'Curves'), curves,
    h('section', { id: 'spec' }, h('h2', {}, 'Resolved spec'), h('pre', {}, JSON.stringify(d.spec, null, 2))),
    logSection(d), debuggerSection(d.debugger), profilerSection(d.profiler)];
  app.replaceChildren(...[...draw(detail), evaluationSection(echarts, detail.evaluations), filesSection(detail)]
    .filter(Boolean));

  const chartsOf = new Curves(echarts, curves);
  let since = -1;
  let finished = false;
  const fetchMetrics = async () => {
    const slice = await getJson(`${path('api', 'jobs', name)}/metrics?since=${since}`);
    chartsOf.add(slice.records);
    since = slice.next;
    finished = slice.finished;
    return !finished;
  };
  await fetchMetrics().catch((error) => curves.append(h('p', { class: 'problem' }, error.message)));
  if (!chartsOf.groups.size) curves.append(h('p', { class: 'muted', id: 'no-metrics' }, 'No metrics recorded yet.'));
  markRendered();
  if (detail.job.status !== 'InProgress') return;

  poll(METRICS_MS, async () => {
    document.getElementById('no-metrics')?.remove();
    return fetchMetrics();
  });
  poll(JOB_MS, async () => {
    let fresh;
    try {
      fresh = await getJson(path('api', 'jobs', name));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return false;
      throw error;
    }
    const summary = document.getElementById('summary');
    const log = document.getElementById('log');
    const stopMessage = document.getElementById('stop-message').textContent;
    summary.replaceWith(headerSection(fresh, onStop));
    document.getElementById('stop-message').textContent = stopMessage;
    log.replaceWith(logSection(fresh));
    if (fresh.job.status === 'InProgress') return true;
    // Finished: the rest of the page (debugger, profiler, evaluation, model) is final now.
    location.reload();
    return false;
  });
}
