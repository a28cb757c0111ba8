// Shared pieces of Studio's pages: the API client (with the page's CSRF token
// on POSTs), a small DOM builder that only ever sets text (never HTML from
// data), formatting, sortable tables, polling, and the "rendered" mark the
// browser tests and the benchmark read.

const csrfToken = document.querySelector('meta[name="kennel-csrf"]').content;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function parse(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.detail || `HTTP ${response.status}`);
  return body;
}

// The server marks every answer no-store, so none is cached; the request keeps the default
// cache mode so that the browser can hand it the shell's <link rel=preload> of the same URL.
export async function getJson(path) {
  const body = await parse(await fetch(path, { headers: { Accept: 'application/json' } }));
  if (path !== '/api/info') markData();
  return body;
}

export async function postJson(path) {
  return parse(await fetch(path, { method: 'POST', headers: { 'X-Kennel-CSRF': csrfToken } }));
}

// h('a', {href: '/x', class: 'y'}, 'text', child...): attributes and text only.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// For building large tables as one string: every data value goes through this.
export function escapeHtml(value) {
  return String(value ?? '').replace(/[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

export function path(...parts) {
  return '/' + parts.map(encodeURIComponent).join('/');
}

export function formatDuration(seconds) {
  if (!(seconds > 0)) return '-';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

// "2026-12-05 21:19:08"; `short`: "12-05 21:19" within this year (tables).
export function formatTime(unixSeconds, short = false) {
  if (!(unixSeconds > 0)) return '-';
  const d = new Date(unixSeconds * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  const day = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (short && d.getFullYear() === new Date().getFullYear()) return `${day} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return `${d.getFullYear()}-${day} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatNumber(value, digits = 4) {
  if (typeof value !== 'number' || !isFinite(value)) return value === null || value === undefined ? '-' : String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e9) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return value.toFixed(digits).replace(/\.?0+$/, '');
}

// An axis tick: enough significant digits that neighbouring ticks differ (0.0025, not 0.003).
export function formatTick(value) {
  if (typeof value !== 'number' || !isFinite(value)) return '';
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-4 || abs >= 1e6)) return value.toExponential(1);
  return String(Number(value.toPrecision(4)));
}

export function formatBytes(bytes) {
  if (typeof bytes !== 'number') return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function statusBadge(status) {
  return h('span', { class: `status ${status}` }, status);
}

export function statusBadgeHtml(status) {
  return `<span class="status ${escapeHtml(status)}">${escapeHtml(status)}</span>`;
}

export function setTitle(text) {
  document.title = `${text} · Kennel Studio`;
}

// The page's data has arrived (the benchmark reports fetching and drawing apart).
export function markData() {
  if (!performance.getEntriesByName('kennel-data').length) performance.mark('kennel-data');
}

// The page's data is drawn: marked after the next frame, so that style, layout and paint of
// what the page just put in the DOM count too. Navigation start to this mark is what the
// benchmark reports.
let renderedMarkPending = false;
export function markRendered() {
  if (document.body.dataset.rendered || renderedMarkPending) return;
  renderedMarkPending = true;
  requestAnimationFrame(() => setTimeout(() => {
    performance.mark('kennel-rendered');
    document.body.dataset.rendered = String(Math.round(performance.now()));
  }, 0));
}

export function showError(app, error, what) {
  const notFound = error instanceof ApiError && error.status === 404;
  app.replaceChildren(h('div', { class: 'error-page', id: 'error' },
    h('h1', {}, notFound ? `${what}: not found` : `${what}: could not be loaded`),
    h('p', {}, error.message),
    h('p', {}, h('a', { href: '/jobs' }, 'Back to the jobs'))));
  markRendered();
}

// Calls `tick` every `ms` until it returns false or the page is left; one call at a time.
export function poll(ms, tick) {
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    let again = true;
    try {
      again = (await tick()) !== false;
    } catch (error) {
      console.warn('studio: refresh failed:', error.message);
    }
    if (again && !stopped) setTimeout(run, ms);
  };
  setTimeout(run, ms);
  return () => { stopped = true; };
}

// A sortable table drawn from rows with `columns`: {key, label, num, value(row), html(row)}.
// The body is rebuilt as one string; cells escape their text. Sorting and filtering see every
// row, but the page shows `pageSize` at a time (a console's table of a thousand jobs is paged:
// laying out every row costs a second of a small machine's CPU), with "more" and "all" buttons.
// The first draw puts a screenful of rows in the DOM first and the rest of the page of rows in
// the frame after (their layout takes ~1 ms a row in a fresh browser): the rows a person sees
// are drawn, and the page marks itself rendered, without waiting for the rows below the fold.
// Later draws (sorting, filtering, refreshes) replace every row at once, so that the table
// never shrinks under a reader who has scrolled down (a table that replaces one already shown
// passes screenful: Infinity for the same reason).
const FIRST_SCREEN_ROWS = 50;

export class SortableTable {
  constructor(columns, { sortKey, descending = true, rowClass, id, pageSize = 200, screenful = FIRST_SCREEN_ROWS } = {}) {
    this.columns = columns;
    this.sortKey = sortKey || columns[0].key;
    this.descending = descending;
    this.rowClass = rowClass;
    this.pageSize = pageSize;
    this.screenful = screenful;
    this.shown = pageSize;
    this.rows = [];
    this.pending = null;  // the rows of the first draw still to be added (HTML), see draw()
    this.table = h('table', { class: 'grid', id });
    this.head = h('thead');
    this.body = h('tbody');
    this.table.append(this.head, this.body);
    this.more = h('button', { class: 'more', onclick: () => { this.shown += this.pageSize; this.draw(); } });
    this.all = h('button', { class: 'all', onclick: () => { this.shown = Infinity; this.draw(); } }, 'Show all');
    this.footer = h('p', { class: 'pager muted', hidden: true }, h('span'), ' ', this.more, ' ', this.all);
    this.element = h('div', { class: 'table' }, this.table, this.footer);
    this.drawHead();
  }

  drawHead() {
    const row = h('tr');
    for (const column of this.columns) {
      const sorted = column.key === this.sortKey ? (this.descending ? ' sorted-desc' : ' sorted-asc') : '';
      const cell = h('th', { class: `${column.num ? 'num ' : ''}${column.sortable === false ? '' : 'sortable'}${sorted}`,
        'data-key': column.key }, column.label);
      if (column.sortable !== false) {
        cell.addEventListener('click', () => {
          this.descending = this.sortKey === column.key ? !this.descending : !!column.num;
          this.sortKey = column.key;
          this.drawHead();
          this.draw();
        });
      }
      row.append(cell);
    }
    this.head.replaceChildren(row);
  }

  setRows(rows) {
    this.rows = rows;
    this.draw();
  }

  draw() {
    const column = this.columns.find((c) => c.key === this.sortKey) || this.columns[0];
    const value = column.value || ((row) => row[column.key]);
    const sign = this.descending ? -1 : 1;
    const sorted = [...this.rows].sort((a, b) => {
      const x = value(a), y = value(b);
      const xMissing = x === null || x === undefined || x === '', yMissing = y === null || y === undefined || y === '';
      if (xMissing || yMissing) return xMissing === yMissing ? 0 : xMissing ? 1 : -1;
      return (x < y ? -1 : x > y ? 1 : 0) * sign;
    });
    const visible = sorted.slice(0, this.shown);
    const rowsHtml = visible.map((row) => this.rowHtml(row));
    const now = this.body.rows.length || this.pending ? rowsHtml.length : this.screenful;
    const pending = this.pending = rowsHtml.length > now ? rowsHtml.slice(now).join('') : null;
    this.body.innerHTML = rowsHtml.slice(0, now).join('');
    if (pending) {
      // After the frame that shows the first rows (and so after the page's rendered mark).
      requestAnimationFrame(() => requestAnimationFrame(() => {
        if (this.pending !== pending) return;  // redrawn meanwhile: that draw has every row
        this.pending = null;
        this.body.insertAdjacentHTML('beforeend', pending);
      }));
    }
    const hidden = sorted.length - visible.length;
    this.footer.hidden = hidden <= 0;
    this.footer.firstChild.textContent = `Showing ${visible.length} of ${sorted.length}.`;
    this.more.textContent = `Show ${Math.min(this.pageSize, hidden)} more`;
  }

  rowHtml(row) {
    const rowClass = this.rowClass ? this.rowClass(row) : '';
    const cells = this.columns.map((c) => {
      const text = c.html ? c.html(row) : escapeHtml(c.format ? c.format((c.value || ((r) => r[c.key]))(row), row)
        : (c.value || ((r) => r[c.key]))(row));
      return `<td${c.num ? ' class="num"' : ''}>${text}</td>`;
    });
    return `<tr${rowClass ? ` class="${rowClass}"` : ''} data-name="${escapeHtml(row.name)}">${cells.join('')}</tr>`;
  }
}
