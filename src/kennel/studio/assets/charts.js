// Charts with Apache ECharts (embedded in the binary, loaded once, only by the
// pages that draw charts). Animations are off: live charts redraw every few
// seconds and screenshots must show the data, not a transition.

let loading = null;

export function loadECharts() {
  if (window.echarts) return Promise.resolve(window.echarts);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = '/assets/echarts.min.js';
      script.onload = () => resolve(window.echarts);
      script.onerror = () => reject(new Error('the chart library could not be loaded'));
      document.head.append(script);
    });
  }
  return loading;
}


export const palette = ['#2f5d8a', '#e07b39', '#3d9a5b', '#c0392b', '#8e6bbf', '#8c6d4f', '#d45a9c', '#6b7b8c',
  '#b8a200', '#2aa1b3'];
export const statusColors = { Completed: '#2f5d8a', Stopped: '#e07b39', Failed: '#c0392b', running: '#2aa1b3',
  InProgress: '#2aa1b3', pending: '#9aa5b1', Interrupted: '#9aa5b1' };

// A chart in `element` with the shared look; returns the ECharts instance.
export function makeChart(echarts, element, option) {
  const chart = echarts.init(element, null, { renderer: 'canvas' });
  chart.setOption({
    animation: false,
    color: palette,
    grid: { left: 60, right: 24, top: 40, bottom: 48 },
    tooltip: { trigger: 'axis', confine: true },
    textStyle: { fontFamily: 'system-ui, sans-serif' },
    ...option,
  });
  // A grid of charts reflows as charts are added: each follows its own box (and redraws only
  // when that box really changed: the observer also reports the first size, already drawn).
  new ResizeObserver(([entry]) => {
    const { width, height } = entry.contentRect;
    if (Math.round(width) !== chart.getWidth() || Math.round(height) !== chart.getHeight()) chart.resize();
  }).observe(element);
  return chart;
}

export function titled(text, extra = {}) {
  return { text, left: 8, top: 6, textStyle: { fontSize: 13, fontWeight: 600 }, ...extra };
}
