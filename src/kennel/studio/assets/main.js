// Studio's router: one HTML shell for every page; the path says which page to draw.
import { getJson } from './app.js';
import { comparePage } from './compare.js';
import { endpointsPage } from './endpoints.js';
import { jobPage } from './job.js';
import { jobsPage } from './jobs.js';
import { studiesPage, studyPage } from './studies.js';

const routes = [
  [/^\/(?:jobs)?\/?$/, 'jobs', () => jobsPage],
  [/^\/jobs\/([^/]+)$/, 'jobs', (m) => (app) => jobPage(app, decodeURIComponent(m[1]))],
  [/^\/studies\/?$/, 'studies', () => studiesPage],
  [/^\/studies\/([^/]+)$/, 'studies', (m) => (app) => studyPage(app, decodeURIComponent(m[1]))],
  [/^\/compare\/?$/, 'compare', () => comparePage],
  [/^\/endpoints\/?$/, 'endpoints', () => endpointsPage],
];

const app = document.getElementById('app');
for (const [pattern, section, page] of routes) {
  const match = location.pathname.match(pattern);
  if (!match) continue;
  document.querySelector(`nav a[data-nav="${section}"]`)?.classList.add('active');
  page(match)(app);
  break;
}
getJson('/api/info').then((info) => {
  document.getElementById('source').textContent = `${info.source} · kennel ${info.kennel_version}`;
}).catch(() => {});
