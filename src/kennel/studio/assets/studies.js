// Tuning studies: the list, and one study with its trials table, objective
// over time with the best so far, parameter vs objective, parallel
// coordinates and fANOVA importance; refreshed while the study runs.
import {
  escapeHtml, formatDuration, formatNumber, formatTime, getJson, h, markRendered, path, poll, setTitle, showError,
  SortableTable, statusBadge, statusBadgeHtml,
} from './app.js';
import { loadECharts, makeChart, statusColors, titled } from './charts.js';

const REFRESH_MS = 3000;

function objectiveText(objective) {
  return objective ? `${objective.metric} (${objective.goal === 'minimize' || objective.goal === 'min' ? 'min' : 'max'})` : '';
}

// first: the answer of /api/studies the router already asked for (null: ask here).
export async function studiesPage(app, first = null) {
  setTitle('Tuning studies');
  const table = new SortableTable([
    { key: 'name', label: 'Study', html: (r) => `<a href="${path('studies', r.name)}">${escapeHtml(r.name)}</a>` +
      (r.problems || []).map((p) => `<span class="problem">\u26A0 ${escapeHtml(p)}</span>`).join('') },
    { key: 'status', label: 'Status', html: (r) => statusBadgeHtml(r.status) + (r.reason ? `<span class="reason">${escapeHtml(r.reason)}</span>` : '') },
    { key: 'strategy', label: 'Strategy' },
    { key: 'objective', label: 'Objective', value: (r) => objectiveText(r.objective) },
    { key: 'trials', label: 'Trials', num: true, format: (v, r) => (r.max_jobs ? `${v} / ${r.max_jobs}` : v) },
    { key: 'counts', label: 'Outcomes', value: (r) => Object.entries(r.counts || {}).map(([k, v]) => `${v} ${k}`).join(', ') },
    { key: 'best', label: 'Best', html: (r) => (r.best ? `<a href="${path('jobs', r.best.name)}">${escapeHtml(r.best.name)}</a> ${escapeHtml(formatNumber(r.best.objective))}` : '-') },
    { key: 'started_at', label: 'Started', format: (v) => formatTime(v, true) },
    { key: 'duration_seconds', label: 'Duration', num: true, format: formatDuration },
  ], { sortKey: 'started_at', id: 'studies' });
  app.replaceChildren(h('h1', {}, 'Tuning studies'), table.element);
  let pending = first;
  const load = async () => {
    const answer = pending ?? getJson('/api/studies');
    pending = null;
    table.setRows((await answer).studies);
  };
  try {
    await load();
  } catch (error) {
    return showError(app, error, 'Studies');
  }
  if (!table.rows.length) app.append(h('p', { class: 'muted', id: 'empty' }, 'No tuning study has run with this home yet (kennel tune).'));
  markRendered();
  poll(REFRESH_MS * 2, load);
}

// ---- one study ----

function parameterAxis(definition, name) {
  if (definition?.type === 'categorical') return { type: 'category', data: (definition.choices || []).map(String), name };
  return { type: definition?.scale === 'log' ? 'log' : 'value', name, scale: true };
}

function trialValue(trial, name, definition) {
  const value = trial.hyperparameters?.[name];
  if (value === undefined || value === null) return null;
  return definition?.type === 'categorical' ? String(value) : value;
}

function byStatus(trials, x) {
  const groups = new Map();
  for (const trial of trials) {
    if (typeof trial.objective !== 'number') continue;
    const label = trial.early_stopped ? 'Stopped' : trial.status;
    if (!groups.has(label)) groups.set(label, []);
    groups.get(label).push({ value: [x(trial), trial.objective], name: trial.name });
  }
  return [...groups].map(([label, data]) => ({ name: label === 'Stopped' ? 'stopped early' : label, type: 'scatter',
    data, symbolSize: 8, itemStyle: { color: statusColors[label] || '#888' } }));
}

