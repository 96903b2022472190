/* Pulse heatmap overlay, loaded by pulse.js when the page is opened from
 * the dashboard with #pulse-heatmap=TOKEN&pulse-dashboard=URL. Draws the
 * page's clicks, moves, scroll depth and most clicked elements over the
 * live page, kept live by the dashboard's stream. Nothing is tracked
 * while it is open. */
(function (w, d) {
  'use strict';
  var params = new URLSearchParams(location.hash.slice(1));
  var token = params.get('pulse-heatmap'), dash = params.get('pulse-dashboard');
  if (!token || !/^https?:\/\//.test(dash || '')) return;
  var WIDTHS = ['phone', 'tablet', 'desktop'], COLS = 40;
  var heat = null, status = 'connecting…';
  var show = { clicks: true, moves: false, scroll: true, elements: true };
  var bucket = innerWidth < 768 ? 0 : innerWidth < 1024 ? 1 : 2;

  var canvas = d.createElement('canvas');
  canvas.style.cssText = 'position:absolute;left:0;top:0;pointer-events:none;z-index:2147483646';
  var panel = d.createElement('div');
  panel.setAttribute('data-testid', 'pulse-overlay');
  panel.setAttribute('data-pulse-ignore', '');
  panel.style.cssText = 'position:fixed;top:12px;right:12px;z-index:2147483647;font:13px/1.4 system-ui,sans-serif;' +
    'background:#111827ee;color:#f9fafb;padding:10px 12px;border-radius:10px;box-shadow:0 4px 16px #0006;min-width:220px';
  panel.innerHTML = '<div style="display:flex;justify-content:space-between;gap:8px;font-weight:600">Pulse heatmap' +
    '<button type="button" data-close style="all:unset;cursor:pointer" aria-label="Close the heatmap">✕</button></div>' +
    '<div data-status style="opacity:.8;margin:2px 0 6px"></div>' +
    '<label>Screens <select data-width></select></label>' +
    '<div data-layers style="display:flex;flex-wrap:wrap;gap:4px 10px;margin-top:6px"></div>' +
    '<div data-summary data-testid="overlay-summary" style="margin-top:6px;opacity:.9"></div>';
  var sel = panel.querySelector('[data-width]');
  WIDTHS.forEach(function (name, i) { sel.add(new Option(name, String(i), false, i === bucket)); });
  sel.onchange = function () { bucket = +sel.value; draw(); };
  Object.keys(show).forEach(function (k) {
    var l = d.createElement('label');
    var c = d.createElement('input');
    c.type = 'checkbox'; c.checked = show[k];
    c.onchange = function () { show[k] = c.checked; draw(); };
    l.appendChild(c); l.appendChild(d.createTextNode(' ' + k));
    panel.querySelector('[data-layers]').appendChild(l);
  });
  panel.querySelector('[data-close]').onclick = function () {
    es.close(); canvas.remove(); panel.remove();
    history.replaceState(null, '', location.pathname + location.search);
  };

  function page() {
    if (!heat) return null;
    for (var i = 0; i < heat.pages.length; i++) if (heat.pages[i].path === location.pathname) return heat.pages[i];
    return null;
  }
  function ramp(t) { // light blue to yellow to red, as the dashboard's heatmaps
    var stops = [[232, 240, 254], [251, 191, 36], [239, 68, 68]];
    var x = Math.min(1, Math.max(0, t)) * 2, i = Math.min(1, Math.floor(x)), f = x - i;
    var a = stops[i], b = stops[i + 1];
    return 'rgb(' + [0, 1, 2].map(function (j) { return Math.round(a[j] + (b[j] - a[j]) * f); }).join(',') + ')';
  }
  function cells(g, list, cell, alpha) {
    var top = 1;
    list.forEach(function (c) { top = Math.max(top, c.n); });
    list.forEach(function (c) {
      g.globalAlpha = alpha * (0.35 + 0.65 * c.n / top);
      g.fillStyle = ramp(c.n / top);
      g.fillRect(c.c * cell, c.r * cell, cell, cell);
    });
    g.globalAlpha = 1;
  }
  function draw() {
    var root = d.documentElement, width = root.clientWidth;
    var height = Math.min(Math.max(root.scrollHeight, d.body ? d.body.scrollHeight : 0), 20000);
    var ratio = w.devicePixelRatio || 1;
    canvas.width = width * ratio; canvas.height = height * ratio;
    canvas.style.width = width + 'px'; canvas.style.height = height + 'px';
    var g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    var p = page(), cell = width / COLS, clicks = 0, moves = 0;
    var summary = panel.querySelector('[data-summary]');
    panel.querySelector('[data-status]').textContent = status;
    if (!p) {
      summary.textContent = heat ? 'No activity recorded on ' + location.pathname + ' yet.' : '';
      panel.dataset.clicks = '0';
      return;
    }
    var wh = p.widths[bucket] || {};
    (wh.clicks || []).forEach(function (c) { clicks += c.n; });
    (wh.moves || []).forEach(function (c) { moves += c.n; });
    if (show.moves) cells(g, wh.moves || [], cell, 0.45);
    if (show.clicks) cells(g, wh.clicks || [], cell, 0.75);
    if (show.scroll && p.pageViews > 0) {
      // The share of page views that scrolled at least this far.
      g.font = '12px system-ui,sans-serif';
      for (var i = 0; i < 10; i++) {
        var y = height * (i + 1) / 10, pct = Math.round(p.scrollReached[i] * 100 / p.pageViews);
        g.fillStyle = '#111827cc'; g.fillRect(width - 150, y - 18, 150, 18);
        g.fillStyle = '#f9fafb'; g.fillText((i + 1) * 10 + '% of the page: ' + pct + '% reached', width - 146, y - 5);
        g.strokeStyle = '#11182755'; g.setLineDash([4, 4]);
        g.beginPath(); g.moveTo(0, y); g.lineTo(width - 150, y); g.stroke(); g.setLineDash([]);
      }
    }
    var outlined = 0, spots = 0;
    if (show.elements) {
      g.font = '600 12px system-ui,sans-serif';
      (p.elements || []).forEach(function (e) {
        var el = null;
        try { el = d.querySelector(e.selector); } catch (err) { /* not a selector on this page */ }
        if (!el) return;
        var r = el.getBoundingClientRect(), x = r.left + w.scrollX, y = r.top + w.scrollY;
        outlined++;
        // Where on the element its clicks fell, on its box as laid out
        // now: a 10 × 10 grid of its width and height.
        var top = 1;
        (e.spots || []).forEach(function (c) { top = Math.max(top, c.n); });
        (e.spots || []).forEach(function (c) {
          spots += c.n;
          g.globalAlpha = 0.35 + 0.5 * c.n / top;
          g.fillStyle = ramp(c.n / top);
          g.fillRect(x + c.c * r.width / 10, y + c.r * r.height / 10, r.width / 10, r.height / 10);
        });
        g.globalAlpha = 1;
        g.strokeStyle = e.deadClicks ? '#6b7280' : '#ef4444'; g.lineWidth = 2;
        g.strokeRect(x - 2, y - 2, r.width + 4, r.height + 4);
        var label = e.clicks + ' clicks' + (e.rageClicks ? ' · ' + e.rageClicks + ' rage' : '') + (e.deadClicks ? ' · ' + e.deadClicks + ' dead' : '');
        var tw = g.measureText(label).width + 10;
        g.fillStyle = '#111827e6'; g.fillRect(x - 2, y - 22, tw, 18);
        g.fillStyle = '#f9fafb'; g.fillText(label, x + 3, y - 9);
      });
    }
    panel.dataset.clicks = String(clicks);
    panel.dataset.spots = String(spots);
    panel.dataset.bucket = WIDTHS[bucket];
    summary.textContent = clicks + ' clicks, ' + moves + ' moves from ' + WIDTHS[bucket] + ' screens' +
      (show.elements ? '; ' + outlined + ' of ' + (p.elements || []).length + ' top elements found here' : '');
  }

  var es = new EventSource(dash.replace(/\/$/, '') + '/overlay/heat?token=' + encodeURIComponent(token));
  es.onopen = function () { status = 'live'; draw(); };
  es.onerror = function () {
    status = es.readyState === EventSource.CLOSED ? 'the dashboard refused this link (expired?): open it again from the dashboard' : 'reconnecting…';
    draw();
  };
  es.addEventListener('heat', function (e) {
    heat = JSON.parse(e.data);
    status = 'live · updated ' + new Date(heat.updated || Date.now()).toLocaleTimeString();
    draw();
  });
  function mount() {
    d.body.appendChild(canvas); d.body.appendChild(panel); draw();
  }
  if (d.body) mount(); else d.addEventListener('DOMContentLoaded', mount);
  w.addEventListener('resize', draw);
  w.addEventListener('load', draw);
})(window, document);
