// Compare: several jobs' curves of one metric on one chart (?jobs=a,b,c&metric=valid_accuracy).
import { formatTick, getJson, h, markRendered, path, setTitle, showError } from './app.js';
import { loadECharts, makeChart, titled } from './charts.js';
import { isMetric } from './job.js';

export async function comparePage(app) {
  setTitle('Compare');
  const params = new URLSearchParams(location.search);
  const names = (params.get('jobs') || '').split(',').map((s) => s.trim()).filter(Boolean);
  let jobs;
  try {
    jobs = (await getJson('/api/jobs')).jobs.filter((j) => j.kind !== 'tuning');
  } catch (error) {
    return showError(app, error, 'Compare');
  }
  const picker = h('select', { id: 'pick', multiple: true, size: 8 },
    jobs.map((j) => h('option', { value: j.name, selected: names.includes(j.name) }, `${j.name} (${j.status})`)));
  const metricSelect = h('select', { id: 'metric' });
  const xSelect = h('select', { id: 'x-axis' }, h('option', { value: 'step' }, 'step'), h('option', { value: 'epoch' }, 'epoch'));
  const apply = h('button', { id: 'apply' }, 'Show');
  const element = h('div', { class: 'chart tall', id: 'compare-chart' });
  app.replaceChildren(h('h1', {}, 'Compare jobs'),
    h('div', { class: 'toolbar' }, picker, h('label', {}, 'Metric ', metricSelect), h('label', {}, 'x ', xSelect), apply),
    names.length ? element : h('p', { class: 'muted', id: 'hint' }, 'Pick jobs (Ctrl-click for several), then Show.'));
  apply.addEventListener('click', () => {
    const chosen = [...picker.selectedOptions].map((o) => o.value);
    const query = new URLSearchParams({ jobs: chosen.join(','), metric: metricSelect.value || '', x: xSelect.value });
    location.search = query.toString();
  });
  if (!names.length) return markRendered();

  let echarts;
  try {
    echarts = await loadECharts();
  } catch (error) {
    return showError(app, error, 'Compare');
  }
  const histories = await Promise.all(names.map((name) =>
    getJson(`${path('api', 'jobs', name)}/metrics`).then((m) => m.records).catch(() => [])));
  // Metrics every chosen job has first, then the others.
  const counts = new Map();
  for (const records of histories) {
    for (const key of new Set(records.flatMap((r) => Object.keys(r).filter((k) => isMetric(k, r[k]))))) {
      counts.set(key, (counts.get(key) || 0) + 1);
    }
  }
  const metrics = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([k]) => k);
  const wanted = params.get('metric');
  const metric = metrics.includes(wanted) ? wanted : (metrics.find((m) => m === 'valid_accuracy') || metrics[0]);
  metricSelect.replaceChildren(...metrics.map((m) => h('option', { value: m, selected: m === metric }, m)));
  const x = params.get('x') === 'epoch' ? 'epoch' : 'step';
  xSelect.value = x;
  makeChart(echarts, element, {
    title: titled(metric ? `${metric} by ${x}` : 'No metrics'),
    legend: { top: 6, right: 10, type: 'scroll', width: '60%' },
    xAxis: { type: 'value', name: x, nameLocation: 'middle', nameGap: 28, min: 'dataMin' },
    yAxis: { type: 'value', scale: true, axisLabel: { formatter: formatTick } },
    series: names.map((name, i) => {
      // Epoch records carry epoch-level values; prefer them for an epoch axis, step records for steps.
      const records = histories[i].filter((r) => typeof r[metric] === 'number');
      const byType = records.filter((r) => (x === 'epoch' ? r.type !== 'step' : r.type === 'step'));
      const chosen = (byType.length ? byType : records).filter((r) => typeof r[x] === 'number');
      return { name, type: 'line', showSymbol: chosen.length < 60, sampling: 'lttb', data: chosen.map((r) => [r[x], r[metric]]) };
    }),
  });
  element.dataset.series = String(names.length);
  markRendered();
}
