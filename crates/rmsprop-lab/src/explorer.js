(function () {
  var D = JSON.parse(document.getElementById('explorer-data').textContent);
  function el(id) { return document.getElementById(id); }
  var colors = ['#1f77b4', '#ff7f0e'];
  function choice() { var n = el('explorer-optimizer').value; return D.choices.filter(function (c) { return c.name === n; })[0]; }
  function fmt(v) { return v === null ? 'not finite' : String(v); }
  function poly(points, color, width, dash) {
    return '<polyline fill="none" stroke="' + color + '" stroke-width="' + width + '"' + (dash ? ' stroke-dasharray="5,4"' : '') +
      ' points="' + points.map(function (p) { return p[0].toFixed(1) + ',' + p[1].toFixed(1); }).join(' ') + '"/>';
  }
  // tick values from lo to hi: whole multiples of 1, 2 or 5 times a power of ten, about 6
  function ticks(lo, hi) {
    var raw = (hi - lo) / 6, p = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * p; }).filter(function (s) { return s >= raw; })[0];
    var out = [];
    for (var k = Math.ceil(lo / step); k * step <= hi; k++) { out.push(+(k * step).toPrecision(6)); }
    return out;
  }
  function clampPx(v) { return Math.max(-1e5, Math.min(1e5, v)); }
  function drawContour(run, objective) {
    var v = D.view, W = 480, H = 360;
    function sx(x) { return clampPx((x - v[0]) / (v[1] - v[0]) * W); }
    function sy(y) { return clampPx(H - (y - v[2]) / (v[3] - v[2]) * H); }
    var out = '<rect width="480" height="360" fill="#fff" stroke="#ccc"/>';
    D.objectives[objective].lines.forEach(function (line) {
      out += poly(line.map(function (p) { return [sx(p[0]), sy(p[1])]; }), '#bbb', 1, false);
    });
    // axis ticks along the bottom (x1) and the left (x2) edges
    ticks(v[0], v[1]).forEach(function (t) {
      out += '<line x1="' + sx(t).toFixed(1) + '" x2="' + sx(t).toFixed(1) + '" y1="' + H + '" y2="' + (H - 6) + '" stroke="#666"/>';
      out += '<text class="explorer-tick" x="' + sx(t).toFixed(1) + '" y="' + (H - 9) + '" font-size="11" text-anchor="middle" fill="#666" font-family="sans-serif">' + t + '</text>';
    });
    ticks(v[2], v[3]).forEach(function (t) {
      out += '<line x1="0" x2="6" y1="' + sy(t).toFixed(1) + '" y2="' + sy(t).toFixed(1) + '" stroke="#666"/>';
      out += '<text class="explorer-tick" x="9" y="' + (sy(t) + 4).toFixed(1) + '" font-size="11" fill="#666" font-family="sans-serif">' + t + '</text>';
    });
    out += '<text x="' + (W - 6) + '" y="' + (H - 22) + '" font-size="11" text-anchor="end" fill="#666" font-family="sans-serif">x1</text>';
    out += '<text x="9" y="36" font-size="11" fill="#666" font-family="sans-serif">x2</text>';
    var m = D.objectives[objective].minimum;
    if (m) {
      out += '<path class="explorer-minimum" d="M' + (sx(m[0]) - 5).toFixed(1) + ',' + (sy(m[1]) - 5).toFixed(1) + 'l10,10m0,-10l-10,10" stroke="#000" stroke-width="2"/>';
    }
    var pts = run.p.filter(function (p) { return p[0] !== null && p[1] !== null; });
    out += poly(pts.map(function (p) { return [sx(p[0]), sy(p[1])]; }), '#d62728', 2, false);
    pts.forEach(function (p) { out += '<circle class="explorer-point" cx="' + sx(p[0]).toFixed(1) + '" cy="' + sy(p[1]).toFixed(1) + '" r="3" fill="#d62728"/>'; });
    out += '<text x="8" y="18" font-size="13" font-family="sans-serif">' + D.objectives[objective].formula + '</text>';
    el('explorer-contour').innerHTML = out;
  }
  function drawRates(run) {
    var W = 480, H = 240, L = 60, B = 30, T = 10, R = 10;
    var vals = [];
    run.r.forEach(function (r) { r.forEach(function (x) { if (x !== null && x > 0) vals.push(Math.log10(x)); }); });
    var out = '<rect width="480" height="240" fill="#fff" stroke="#ccc"/>';
    if (vals.length === 0) {
      // a run refused or diverged before its first rate: say which
      var why = /diverged|refused/.test(run.end) ? run.end : 'no effective rate to show';
      el('explorer-rates').innerHTML = out + '<text id="explorer-rates-note" x="70" y="120" font-size="13" font-family="sans-serif">' + why.replace(/</g, '&lt;') + '</text>';
      return;
    }
    var lo = Math.floor(Math.min.apply(null, vals)), hi = Math.ceil(Math.max.apply(null, vals));
    if (hi === lo) { hi = lo + 1; }
    var n = Math.max(run.r.length, 2);
    function sx(k) { return L + (k - 1) / (n - 1) * (W - L - R); }
    function sy(l) { return T + (hi - l) / (hi - lo) * (H - T - B); }
    for (var d = lo; d <= hi; d++) {
      out += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + sy(d).toFixed(1) + '" y2="' + sy(d).toFixed(1) + '" stroke="#eee"/>';
      out += '<text x="' + (L - 4) + '" y="' + (sy(d) + 4).toFixed(1) + '" font-size="11" text-anchor="end" font-family="sans-serif">1e' + d + '</text>';
    }
    [0, 1].forEach(function (i) {
      var pts = [];
      run.r.forEach(function (r, k) { if (r[i] !== null && r[i] > 0) pts.push([sx(k + 1), sy(Math.log10(r[i]))]); });
      out += poly(pts, colors[i], 2, i === 1);
      out += '<text x="' + (W - R - 4) + '" y="' + (T + 14 + 14 * i) + '" font-size="12" text-anchor="end" fill="' + colors[i] + '" font-family="sans-serif">x' + (i + 1) + '</text>';
    });
    out += '<text x="' + ((L + W) / 2) + '" y="' + (H - 8) + '" font-size="12" text-anchor="middle" font-family="sans-serif">step (effective learning rate, log scale)</text>';
    // a run that diverged says where, not just an axis that stops
    if (/diverged/.test(run.end)) {
      out += '<text id="explorer-rates-note" x="' + (L + 6) + '" y="' + (T + 14) + '" font-size="12" fill="#d62728" font-family="sans-serif">' + run.end.split(':')[0].replace(/</g, '&lt;') + '</text>';
    }
    el('explorer-rates').innerHTML = out;
  }
  function update() {
    var c = choice();
    var li = +el('explorer-lr').value, gi = +el('explorer-gamma').value;
    el('explorer-gamma').disabled = c.gamma === null;
    el('explorer-placement').disabled = !c.placement;
    el('explorer-gamma-name').textContent = c.gamma === 'momentum' ? 'β (momentum)' : c.gamma === 'beta2' ? 'β2' : 'γ';
    el('explorer-lr-value').textContent = fmt(D.lrs[li]);
    el('explorer-gamma-value').textContent = c.gamma === null ? '(none for ' + c.label + ')' : fmt(c.gammas[gi]);
    var placement = c.placement ? el('explorer-placement').value : '-';
    var objective = el('explorer-objective').value;
    var key = [c.name, placement, objective, li, c.gamma === null ? '-' : gi].join('|');
    var run = D.runs[key];
    el('explorer-end').textContent = run.end;
    el('explorer-command').textContent = run.cmd;
    el('explorer-settings').textContent = c.label + ', η = ' + fmt(D.lrs[li]) + (c.gamma === null ? '' : ', ' + el('explorer-gamma-name').textContent + ' = ' + fmt(c.gammas[gi])) +
      (c.placement ? ', ε ' + (placement === 'inside_sqrt' ? 'inside' : 'outside') + ' the root' : '') + ', ' + objective;
    drawContour(run, objective);
    drawRates(run);
  }
  ['explorer-lr', 'explorer-gamma'].forEach(function (id) { el(id).addEventListener('input', update); });
  ['explorer-optimizer', 'explorer-placement', 'explorer-objective'].forEach(function (id) { el(id).addEventListener('change', update); });
  update();
})();
