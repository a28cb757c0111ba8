// Endpoints: the `kennel serve` processes of this home that are alive, probed
// for /ping, /models and a summary of /metrics; refreshed every few seconds.
import { escapeHtml, formatNumber, formatTime, getJson, h, markRendered, poll, setTitle, showError, SortableTable } from './app.js';

const REFRESH_MS = 5000;

// first: the answer of /api/endpoints the router already asked for (null: ask here).
export async function endpointsPage(app, first = null) {
  setTitle('Endpoints');
  const table = new SortableTable([
    { key: 'model', label: 'Model' },
    { key: 'url', label: 'Address', html: (r) => `<a href="${escapeHtml(r.url)}/models" target="_blank" rel="noreferrer">${escapeHtml(r.url)}</a>` },
    { key: 'answering', label: 'Health', value: (r) => (r.answering ? (r.ping === 200 ? 'ready' : `ping ${r.ping}`) : r.error || 'not answering') },
    { key: 'arch', label: 'Arch' },
    { key: 'num_classes', label: 'Classes', num: true },
    { key: 'requests', label: 'Requests', num: true, value: (r) => r.metrics?.requests, format: (v) => formatNumber(v) },
    { key: 'errors', label: 'Errors', num: true, value: (r) => r.metrics?.errors, format: (v) => formatNumber(v) },
    { key: 'images', label: 'Images', num: true, value: (r) => r.metrics?.images, format: (v) => formatNumber(v) },
    { key: 'latency', label: 'Mean latency (ms)', num: true, value: (r) => r.metrics?.mean_latency_ms, format: (v) => formatNumber(v, 1) },
    { key: 'batch', label: 'Mean batch', num: true, value: (r) => r.metrics?.mean_batch_size, format: (v) => formatNumber(v, 2) },
    { key: 'queue', label: 'Queue', num: true, value: (r) => r.metrics?.queue_depth, format: (v) => formatNumber(v) },
    { key: 'pid', label: 'Process', value: (r) => `pid ${r.pid} on ${r.host}` },
    { key: 'started_at', label: 'Started', format: (v) => formatTime(v, true) },
  ], { sortKey: 'started_at', id: 'endpoints' });
  const empty = h('p', { class: 'muted', id: 'empty' }, 'No kennel serve process is running with this home.');
  app.replaceChildren(h('h1', {}, 'Endpoints'), table.element, empty);
  let pending = first;
  const load = async () => {
    const answer = pending ?? getJson('/api/endpoints');
    pending = null;
    const rows = (await answer).endpoints;
    table.setRows(rows.map((r) => ({ ...r, name: r.url })));
    empty.hidden = rows.length > 0;
  };
  try {
    await load();
  } catch (error) {
    return showError(app, error, 'Endpoints');
  }
  markRendered();
  poll(REFRESH_MS, load);
}
