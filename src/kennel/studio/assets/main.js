// Studio's router: one HTML shell for every page; the path says which page to draw. Page
// modules load on demand. The page's first API request starts at once, while its module is on
// the way (the page awaits that answer instead of asking again), and a page with charts starts
// fetching the chart library at once too.
import { getJson, path } from './app.js';
import { loadECharts } from './charts.js';

const routes = [
  // [path pattern, nav section, has charts, the page's first request (match) -> URL,
  //  load the page(match) -> draw(app, first answer)]
  [/^\/(?:jobs)?\/?$/, 'jobs', false, () => '/api/jobs', () => import('./jobs.js').then((m) => m.jobsPage)],
  [/^\/jobs\/([^/]+)$/, 'jobs', true, (p) => path('api', 'jobs', decodeURIComponent(p[1])),
    (p) => import('./job.js').then((m) => (app, first) => m.jobPage(app, decodeURIComponent(p[1]), first))],
  [/^\/studies\/?$/, 'studies', false, () => '/api/studies', () => import('./studies.js').then((m) => m.studiesPage)],
  [/^\/studies\/([^/]+)$/, 'studies', true, (p) => path('api', 'studies', decodeURIComponent(p[1])),
    (p) => import('./studies.js').then((m) => (app, first) => m.studyPage(app, decodeURIComponent(p[1]), first))],
  [/^\/compare\/?$/, 'compare', true, () => null, () => import('./compare.js').then((m) => m.comparePage)],
  [/^\/endpoints\/?$/, 'endpoints', false, () => '/api/endpoints', () => import('./endpoints.js').then((m) => m.endpointsPage)],
];

// The answer the page awaits; marked handled here, so that a failure is reported once, by the
// page (its error view), and not first as an unhandled rejection while the module loads.
function startRequest(url) {
  if (!url) return null;
  const answer = getJson(url);
  answer.catch(() => {});
  return answer;
}

const app = document.getElementById('app');
for (const [pattern, section, charts, firstRequest, load] of routes) {
  const match = location.pathname.match(pattern);
  if (!match) continue;
  document.querySelector(`nav a[data-nav="${section}"]`)?.classList.add('active');
  const first = startRequest(firstRequest(match));
  if (charts) loadECharts().catch(() => {});  // the page awaits it again and reports a failure
  load(match).then((page) => page(app, first));
  break;
}
getJson('/api/info').then((info) => {
  document.getElementById('source').textContent = `${info.source} · kennel ${info.kennel_version}`;
}).catch(() => {});
