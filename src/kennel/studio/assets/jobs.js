// The Jobs page: every job of the home in one sortable, filterable table,
// refreshed every few seconds; a running job has a Stop button; ticked jobs
// open together in Compare.
import {
  escapeHtml, formatDuration, formatNumber, formatTime, getJson, h, markRendered, path, poll, postJson,
  setTitle, showError, SortableTable, statusBadgeHtml,
} from './app.js';

const REFRESH_MS = 4000;

function metric(row, ...keys) {
  for (const key of keys) {
    const value = row.final_metrics?.[key];
    if (typeof value === 'number') return value;
  }
  return null;
}

function nameCell(row, picked) {
  const href = row.kind === 'tuning' ? path('studies', row.name) : path('jobs', row.name);
  const parent = row.parent ? `<span class="sub">trial of <a href="${path('studies', row.parent)}">${escapeHtml(row.parent)}</a></span>` : '';
  const checked = picked.has(row.name) ? ' checked' : '';
  return `<input type="checkbox" class="pick" value="${escapeHtml(row.name)}" aria-label="compare"${checked}> ` +
    `<a href="${href}">${escapeHtml(row.name)}</a>${parent}`;
}

function statusCell(row) {
  const reason = row.reason ? `<span class="reason">${escapeHtml(row.reason)}</span>` : '';
  const problems = (row.problems || []).map((p) => `<span class="problem">\u26A0 ${escapeHtml(p)}</span>`).join('');
  return statusBadgeHtml(row.status) + reason + problems;
}

function datasetName(dataset) {
  if (!dataset) return '';
  const parts = String(dataset).split('/').filter(Boolean);
  return parts[parts.length - 1] || dataset;
}

// picked: the names ticked for Compare (kept across refreshes and filters).
const columnsFor = (picked) => [
  { key: 'name', label: 'Name', html: (r) => nameCell(r, picked) },
  { key: 'status', label: 'Status', html: statusCell },
  { key: 'kind', label: 'Kind' },
  { key: 'arch', label: 'Arch', value: (r) => r.arch || (r.command ? 'command' : '') },
  { key: 'dataset', label: 'Dataset', html: (r) => `<span title="${escapeHtml(r.dataset || '')}">${escapeHtml(datasetName(r.dataset))}</span>` },
  { key: 'started_at', label: 'Started', value: (r) => r.started_at, format: (v) => formatTime(v, true) },
  { key: 'duration_seconds', label: 'Duration', num: true, format: formatDuration },
  { key: 'valid_accuracy', label: 'Valid acc', num: true, value: (r) => metric(r, 'valid_accuracy'), format: (v) => formatNumber(v) },
  { key: 'test_accuracy', label: 'Test acc', num: true, value: (r) => metric(r, 'test_accuracy'), format: (v) => formatNumber(v) },
  { key: 'valid_loss', label: 'Valid loss', num: true, value: (r) => metric(r, 'valid_loss', 'train_loss'), format: (v) => formatNumber(v) },
  { key: 'precision', label: 'Precision', value: (r) => r.precision || '' },
  { key: 'world_size', label: 'World', num: true },
  { key: 'actions', label: '', sortable: false,
    html: (r) => (r.status === 'InProgress' && r.kind !== 'tuning'
      ? `<button class="danger stop" data-job="${escapeHtml(r.name)}">Stop</button>` : '') },
];

// first: the answer of /api/jobs the router already asked for (null: ask here).
export async function jobsPage(app, first = null) {
  setTitle('Jobs');
  const search = h('input', { type: 'search', id: 'filter', placeholder: 'Filter: name, arch, dataset, reason…' });
  const statusSelect = h('select', { id: 'status-filter' },
    ['All statuses', 'InProgress', 'Completed', 'Failed', 'Stopped'].map((s) => h('option', { value: s.startsWith('All') ? '' : s }, s)));
  const kindSelect = h('select', { id: 'kind-filter' },
    [['', 'All kinds'], ['training', 'Training'], ['trial', 'Trials'], ['tuning', 'Tuning']].map(([v, t]) => h('option', { value: v }, t)));
  const count = h('span', { class: 'muted', id: 'count' });
  const compare = h('button', { id: 'compare', disabled: true }, 'Compare selected');
  const message = h('span', { class: 'muted', id: 'message' });
  const picked = new Set();
  const table = new SortableTable(columnsFor(picked), { sortKey: 'started_at', id: 'jobs' });
  app.replaceChildren(h('h1', {}, 'Training jobs'),
    h('div', { class: 'toolbar' }, search, statusSelect, kindSelect, compare, count, message), table.element);

  let jobs = [];
  const draw = () => {
    const text = search.value.trim().toLowerCase();
    const rows = jobs.filter((row) => (!statusSelect.value || row.status === statusSelect.value) &&
      (!kindSelect.value || row.kind === kindSelect.value) &&
      (!text || [row.name, row.arch, row.dataset, row.reason, row.parent, row.kind].some((v) => String(v || '').toLowerCase().includes(text))));
    table.setRows(rows);
    count.textContent = `${rows.length} of ${jobs.length} jobs`;
  };
  for (const control of [search, statusSelect, kindSelect]) {
    control.addEventListener('input', draw);
    control.addEventListener('change', draw);
  }
  table.body.addEventListener('change', (event) => {
    if (!event.target.classList.contains('pick')) return;
    if (event.target.checked) picked.add(event.target.value); else picked.delete(event.target.value);
    compare.disabled = picked.size === 0;
  });
  compare.addEventListener('click', () => {
    location.href = `/compare?jobs=${[...picked].map(encodeURIComponent).join(',')}`;
  });
  table.body.addEventListener('click', async (event) => {
    const button = event.target.closest('button.stop');
    if (!button) return;
    button.disabled = true;
    try {
      const answer = await postJson(`${path('api', 'jobs', button.dataset.job)}/stop`);
      message.textContent = answer.message;
    } catch (error) {
      message.textContent = `Stop failed: ${error.message}`;
      button.disabled = false;
    }
  });

  let pending = first;
  const load = async () => {
    const answer = pending ?? getJson('/api/jobs');
    pending = null;
    jobs = (await answer).jobs;
    draw();
  };
  try {
    await load();
  } catch (error) {
    return showError(app, error, 'Jobs');
  }
  markRendered();
  poll(REFRESH_MS, load);
}