function studyHeader(study) {
  const best = study.best;
  const objective = study.objective || {};
  return h('section', { id: 'summary' },
    h('h1', {}, `Study ${study.name}`, statusBadge(study.status),
      study.status === 'InProgress' ? h('span', { class: 'live' }, 'live') : null),
    study.reason ? h('p', { class: 'problem' }, study.reason) : null,
    h('dl', { class: 'facts' },
      h('dt', {}, 'Strategy'), h('dd', {}, `${study.strategy}, early stopping ${study.early_stopping}`),
      h('dt', {}, 'Objective'), h('dd', {}, `${objective.metric} (${objective.goal}, taken at the ${objective.at} epoch)`),
      h('dt', {}, 'Trials'), h('dd', { id: 'trial-count' }, `${(study.trials || []).length} of ${study.max_jobs}: ` +
        Object.entries(study.counts || {}).map(([k, v]) => `${v} ${k}`).join(', ')),
      h('dt', {}, 'Duration'), h('dd', {}, formatDuration(study.duration_seconds)),
      h('dt', {}, 'Best trial'), h('dd', { id: 'best' }, best
        ? [h('a', { href: path('jobs', best.name) }, best.name), ` ${objective.metric} = ${formatNumber(best.objective)}  `,
          Object.entries(best.hyperparameters || {}).map(([k, v]) => `${k}=${formatNumber(v)}`).join(', ')]
        : 'none yet'),
      study.retrain_command ? [h('dt', {}, 'Retrain the best'), h('dd', { class: 'command' },
        h('code', { id: 'retrain' }, study.retrain_command),
        h('button', { onclick: () => navigator.clipboard?.writeText(study.retrain_command) }, 'Copy'))] : null,
      study.report_url ? [h('dt', {}, 'Report'), h('dd', {}, h('a', { href: study.report_url, target: '_blank' }, 'static HTML report'))] : null));
}

class StudyCharts {
  constructor(echarts, container) {
    this.echarts = echarts;
    this.container = container;
    this.charts = new Map();
  }

  // Draws `option` in the chart `id`, made on first use (one render either way).
  chart(id, className, option) {
    const existing = this.charts.get(id);
    if (existing) return existing.setOption(option, { replaceMerge: ['series'] });
    const element = h('div', { class: className, id });
    this.container.append(element);
    this.charts.set(id, makeChart(this.echarts, element, option));
  }

  draw(study) {
    const trials = study.trials || [];
    const parameters = study.parameters || {};
    const names = Object.keys(parameters);
    const maximize = !(study.objective?.goal === 'minimize' || study.objective?.goal === 'min');
    const metric = study.objective?.metric || 'objective';

    // Objective over time, with the best so far (trials that ran to the end; early stops only if nothing did).
    const finished = trials.filter((t) => typeof t.objective === 'number' && t.ended_at > 0);
    const origin = Math.min(...trials.filter((t) => t.started_at > 0).map((t) => t.started_at));
    const minutes = (t) => (t.ended_at - origin) / 60;
    const full = finished.filter((t) => !t.early_stopped);
    const bestSoFar = [];
    for (const t of [...(full.length ? full : finished)].sort((a, b) => a.ended_at - b.ended_at)) {
      const last = bestSoFar.length ? bestSoFar[bestSoFar.length - 1][1] : null;
      bestSoFar.push([minutes(t), last === null || (maximize ? t.objective > last : t.objective < last) ? t.objective : last]);
    }
    this.chart('objective-over-time', 'chart tall', {
      title: titled(`Objective (${metric}) over time`), legend: { bottom: 2 },
      grid: { left: 60, right: 24, top: 36, bottom: 64 },
      tooltip: { trigger: 'item', formatter: (p) => (p.data?.name ? `${p.data.name}: ${formatNumber(p.value[1])}` : formatNumber(p.value[1])) },
      xAxis: { type: 'value', name: 'minutes since the first trial started', nameLocation: 'middle', nameGap: 24 },
      yAxis: { type: 'value', scale: true },
      series: [...byStatus(finished, minutes), { name: 'best so far', type: 'line', step: 'end', data: bestSoFar,
        showSymbol: false, lineStyle: { color: '#222', width: 2 }, itemStyle: { color: '#222' } }],
    });

    // Importance.
    const importance = study.importance || {};
    const ranked = [...(importance.parameters || [])].sort((a, b) => a.importance - b.importance);
    this.chart('importance', 'chart', {
      title: titled('Parameter importance (fANOVA)', { subtext: importance.note || importance.method, subtextStyle: { fontSize: 11 } }),
      grid: { left: 110, right: 30, top: 60, bottom: 30 },
      tooltip: { trigger: 'item', formatter: (p) => `${p.name}: ${(100 * p.value).toFixed(1)} % of the variance` },
      xAxis: { type: 'value', max: 1, axisLabel: { formatter: (v) => `${Math.round(v * 100)}%` } },
      yAxis: { type: 'category', data: ranked.map((p) => p.name) },
      series: [{ type: 'bar', data: ranked.map((p) => p.importance), itemStyle: { color: '#2f5d8a' } }],
    });

    // Parallel coordinates: every parameter, then the objective.
    const scored = trials.filter((t) => typeof t.objective === 'number');
    const values = scored.map((t) => t.objective);
    this.chart('parallel', 'chart tall', {
      title: titled('Parallel coordinates'),
      parallelAxis: [...names.map((name, i) => ({ dim: i, ...parameterAxis(parameters[name], name) })),
        { dim: names.length, name: metric, type: 'value', scale: true }],
      parallel: { left: 60, right: 80, top: 60, bottom: 30 },
      visualMap: { show: false, dimension: names.length, min: values.length ? Math.min(...values) : 0,
        max: values.length && Math.max(...values) > Math.min(...values) ? Math.max(...values) : (values[0] ?? 0) + 1,
        inRange: { color: maximize ? ['#d9e3ee', '#2f5d8a'] : ['#2f5d8a', '#d9e3ee'] } },
      tooltip: { trigger: 'item' },
      series: [{ type: 'parallel', lineStyle: { width: 1.2, opacity: 0.6 },
        data: scored.map((t) => ({ name: t.name, value: [...names.map((n) => trialValue(t, n, parameters[n])), t.objective] })) }],
    });

    // One chart per parameter.
    for (const name of names) {
      this.chart(`param-${name}`, 'chart small', {
        title: titled(`${name} vs objective`), legend: { show: false },
        tooltip: { trigger: 'item', formatter: (p) => `${p.data.name}: ${name}=${p.value[0]}, ${formatNumber(p.value[1])}` },
        xAxis: { ...parameterAxis(parameters[name], name), nameLocation: 'middle', nameGap: 28 },
        yAxis: { type: 'value', scale: true },
        series: byStatus(trials, (t) => trialValue(t, name, parameters[name])),
      });
    }
    this.container.dataset.trials = String(trials.length);
  }
}

