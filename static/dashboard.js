/* Pulse dashboard: draws the charts from the option objects the server
 * rendered into the page, then follows the page's SSE stream, merging chart
 * options in place (setOption) and swapping server-rendered fragments. */
(function () {
  'use strict';
  var dark = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches;
  var charts = {};

  document.querySelectorAll('[data-chart]').forEach(function (el) {
    var opts = JSON.parse(document.getElementById(el.dataset.chart).textContent);
    var chart = echarts.init(el, dark ? 'dark' : null);
    if (dark) opts.backgroundColor = 'transparent';
    chart.setOption(opts);
    charts[el.id] = chart;
  });
  window.addEventListener('resize', function () {
    Object.keys(charts).forEach(function (id) { charts[id].resize(); });
  });

  // Times are rendered in UTC by the server and shown in the admin's zone.
  function localTimes(root) {
    root.querySelectorAll('time[datetime]').forEach(function (t) {
      var d = new Date(t.getAttribute('datetime'));
      if (!isNaN(d)) t.textContent = d.toLocaleTimeString();
    });
  }
  localTimes(document);

  var live = document.querySelector('[data-sse]');
  if (!live) return;
  var statusEl = live.querySelector('[data-testid=live-status]');
  function status(text, ok) {
    statusEl.textContent = text;
    statusEl.className = 'live-status' + (ok ? ' ok' : '');
  }
  var es = new EventSource(live.dataset.sse);
  es.onopen = function () { status('live', true); };
  es.onerror = function () { status('reconnecting…', false); };
  es.addEventListener('overview', function (e) {
    var u = JSON.parse(e.data);
    live.dataset.version = u.overview.version;
    Object.keys(u.fragments || {}).forEach(function (name) {
      var el = live.querySelector('[data-fragment="' + name + '"]');
      if (el) { el.innerHTML = u.fragments[name]; localTimes(el); }
    });
    var chart = charts['events-per-second'];
    if (chart && u.chart) {
      if (dark) u.chart.backgroundColor = 'transparent';
      chart.setOption(u.chart);
    }
    status('live · updated ' + new Date(u.overview.updated).toLocaleTimeString(), true);
  });
})();
