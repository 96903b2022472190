/*! Pulse tracker. <script defer src="https://HOST/static/pulse.js" data-site="SITE"></script>
 * Records mouse moves (at the server's sampling interval), clicks (and dead clicks), scroll depth,
 * visibility, resizes, single-page navigations and leaving; never keystrokes or
 * form values. Batches are acked by the server; unacked batches are kept
 * (bounded) and re-sent after a reconnect, and the server drops duplicates. */
(function (w, d) {
  'use strict';
  var script = d.currentScript;
  if (!script || w.pulse) return;
  var site = script.getAttribute('data-site') || 'demo';
  // A heatmap link from the dashboard (#pulse-heatmap=…): draw the page's
  // heatmaps (overlay.js, loaded only then) instead of tracking the admin.
  if (/[#&]pulse-heatmap=/.test(location.hash)) {
    var o = d.createElement('script');
    o.src = new URL('/static/overlay.js', script.src).href;
    d.head.appendChild(o);
    return;
  }
  if (script.hasAttribute('data-respect-dnt') &&
      (navigator.doNotTrack === '1' || w.doNotTrack === '1' || navigator.globalPrivacyControl === true)) return;

  var MAX_UNACKED = 50; // batches kept for re-sending; older ones are dropped
  var src = new URL(script.src, location.href);
  var base = (src.protocol === 'https:' ? 'wss://' : 'ws://') + src.host + '/v1/track?v=1&site=' + encodeURIComponent(site);
  // The visitor id is shared by the site's tabs (localStorage), so a
  // visitor with several tabs counts once; one unused for a day is
  // replaced, so it does not follow a visitor for longer.
  var vidKey = 'pulse.vid', vid = null, store = null;
  try {
    store = w.localStorage;
    var kept = JSON.parse(store.getItem(vidKey));
    if (kept && Date.now() - kept.t < 864e5) vid = kept.id;
  } catch (e) { /* storage disabled, or an older format */ }
  if (!vid || !/^[A-Za-z0-9_-]{22}$/.test(vid)) {
    var r = new Uint8Array(16);
    crypto.getRandomValues(r);
    vid = btoa(String.fromCharCode.apply(null, r)).replace(/\+/g, '-').replace(/\//g, '_').slice(0, 22);
  }
  function keepVid() {
    try { store.setItem(vidKey, JSON.stringify({ id: vid, t: Date.now() })); } catch (e) { /* storage disabled */ }
  }
  keepVid();

  var rates = { sampleMs: 50, flushMs: 1000, maxBatch: 100 };
  var ws = null, sid = null, ready = false, seq = 0, attempt = 0, flushTimer = 0, lastMove = 0;
  var buf = [];      // events not yet in a batch
  var unacked = [];  // {seq, events} sent or waiting, oldest first
  var st = { state: 'connecting', acked: 0, dropped: 0, pending: 0, session: null, rates: rates };

  function status(state) {
    if (state) st.state = state;
    st.pending = buf.length + unacked.reduce(function (n, b) { return n + b.events.length; }, 0);
    try { d.dispatchEvent(new CustomEvent('pulse:status', { detail: st })); } catch (e) { /* old browser */ }
  }

  function record(k, x, y, extra, off) {
    var e = { k: k, at: performance.now(), x: Math.round(x) || 0, y: Math.round(y) || 0,
      vw: w.innerWidth, vh: w.innerHeight, p: location.pathname };
    if (extra) e.sel = extra;
    if (off) { e.ox = off[0]; e.oy = off[1]; }
    if (k === 'scroll') e.ph = d.documentElement.scrollHeight;
    buf.push(e);
    if (buf.length >= rates.maxBatch) flush();
  }

  function send(b) {
    var now = performance.now();
    ws.send(JSON.stringify({ type: 'batch', seq: b.seq, events: b.events.map(function (e) {
      return { k: e.k, a: Math.max(0, Math.round(now - e.at)), x: e.x, y: e.y, vw: e.vw, vh: e.vh, p: e.p, sel: e.sel, ph: e.ph, ox: e.ox, oy: e.oy };
    }) }));
  }

  function flush() {
    if (buf.length) {
      var b = { seq: ++seq, events: buf.splice(0, rates.maxBatch) };
      unacked.push(b);
      while (unacked.length > MAX_UNACKED) st.dropped += unacked.shift().events.length;
      if (ready) send(b);
      keepVid(); // in use: the day starts again
    }
    status();
  }

  function schedule() {
    clearInterval(flushTimer);
    flushTimer = setInterval(flush, rates.flushMs);
  }

  function connect() {
    ready = false;
    keepVid();
    ws = new WebSocket(base + '&vid=' + vid + (sid ? '&sid=' + sid : ''));
    ws.onmessage = function (m) {
      var msg;
      try { msg = JSON.parse(m.data); } catch (e) { return; }
      if (msg.type === 'hello' || msg.type === 'rate') {
        ['sampleMs', 'flushMs', 'maxBatch'].forEach(function (f) { if (msg[f] > 0) rates[f] = msg[f]; });
        schedule();
      }
      if (msg.type === 'hello') {
        sid = st.session = msg.session;
        ready = true;
        attempt = 0;
        unacked.forEach(send);
        status('open');
      } else if (msg.type === 'ack') {
        while (unacked.length && unacked[0].seq <= msg.seq) st.acked += unacked.shift().events.length;
        status();
      }
    };
    ws.onclose = function (ev) {
      ready = false;
      // 1007: the server refused a batch as invalid; re-sending it would
      // only fail again, so drop it.
      if (ev.code === 1007 && unacked.length) st.dropped += unacked.shift().events.length;
      // Jittered exponential backoff, capped at 30 s, so a restarted node
      // is not hit by every tracker at once.
      var delay = Math.min(30000, 500 * Math.pow(2, attempt++)) * (0.5 + Math.random());
      setTimeout(connect, delay);
      status('reconnecting');
    };
  }

  d.addEventListener('mousemove', function (e) {
    var t = performance.now();
    if (t - lastMove < rates.sampleMs) return;
    lastMove = t;
    record('move', e.pageX, e.pageY);
  }, { passive: true });
  // Dead clicks: a click after which the page neither navigates, scrolls,
  // changes (outside [data-pulse-ignore]) nor opens anything within
  // DEAD_MS is reported again as 'deadclick'. Clicks on form fields,
  // labels and editable text are not judged: focusing them is their effect.
  var DEAD_MS = 2500, watched = [];
  function reacted() { watched.forEach(function (c) { clearTimeout(c); }); watched = []; }
  d.addEventListener('click', function (e) {
    var sel = selector(e.target), at = performance.now(), x = e.pageX, y = e.pageY;
    // Where on the target, in thousandths of its box: the overlay draws
    // the click there wherever the layout puts the element.
    var r = e.target.getBoundingClientRect ? e.target.getBoundingClientRect() : null;
    var off = r && r.width && r.height ? [Math.round((e.clientX - r.left) / r.width * 1000), Math.round((e.clientY - r.top) / r.height * 1000)] : null;
    record('click', x, y, sel, off);
    if (e.target.closest && e.target.closest('input,select,textarea,label,[contenteditable]')) return;
    var t = setTimeout(function () {
      watched.splice(watched.indexOf(t), 1);
      record('deadclick', x, y, sel, off);
      buf[buf.length - 1].at = at;
    }, DEAD_MS);
    watched.push(t);
  }, true);
  if (w.MutationObserver) new MutationObserver(function (list) {
    for (var i = 0; i < list.length; i++) {
      var n = list[i].target;
      if (n.nodeType !== 1) n = n.parentElement;
      if (!n || !n.closest('[data-pulse-ignore]')) return reacted();
    }
  }).observe(d, { childList: true, subtree: true, attributes: true, characterData: true });
  ['pagehide', 'hashchange', 'popstate', 'blur'].forEach(function (ev) { w.addEventListener(ev, reacted); });
  var scrollTimer = 0;
  w.addEventListener('scroll', function () {
    reacted();
    clearTimeout(scrollTimer);
    scrollTimer = setTimeout(function () { record('scroll', w.scrollX, w.scrollY + w.innerHeight); }, 200);
  }, { passive: true });
  var resizeTimer = 0;
  w.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { record('resize', 0, 0); }, 300);
  });
  d.addEventListener('visibilitychange', function () {
    record('visibility', d.visibilityState === 'visible' ? 1 : 0, 0);
    if (d.visibilityState === 'hidden') { reacted(); flush(); } // a new tab in front
  });
  w.addEventListener('pagehide', function () { record('leave', 0, 0); flush(); });
  ['pushState', 'replaceState'].forEach(function (f) {
    var orig = history[f];
    history[f] = function () {
      reacted();
      var r = orig.apply(this, arguments);
      record('navigate', 0, 0);
      return r;
    };
  });
  w.addEventListener('popstate', function () { record('navigate', 0, 0); });

  // selector names a click target briefly: tag, id, first class, up to 3 levels.
  function selector(el) {
    var parts = [];
    for (var i = 0; el && el.nodeType === 1 && i < 3; i++, el = el.parentElement) {
      var s = el.tagName.toLowerCase();
      if (el.id) { parts.unshift(s + '#' + el.id); break; }
      if (typeof el.className === 'string' && el.className.trim()) s += '.' + el.className.trim().split(/\s+/)[0];
      parts.unshift(s);
    }
    return parts.join('>').slice(0, 128);
  }

  w.pulse = { status: st, flush: flush };
  schedule();
  connect();
  status();
})(window, document);