function trialsTable(study) {
  const parameters = Object.keys(study.parameters || {});
  const bestName = study.best?.name;
  const table = new SortableTable([
    { key: 'index', label: '#', num: true, format: (v) => (typeof v === 'number' ? v + 1 : '') },
    { key: 'name', label: 'Trial', html: (t) => `<a href="${path('jobs', t.name)}">${escapeHtml(t.name)}</a>` },
    { key: 'status', label: 'Status', html: (t) => statusBadgeHtml(t.early_stopped ? 'Stopped' : t.status) + (t.early_stopped ? ' early' : '') },
    { key: 'objective', label: study.objective?.metric || 'objective', num: true, format: (v) => formatNumber(v) },
    ...parameters.map((p) => ({ key: `p:${p}`, label: p, num: true, value: (t) => t.hyperparameters?.[p], format: (v) => formatNumber(v) })),
    { key: 'epochs_run', label: 'Epochs', num: true },
    { key: 'duration_seconds', label: 'Duration', num: true, format: formatDuration },
    { key: 'reason', label: 'Reason', html: (t) => (t.reason ? `<span class="reason">${escapeHtml(t.reason)}</span>` : '') },
  ], { sortKey: 'objective', descending: !(study.objective?.goal === 'minimize'), id: 'trials',
    rowClass: (t) => (t.name === bestName ? 'best' : '') });
  return table;
}

// first: the answer of /api/studies/NAME the router already asked for (null: ask here).
export async function studyPage(app, name, first = null) {
  setTitle(`Study ${name}`);
  let study;
  try {
    study = await (first ?? getJson(path('api', 'studies', name)));
  } catch (error) {
    return showError(app, error, `Study ${name}`);
  }
  let echarts;
  try {
    echarts = await loadECharts();
  } catch (error) {
    return showError(app, error, `Study ${name}`);
  }
  const charts = h('div', { class: 'columns', id: 'study-charts' });
  let table = trialsTable(study);
  const trialsSection = h('section', { id: 'trials-section' }, h('h2', {}, 'Trials'), table.element);
  app.replaceChildren(studyHeader(study), h('h2', {}, 'Charts'), charts, trialsSection);
  const view = new StudyCharts(echarts, charts);
  view.draw(study);
  table.setRows(study.trials || []);
  markRendered();
  if (study.status !== 'InProgress') return;
  poll(REFRESH_MS, async () => {
    study = await getJson(path('api', 'studies', name));
    document.getElementById('summary').replaceWith(studyHeader(study));
    view.draw(study);
    const { sortKey, descending, shown } = table;
    table = trialsTable(study);
    Object.assign(table, { sortKey, descending, shown, screenful: Infinity });
    table.drawHead();
    trialsSection.replaceChildren(h('h2', {}, 'Trials'), table.element);
    table.setRows(study.trials || []);
    return study.status === 'InProgress';
  });
}
