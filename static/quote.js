/*! Pulse quote widget. <script defer src="https://HOST/static/quote.js"></script>
 * <div data-pulse-quote="IBM"></div> shows a live quote; <div data-pulse-quote>
 * (no symbol) shows an input to pick one. The server decides when to poll
 * next (callIn); null means stop. */
(function (w, d) {
  'use strict';
  var script = d.currentScript;
  var base = script ? new URL(script.src, location.href).origin : location.origin;
  var css = '.pq{font:14px/1.4 system-ui,sans-serif;display:inline-flex;flex-direction:column;gap:2px;padding:8px 12px;border:1px solid #8884;border-radius:8px;min-width:180px}' +
    '.pq-top{display:flex;gap:8px;align-items:baseline}.pq-sym{font-weight:700}.pq-price{font-size:20px;font-variant-numeric:tabular-nums;transition:background .6s}' +
    '.pq-up{color:#16a34a}.pq-down{color:#dc2626}.pq-flash-up{background:#16a34a33}.pq-flash-down{background:#dc262633}' +
    '.pq-meta{font-size:12px;opacity:.7}.pq-stale .pq-price{opacity:.5}.pq-err{font-size:12px;color:#b45309}.pq input{font:inherit;width:7em;text-transform:uppercase}';
  var style = d.createElement('style');
  style.textContent = css;
  d.head.appendChild(style);

  function fmt(n, digits) { return n.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits }); }

  function widget(el) {
    var timer = 0, since = 0, last = null, symbol = null, gen = 0;
    el.classList.add('pq');
    el.innerHTML = '<div class="pq-top"><span class="pq-sym"></span><span class="pq-price" data-testid="quote-price">–</span>' +
      '<span class="pq-chg" data-testid="quote-change"></span></div><div class="pq-meta" data-testid="quote-meta"></div>' +
      '<div class="pq-err" data-testid="quote-error" hidden></div>';
    var q = function (c) { return el.querySelector(c); };
    var fixed = el.getAttribute('data-pulse-quote');
    if (!fixed) {
      var form = d.createElement('form');
      form.innerHTML = '<input name="s" placeholder="Symbol" maxlength="10" aria-label="Symbol" data-testid="quote-input"> <button>Show</button>';
      form.onsubmit = function (e) { e.preventDefault(); start(form.s.value.trim().toUpperCase()); };
      el.insertBefore(form, el.firstChild);
    } else {
      start(fixed.toUpperCase());
    }

    function start(sym) {
      if (!sym) return;
      clearTimeout(timer);
      gen++;
      symbol = sym; since = 0; last = null;
      q('.pq-sym').textContent = sym;
      q('.pq-price').textContent = '…';
      q('.pq-chg').textContent = '';
      q('.pq-meta').textContent = '';
      poll(gen);
    }

    function error(msg) {
      var e = q('.pq-err');
      e.hidden = !msg;
      e.textContent = msg || '';
    }

    function poll(g) {
      fetch(base + '/v1/quote?symbol=' + encodeURIComponent(symbol) + '&since=' + since, { cache: 'no-store' })
        .then(function (r) { return r.json(); })
        .then(function (body) {
          if (g !== gen) return;
          if (body.quote) show(body.quote, !!body.stale);
          error(body.error ? (body.quote ? body.error + ' — showing the last price we have' : body.error) : '');
          // Stale: older than the source's interval allows, whatever the
          // cause (the server judges it: late fetch, closed market, errors).
          var stale = !!body.quote && (!!body.stale || !!body.error);
          el.classList.toggle('pq-stale', stale);
          el.dataset.stale = stale;
          el.dataset.callIn = body.callIn;
          if (body.callIn === null || body.callIn === undefined) {
            q('.pq-meta').textContent = 'stopped';
            return;
          }
          timer = setTimeout(function () { poll(g); }, body.callIn);
        })
        .catch(function () {
          if (g !== gen) return;
          // The server is unreachable: say so, keep the last price, retry later.
          error('cannot reach the quote server; retrying');
          el.classList.add('pq-stale');
          timer = setTimeout(function () { poll(g); }, 30000);
        });
    }

    function show(quote, stale) {
      var price = q('.pq-price'), chg = q('.pq-chg');
      price.textContent = fmt(quote.price, 2);
      chg.textContent = (quote.change >= 0 ? '+' : '') + fmt(quote.change, 2) + ' (' + (quote.changePercent >= 0 ? '+' : '') + fmt(quote.changePercent, 2) + '%)';
      chg.className = 'pq-chg ' + (quote.change >= 0 ? 'pq-up' : 'pq-down');
      // The change since the previous poll flashes green or red.
      if (last && quote.price !== last.price) {
        var cls = quote.price > last.price ? 'pq-flash-up' : 'pq-flash-down';
        price.classList.remove('pq-flash-up', 'pq-flash-down');
        void price.offsetWidth;
        price.classList.add(cls);
      }
      var age = Math.max(0, Math.round((Date.now() - quote.time) / 1000));
      q('.pq-meta').textContent = (stale ? 'stale · ' : '') + 'as of ' + new Date(quote.time).toLocaleTimeString() + (age > 120 ? ' (' + Math.round(age / 60) + ' min ago)' : '') + ' · ' + quote.source;
      last = quote;
      since = quote.time;
    }
  }

  function init() { d.querySelectorAll('[data-pulse-quote]').forEach(widget); }
  if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', init); else init();
})(window, document);
