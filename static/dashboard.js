/* Pulse dashboard: draws the charts from the option objects the server
 * rendered into the page, then follows the page's SSE stream, merging chart
 * options in place (setOption) and swapping server-rendered fragments. */
(function () {
  'use strict';
  // Theme: the admin's choice (kept in localStorage) or the system's.
  var root = document.documentElement;
  var stored = null;
  try { stored = localStorage.getItem('pulse.theme'); } catch (e) { /* storage disabled */ }
  if (stored === 'light' || stored === 'dark') root.dataset.theme = stored;
  function isDark() {
    return root.dataset.theme ? root.dataset.theme === 'dark' : !!(window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches);
  }
  var dark = isDark();
  var charts = {}, lastOpts = {};
  var toggle = document.querySelector('[data-theme-toggle]');
  if (toggle) toggle.addEventListener('click', function () {
    root.dataset.theme = isDark() ? 'light' : 'dark';
    try { localStorage.setItem('pulse.theme', root.dataset.theme); } catch (e) { /* storage disabled */ }
    dark = isDark();
    // echarts themes are chosen at init: draw every chart again.
    Object.keys(charts).forEach(function (id) { charts[id].dispose(); delete charts[id]; draw(id, lastOpts[id]); });
  });

  // count formats n as the server does: thin spaces between thousands.
  function count(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, '\u2009'); }
  function json(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  function draw(id, opts) {
    var el = document.getElementById(id);
    if (!el || !opts) return;
    if (dark) opts.backgroundColor = 'transparent';
    // Category labels in Unix ms (candles) are shown in the admin's zone.
    if (el.hasAttribute('data-time-labels') && opts.xAxis && opts.xAxis[0] && opts.xAxis[0].data) {
      opts.xAxis[0].data = opts.xAxis[0].data.map(function (ms) {
        return new Date(+ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      });
    }
    if (!charts[id]) charts[id] = echarts.init(el, dark ? 'dark' : null);
    // A chart that shows one of several things (a symbol's attention)
    // is replaced whole, so no mark of the one before stays.
    charts[id].setOption(opts, el.hasAttribute('data-replace'));
    lastOpts[id] = opts;
  }

  var siteCharts = json('site-charts') || {};
  Object.keys(siteCharts).forEach(function (id) { draw(id, siteCharts[id]); });

  // Per-page charts show the page picked in the select.
  var pageCharts = json('page-charts') || {};
  var select = document.querySelector('[data-page-select]');
  function drawPage() {
    var path = select && select.value;
    document.querySelectorAll('[data-page-charts]').forEach(function (box) { box.hidden = !path || !pageCharts[path]; });
    if (!path || !pageCharts[path]) return;
    Object.keys(pageCharts[path]).forEach(function (id) { draw(id, pageCharts[path][id]); });
  }
  if (select) select.addEventListener('change', drawPage);
  drawPage();

  // Per-symbol charts (a site's attention beside prices) show the symbol
  // picked in their select; ?symbol= picks one from a link.
  var symbolCharts = json('symbol-charts') || {};
  var symSelect = document.querySelector('[data-symbol-select]');
  var wanted = new URLSearchParams(location.search).get('symbol');
  function syncSymbols() {
    if (!symSelect) return;
    var syms = Object.keys(symbolCharts).sort();
    var have = Array.prototype.map.call(symSelect.options, function (o) { return o.value; });
    if (syms.join('\n') === have.join('\n')) return;
    var keep = symSelect.value || wanted;
    symSelect.textContent = '';
    syms.forEach(function (s) { symSelect.add(new Option(s, s, false, s === keep)); });
  }
  function drawSymbol() {
    if (!symSelect) return;
    var picked = symbolCharts[symSelect.value];
    document.querySelectorAll('[data-symbol-chart]').forEach(function (box) { box.hidden = !picked; });
    document.querySelectorAll('[data-symbol-empty]').forEach(function (p) { p.hidden = !!picked; });
    if (picked) Object.keys(picked).forEach(function (id) { draw(id, picked[id]); });
  }
  if (symSelect) {
    if (wanted) symSelect.value = wanted;
    symSelect.addEventListener('change', drawSymbol);
  }
  syncSymbols();
  drawSymbol();

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

  // Every [data-sse] section follows its own stream: a page's own, and on
  // the quotes page a site's beside it (its attention chart).
  document.querySelectorAll('[data-sse]').forEach(follow);
  function follow(live) {
    var statusEl = live.querySelector('.live-status');
    function status(text, ok) {
      if (!statusEl) return;
      statusEl.textContent = text;
      statusEl.className = 'live-status' + (ok ? ' ok' : '');
    }
    var es = new EventSource(live.dataset.sse);
    es.onopen = function () {
      status('live', true);
      live.dispatchEvent(new CustomEvent('pulse:open'));
    };
    es.onerror = function () { status('reconnecting…', false); };
    function onUpdate(e) {
      var u = JSON.parse(e.data);
      live.dataset.version = u.panel.version;
      Object.keys(u.fragments || {}).forEach(function (name) {
        var el = live.querySelector('[data-fragment="' + name + '"]');
        if (el) { el.innerHTML = u.fragments[name]; localTimes(el); }
      });
      Object.keys(u.charts || {}).forEach(function (id) { draw(id, u.charts[id]); });
      if (u.symbolCharts) {
        symbolCharts = u.symbolCharts;
        syncSymbols();
        drawSymbol();
      }
      if (u.pageCharts) {
        pageCharts = u.pageCharts;
        syncPages(u.panel.pages || []);
        drawPage();
      }
      status('live · updated ' + new Date(u.panel.updated).toLocaleTimeString(), true);
    }
    ['overview', 'quotes', 'system', 'visitor'].forEach(function (name) { es.addEventListener(name, onUpdate); });
    // A site's live panel, between overviews: the counters, and the
    // current second of the events-per-second chart.
    es.addEventListener('live', function (e) {
      var p = JSON.parse(e.data).panel;
      if (+live.dataset.version >= p.version) return;
      live.dataset.version = p.version;
      var counters = { 'events-total': p.events, visitors: p.visitors, arrivals: p.arrivals, departures: p.departures, 'rage-clicks': p.rageClicks };
      Object.keys(counters).forEach(function (id) {
        var el = live.querySelector('[data-testid="' + id + '"]');
        if (el) el.textContent = count(counters[id]);
      });
      var opts = lastOpts['events-per-second'];
      if (opts && opts.series) {
        opts.series.forEach(function (s) {
          var n = (p.secondByKind || {})[s.name] || 0, data = s.data || [], last = data[data.length - 1];
          if (last && last[0] === p.second) last[1] = n;
          else if (!last || last[0] < p.second) { data.push([p.second, n]); if (data.length > 60) data.shift(); }
        });
        draw('events-per-second', opts);
      }
      live.dataset.liveAt = Date.now();
      status('live · updated ' + new Date(p.updated).toLocaleTimeString(), true);
    });
    // A visitor page's cursor points: visitor.js draws them.
    es.addEventListener('trail', function (e) {
      live.dispatchEvent(new CustomEvent('pulse:trail', { detail: JSON.parse(e.data) }));
    });
  }
  function syncPages(pages) {
    if (!select) return;
    var paths = pages.map(function (p) { return p.path; });
    var have = Array.prototype.map.call(select.options, function (o) { return o.value; });
    if (paths.join('\n') === have.join('\n')) return;
    var keep = select.value;
    select.textContent = '';
    paths.forEach(function (p) { select.add(new Option(p, p, false, p === keep)); });
  }
})();
