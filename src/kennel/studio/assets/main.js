// Studio's router: one HTML shell for every page; the path says which page to draw. Page
// modules load on demand, and a page with charts starts fetching the chart library at once,
// while its data is on the way.
import { getJson } from './app.js';
import { loadECharts } from './charts.js';

const routes = [
  // [path pattern, nav section, has charts, load the page(match) -> draw(app)]
  [/^\/(?:jobs)?\/?$/, 'jobs', false, () => import('./jobs.js').then((m) => m.jobsPage)],
  [/^\/jobs\/([^/]+)$/, 'jobs', true, (p) => import('./job.js').then((m) => (app) => m.jobPage(app, decodeURIComponent(p[1])))],
  [/^\/studies\/?$/, 'studies', false, () => import('./studies.js').then((m) => m.studiesPage)],
  [/^\/studies\/([^/]+)$/, 'studies', true, (p) => import('./studies.js').then((m) => (app) => m.studyPage(app, decodeURIComponent(p[1])))],
  [/^\/compare\/?$/, 'compare', true, () => import('./compare.js').then((m) => m.comparePage)],
  [/^\/endpoints\/?$/, 'endpoints', false, () => import('./endpoints.js').then((m) => m.endpointsPage)],
];

const app = document.getElementById('app');
for (const [pattern, section, charts, load] of routes) {
  const match = location.pathname.match(pattern);
  if (!match) continue;
  document.querySelector(`nav a[data-nav="${section}"]`)?.classList.add('active');
  if (charts) loadECharts().catch(() => {});  // the page awaits it again and reports a failure
  load(match).then((page) => page(app));
  break;
}
getJson('/api/info').then((info) => {
  document.getElementById('source').textContent = `${info.source} · kennel ${info.kennel_version}`;
}).catch(() => {});
