/* Pulse visitor page: draws one visitor's cursor path from the points its
 * stream sends (dashboard.js forwards them as pulse:trail events), live or
 * replayed. Coordinates are page pixels of the visitor's window; the
 * canvas is drawn to that window's width. */
(function () {
  'use strict';
  var live = document.querySelector('[data-visitor]');
  if (!live) return;
  var canvas = live.querySelector('[data-trail]');
  var pagePick = live.querySelector('[data-trail-page]');
  var playBtn = live.querySelector('[data-trail-play]');
  var liveBtn = live.querySelector('[data-trail-live]');
  var scrub = live.querySelector('[data-trail-scrub]');
  var timeEl = live.querySelector('[data-trail-time]');
  var points = [];       // every point received, oldest first
  var next = 0;          // number of the point after the last received
  var until = Infinity;  // draw points up to this time; Infinity: live
  var playing = null;    // replay: {t0: wall ms at start, from: trail ms}
  var speed = 4;         // replay runs this many times faster than life
  var maxPoints = 20000; // as the server's trail

  live.addEventListener('pulse:open', function () { points = []; next = 0; redraw(); });
  live.addEventListener('pulse:trail', function (e) {
    var d = e.detail;
    // Points a stream sends once each, from 0; a jump ahead means the
    // server's trail dropped old ones before they were sent.
    var fresh = d.from < next ? d.points.slice(next - d.from) : d.points;
    points = points.concat(fresh);
    next = d.from + d.points.length;
    if (points.length > maxPoints) points = points.slice(points.length - maxPoints);
    syncPages();
    redraw();
  });

  function syncPages() {
    var have = {};
    Array.prototype.forEach.call(pagePick.options, function (o) { have[o.value] = true; });
    points.forEach(function (p) {
      var path = p.p || '/';
      if (!have[path]) { have[path] = true; pagePick.add(new Option(path, path)); }
    });
  }
  pagePick.addEventListener('change', redraw);

  function shown() {
    var upTo = points;
    if (until !== Infinity) upTo = points.filter(function (p) { return p.t <= until; });
    var path = pagePick.value;
    if (!path && upTo.length) path = upTo[upTo.length - 1].p || '/';
    return { path: path, pts: upTo.filter(function (p) { return (p.p || '/') === path; }) };
  }

  function redraw() {
    var s = shown(), pts = s.pts;
    var vw = 1280, vh = 800, bottom = 0;
    for (var i = pts.length - 1; i >= 0; i--) if (pts[i].vw) { vw = pts[i].vw; vh = pts[i].vh || vh; break; }
    pts.forEach(function (p) { if (p.k === 'move' || p.k === 'click' || p.k === 'deadclick') bottom = Math.max(bottom, p.y); });
    var width = canvas.clientWidth || 800;
    var scale = width / vw;
    var height = Math.min(Math.max(vh, bottom + 40) * scale, 6000);
    var ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio; canvas.height = height * ratio;
    canvas.style.height = height + 'px';
    var g = canvas.getContext('2d');
    g.setTransform(ratio * scale, 0, 0, ratio * scale, 0, 0);
    var css = getComputedStyle(document.documentElement);
    var accent = css.getPropertyValue('--accent').trim() || '#2f6fed';
    var muted = css.getPropertyValue('--muted').trim() || '#5d6678';
    // The bottom of the visitor's window with the page scrolled to the top.
    g.strokeStyle = muted; g.lineWidth = 1 / scale; g.setLineDash([6 / scale, 6 / scale]);
    g.beginPath(); g.moveTo(0, vh); g.lineTo(vw, vh); g.stroke(); g.setLineDash([]);
    var last = pts.length ? pts[pts.length - 1].t : 0, first = pts.length ? pts[0].t : 0;
    var prev = null, moves = 0;
    pts.forEach(function (p) {
      if (p.k !== 'move' && p.k !== 'click') return;
      moves++;
      if (prev) {
        // Older segments fade; the last minute stays strong.
        var age = last - p.t;
        g.globalAlpha = Math.max(0.15, 1 - age / 300000);
        g.strokeStyle = accent; g.lineWidth = 2 / scale;
        g.beginPath(); g.moveTo(prev.x, prev.y); g.lineTo(p.x, p.y); g.stroke();
      }
      prev = p;
    });
    g.globalAlpha = 1;
    pts.forEach(function (p) {
      if (p.k === 'click') {
        g.strokeStyle = '#ef4444'; g.lineWidth = 3 / scale;
        g.beginPath(); g.arc(p.x, p.y, 10 / scale, 0, 2 * Math.PI); g.stroke();
      } else if (p.k === 'deadclick') {
        var r = 8 / scale;
        g.strokeStyle = muted; g.lineWidth = 3 / scale;
        g.beginPath(); g.moveTo(p.x - r, p.y - r); g.lineTo(p.x + r, p.y + r); g.moveTo(p.x + r, p.y - r); g.lineTo(p.x - r, p.y + r); g.stroke();
      }
    });
    if (prev) {
      g.fillStyle = accent;
      g.beginPath(); g.arc(prev.x, prev.y, 6 / scale, 0, 2 * Math.PI); g.fill();
    }
    canvas.dataset.points = String(moves);
    canvas.dataset.path = s.path || '';
    var at = until === Infinity ? last : until;
    timeEl.textContent = at ? new Date(at).toLocaleTimeString() + (until === Infinity ? ' · live' : ' · replay') : '';
    if (until === Infinity) scrub.value = 1000;
    liveBtn.disabled = until === Infinity;
    canvas.setAttribute('aria-label', moves + ' cursor points on ' + (s.path || 'no page') + (first ? ' since ' + new Date(first).toLocaleTimeString() : ''));
  }

  function span() {
    if (!points.length) return null;
    return { from: points[0].t, to: points[points.length - 1].t };
  }
  scrub.addEventListener('input', function () {
    var sp = span();
    if (!sp) return;
    stop();
    until = +scrub.value >= 1000 ? Infinity : sp.from + (sp.to - sp.from) * scrub.value / 1000;
    redraw();
  });
  function stop() { if (playing) { cancelAnimationFrame(playing.frame); playing = null; playBtn.textContent = '▶ Replay'; } }
  playBtn.addEventListener('click', function () {
    if (playing) { stop(); return; }
    var sp = span();
    if (!sp) return;
    var from = until === Infinity || until >= sp.to ? sp.from : until;
    playing = { t0: performance.now(), from: from };
    playBtn.textContent = '❚❚ Pause';
    (function step() {
      var sp = span();
      var t = playing.from + (performance.now() - playing.t0) * speed;
      if (t >= sp.to) { stop(); until = Infinity; redraw(); return; }
      until = t;
      scrub.value = Math.round((t - sp.from) / Math.max(1, sp.to - sp.from) * 1000);
      redraw();
      playing.frame = requestAnimationFrame(step);
    })();
  });
  liveBtn.addEventListener('click', function () { stop(); until = Infinity; redraw(); });
  window.addEventListener('resize', redraw);
  redraw();
})();
