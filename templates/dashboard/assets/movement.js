// segscope movement page: segment shares over the weeks (SVG lines), a Sankey of the flows
// between two chosen weeks, the map stepped week by week (pointmap.js), the alerts with
// their customers, and live weeks from the run's event stream. Text is always set with
// textContent. State for tests and curious people: window.segscopeMovement.
(function () {
  "use strict";
  var page = JSON.parse(document.getElementById("movement-data").textContent);
  var api = "/api/v1/runs/" + encodeURIComponent(page.run) + "/movement";
  var PointMap = window.SegscopePointMap, segHex = PointMap.segHex, rgb = PointMap.rgb;
  var SVG = "http://www.w3.org/2000/svg";
  var $ = function (id) { return document.getElementById(id); };
  var state = window.segscopeMovement = {
    doc: null, weeks: page.weeks.slice(), updates: 0, loads: 0, live: "connecting", error: null,
    shareLines: 0, sankey: null, alert: null,
    map: { week: null, method: page.maps.length ? page.maps[0].key : null, ready: false, pointsDrawn: 0, highlighted: 0, idsReady: false }
  };

  function fail(message) { state.error = message; var e = $("movement-error"); e.textContent = message; e.hidden = false; }
  function fetchOk(url, kind) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error(url + " answered " + r.status); }
      return kind === "json" ? r.json() : r.arrayBuffer();
    });
  }
  function el(tag, attrs, text) {
    var e = tag.indexOf("svg:") === 0 ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function pct(v) { return (Math.round(v * 1000) / 10).toString() + "%"; }
  function num(v) { return Math.abs(v) >= 100 ? Math.round(v).toString() : (Math.round(v * 100) / 100).toString(); }
  function segName(s) { return s ? "Segment " + s : "no segment"; }
  function option(select, value, text) { var o = el("option", { value: value }, text); select.appendChild(o); return o; }

  // Shares: one line per segment over the weeks, a legend, values on hover.
  var tip = $("tooltip");
  function showTip(ev, lines) {
    tip.replaceChildren.apply(tip, lines.map(function (t) { return el("div", {}, t); }));
    tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 14) + "px"; tip.hidden = false;
  }
  function hideTip() { tip.hidden = true; }
  function drawShares(doc) {
    var svg = $("shares-chart"), W = 900, H = 260, L = 44, R = 36, T = 10, B = 28;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var weeks = doc.shares.map(function (w) { return w.week; }), ids = doc.segments.map(function (s) { return s.id; });
    var max = 0;
    doc.shares.forEach(function (w) { w.segments.forEach(function (s) { max = Math.max(max, s.share); }); });
    max = Math.max(0.05, Math.ceil(max * 10) / 10);
    var x = function (i) { return L + (weeks.length > 1 ? i * (W - L - R) / (weeks.length - 1) : (W - L - R) / 2); };
    var y = function (v) { return T + (1 - v / max) * (H - T - B); };
    var parts = [];
    for (var g = 0; g <= 4; g++) {
      var v = max * g / 4;
      parts.push(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      parts.push(el("svg:text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, pct(v)));
    }
    weeks.forEach(function (w, i) {
      if (weeks.length <= 12 || i % Math.ceil(weeks.length / 12) === 0) {
        parts.push(el("svg:text", { x: x(i), y: H - 8, class: "axis", "text-anchor": "middle" }, w));
      }
    });
    ids.forEach(function (id) {
      var pts = doc.shares.map(function (w, i) {
        var s = w.segments.filter(function (s) { return s.segment === id; })[0];
        return x(i) + "," + y(s ? s.share : 0);
      });
      parts.push(el("svg:polyline", { points: pts.join(" "), class: "share-line", "data-segment": id, stroke: segHex(id) }));
    });
    // Hover columns: the week's shares, in words.
    weeks.forEach(function (w, i) {
      var half = weeks.length > 1 ? (W - L - R) / (weeks.length - 1) / 2 : (W - L - R) / 2;
      var col = el("svg:rect", { x: x(i) - half, y: T, width: 2 * half, height: H - T - B, class: "hover-col", "data-week": w });
      col.addEventListener("mousemove", function (ev) {
        var week = doc.shares[i];
        showTip(ev, [w].concat(week.segments.map(function (s) { return segName(s.segment) + ": " + pct(s.share) + " (" + s.count + ")"; })));
      });
      col.addEventListener("mouseleave", hideTip);
      parts.push(col);
    });
    svg.replaceChildren.apply(svg, parts);
    state.shareLines = ids.length;
    var legend = $("shares-legend");
    legend.replaceChildren.apply(legend, ids.map(function (id) {
      var item = el("span", { class: "legend-item", "data-segment": id }), sw = el("i");
      sw.style.background = segHex(id);
      item.appendChild(sw); item.appendChild(document.createTextNode(segName(id)));
      return item;
    }));
  }

  // Sankey between the chosen weeks: segments of the earlier week on the left, of the later
  // week on the right, a band per flow as wide as its customers.
  var fromSel = $("flow-from"), toSel = $("flow-to");
  var lastWeek = null;
  function fillWeekSelects() {
    var from = fromSel.value, to = toSel.value, n = state.weeks.length;
    // Following the latest week: a new week moves the right-hand side along.
    if (to === lastWeek) { to = null; if (from === state.weeks[n - 3]) { from = null; } }
    lastWeek = state.weeks[n - 1];
    fromSel.replaceChildren(); toSel.replaceChildren();
    state.weeks.forEach(function (w) { option(fromSel, w, w); option(toSel, w, w); });
    fromSel.value = from && state.weeks.indexOf(from) >= 0 ? from : state.weeks[Math.max(0, n - 2)];
    toSel.value = to && state.weeks.indexOf(to) >= 0 ? to : state.weeks[n - 1];
  }
  function drawSankey() {
    var from = fromSel.value, to = toSel.value, svg = $("sankey"), note = $("flow-note");
    if (state.weeks.indexOf(to) <= state.weeks.indexOf(from)) {
      svg.replaceChildren(); note.textContent = "Choose a later week on the right.";
      state.sankey = { from: from, to: to, links: 0, total: 0, source: null };
      return Promise.resolve();
    }
    return fetchOk(api + "/flows?from=" + encodeURIComponent(from) + "&to=" + encodeURIComponent(to), "json").then(function (f) {
      if (fromSel.value !== from || toSel.value !== to) { return; }
      var W = 900, H = 360, NW = 14, gap = 10, T = 8, B = 8, LX = 150, RX = W - 150 - NW;
      svg.setAttribute("viewBox", "0 0 " + W + " " + H);
      var total = f.customers_in_both, left = {}, right = {};
      f.flows.forEach(function (l) { left[l.from] = (left[l.from] || 0) + l.count; right[l.to] = (right[l.to] || 0) + l.count; });
      var lk = Object.keys(left).map(Number).sort(function (a, b) { return a - b; }), rk = Object.keys(right).map(Number).sort(function (a, b) { return a - b; });
      var scale = (H - T - B - gap * (Math.max(lk.length, rk.length) - 1)) / Math.max(1, total);
      function place(keys, sums) {
        var at = T, pos = {};
        keys.forEach(function (k) { pos[k] = { y: at, h: sums[k] * scale, used: 0 }; at += sums[k] * scale + gap; });
        return pos;
      }
      var lp = place(lk, left), rp = place(rk, right), parts = [];
      f.flows.forEach(function (l) {
        var h = l.count * scale, a = lp[l.from], b = rp[l.to];
        var y0 = a.y + a.used + h / 2, y1 = b.y + b.used + h / 2, x0 = LX + NW, x1 = RX, mx = (x0 + x1) / 2;
        a.used += h; b.used += h;
        var path = el("svg:path", { d: "M" + x0 + "," + y0 + " C" + mx + "," + y0 + " " + mx + "," + y1 + " " + x1 + "," + y1, class: "flow" + (l.from === l.to ? " stay" : ""), "stroke-width": Math.max(1, h), stroke: segHex(l.from), "data-from": l.from, "data-to": l.to, "data-count": l.count });
        path.appendChild(el("svg:title", {}, segName(l.from) + " → " + segName(l.to) + ": " + l.count + " customers (" + pct(l.rate) + " of " + segName(l.from) + ")"));
        parts.push(path);
      });
      function nodes(pos, x, side) {
        Object.keys(pos).forEach(function (k) {
          var p = pos[k], id = Number(k);
          parts.push(el("svg:rect", { x: x, y: p.y, width: NW, height: Math.max(1, p.h), fill: segHex(id), class: "node " + side, "data-segment": id }));
          var sum = side === "from" ? left[id] : right[id];
          parts.push(el("svg:text", { x: side === "from" ? x - 6 : x + NW + 6, y: p.y + p.h / 2 + 4, "text-anchor": side === "from" ? "end" : "start", class: "axis" }, segName(id) + " (" + sum + ")"));
        });
      }
      nodes(lp, LX, "from"); nodes(rp, RX, "to");
      svg.replaceChildren.apply(svg, parts);
      note.textContent = total + " customers in a segment both weeks" + (f.source === "transitions" ? " (stored transition)" : " (counted from the weekly assignments)") + ".";
      state.sankey = { from: from, to: to, links: f.flows.length, total: total, source: f.source };
    }).catch(function (e) { fail("The flows could not be loaded: " + e.message); });
  }
  fromSel.addEventListener("change", drawSankey);
  toSel.addEventListener("change", drawSankey);

  // The map, week by week: one layer per (map, week), one view kept across weeks.
  var canvas = $("map"), statusEl = $("map-status"), methodSel = $("map-method"), slider = $("week-slider");
  var layers = {}, ids = {}, highlight = null, hovered = null;
  var pm = PointMap(canvas, {
    onDraw: function (m) { state.map.pointsDrawn = m.pointsDrawn; if (!state.map.ready) { state.map.ready = true; statusEl.hidden = true; } },
    onHover: function (ev, i) {
      var w = state.map.week, method = state.map.method, list = ids[method + "|" + w], layer = pm.current();
      if (i < 0 || !layer) { hovered = null; hideTip(); return; }
      hovered = i;
      // Ids are fetched for a week only once someone needs them (a hover, an alert).
      if (!list) { loadIds(method, w).catch(function () {}); }
      showTip(ev, [list ? list[i] : "customer " + (i + 1), segName(layer.seg[i]), w]);
    },
    onLeave: function () { hovered = null; hideTip(); }
  });
  if (pm.error) { statusEl.textContent = pm.error; }
  page.maps.forEach(function (m) { option(methodSel, m.key, m.title); });
  function colour(layer) {
    var n = layer.count, cols = new Uint8Array(4 * n), cache = {}, lit = 0, list = ids[state.map.method + "|" + state.map.week];
    var on = highlight && highlight.week === state.map.week && list ? highlight.ids : null;
    for (var i = 0; i < n; i++) {
      var s = layer.seg[i], c = cache[s] || (cache[s] = rgb(segHex(s))), hit = on && on.has(list[i]);
      var dim = on && !hit;
      if (hit) { lit++; if (s === 0) { c = [29, 35, 48]; } }
      cols[4 * i] = dim ? 200 : c[0]; cols[4 * i + 1] = dim ? 204 : c[1]; cols[4 * i + 2] = dim ? 212 : c[2];
      cols[4 * i + 3] = dim ? 40 : (n > 50000 ? 150 : 210);
    }
    state.map.highlighted = lit;
    pm.colours(cols);
  }
  function loadIds(method, week) {
    var key = method + "|" + week;
    if (ids[key]) { return Promise.resolve(ids[key]); }
    var out = [];
    function page(offset) {
      return fetchOk(api + "/weeks/" + encodeURIComponent(week) + "/points?map=" + encodeURIComponent(method) + "&limit=10000&offset=" + offset, "json").then(function (p) {
        p.points.forEach(function (pt) { out.push(pt.id); });
        return p.next_offset === null ? out : page(p.next_offset);
      });
    }
    return page(0).then(function (list) { ids[key] = list; return list; });
  }
  var frame = {};
  function showWeek(week) {
    var method = state.map.method, key = method + "|" + week;
    if (!method || pm.error) { return Promise.resolve(); }
    state.map.week = week; state.map.ready = false; state.map.idsReady = false;
    slider.value = String(state.weeks.indexOf(week)); $("week-label").textContent = week;
    var shown = layers[key] ? Promise.resolve(layers[key]) : fetchOk(api + "/weeks/" + encodeURIComponent(week) + "/points?map=" + encodeURIComponent(method) + "&format=binary", "buffer").then(function (buf) {
      var p = PointMap.parse(buf), b = PointMap.boundsOf(p.xy, p.count), f = frame[method];
      // One frame per map: the union of the weeks seen, so points move, not the view.
      frame[method] = f ? { min_x: Math.min(f.min_x, b.min_x), min_y: Math.min(f.min_y, b.min_y), max_x: Math.max(f.max_x, b.max_x), max_y: Math.max(f.max_y, b.max_y) } : b;
      layers[key] = pm.layer(p, frame[method]);
      return layers[key];
    });
    return shown.then(function (layer) {
      if (state.map.week !== week || state.map.method !== method) { return; }
      var first = !pm.current();
      pm.show(layer, !first);
      colour(layer);
      drawLegend(layer);
      if (!ids[key] && !(highlight && highlight.week === week)) { return; }
      return loadIds(method, week).then(function () {
        if (state.map.week === week && state.map.method === method) { state.map.idsReady = true; colour(layer); }
      });
    }).catch(function (e) { statusEl.hidden = false; statusEl.textContent = "The map could not be loaded: " + e.message; });
  }
  function drawLegend(layer) {
    var counts = {};
    for (var i = 0; i < layer.count; i++) { counts[layer.seg[i]] = (counts[layer.seg[i]] || 0) + 1; }
    var legend = $("map-legend");
    legend.replaceChildren.apply(legend, Object.keys(counts).map(Number).sort(function (a, b) { return (a || 1e9) - (b || 1e9); }).map(function (s) {
      var item = el("span", { class: "seg", "data-segment": s }), sw = el("i");
      sw.style.background = segHex(s);
      item.appendChild(sw); item.appendChild(document.createTextNode(segName(s) + " "));
      item.appendChild(el("small", {}, String(counts[s])));
      return item;
    }));
  }
  slider.addEventListener("input", function () { showWeek(state.weeks[Number(slider.value)]); });
  methodSel.addEventListener("change", function () { state.map.method = methodSel.value; pm.show(null, true); showWeek(state.map.week).then(function () { pm.fit(); }); });
  $("map-reset").addEventListener("click", function () { pm.fit(); });
  var playing = null;
  function stop() { clearTimeout(playing); playing = null; $("map-play").textContent = "Play"; }
  function step() {
    var i = state.weeks.indexOf(state.map.week) + 1;
    if (i >= state.weeks.length) { stop(); return; }
    showWeek(state.weeks[i]).then(function () { if (playing !== null) { playing = setTimeout(step, 700); } });
  }
  $("map-play").addEventListener("click", function () {
    if (playing !== null) { stop(); return; }
    $("map-play").textContent = "Pause";
    if (state.weeks.indexOf(state.map.week) >= state.weeks.length - 1) { playing = 0; showWeek(state.weeks[0]).then(function () { playing = setTimeout(step, 700); }); return; }
    playing = setTimeout(step, 0);
  });

  // Alerts, by week, with the week's summary; a click lists the customers and lights them up.
  var kinds = { migration: "Migration", drift: "Drift", anomaly: "Anomaly", emerging_segment: "Emerging segment" };
  function evidence(a) {
    var e = a.evidence || {};
    if (a.kind === "migration") { return e.count + " of " + e.from_size + " moved from " + segName(e.from) + " to " + segName(e.to) + " (" + pct(e.rate) + ", usually " + pct(e.baseline_rate) + ")"; }
    if (a.kind === "drift") {
      var top = (e.features || []).slice().sort(function (x, y) { return y.psi - x.psi; })[0];
      return top ? top.feature + " shifted: PSI " + num(top.psi) + ", median " + num(top.median_fit) + " → " + num(top.median_now) : "behaviour shifted";
    }
    if (a.kind === "anomaly") { return e.count + " bot-like browsers, median " + num(e.median_views) + " views, up to " + num(e.max_views); }
    if (a.kind === "emerging_segment") {
      var n = e.novelty || {};
      return e.size + " customers (" + pct(e.share_of_customers) + ") over-indexing on " + (e.over_indexed || []).slice(0, 3).map(function (t) { return t.token; }).join(", ") + (n.token ? "; " + n.token + " now " + pct(n.share_now) : "");
    }
    return "";
  }
  function drawAlerts(doc) {
    var list = $("alerts"), byWeek = {}, order = [];
    doc.alerts.forEach(function (a, i) { if (!byWeek[a.week]) { byWeek[a.week] = []; order.push(a.week); } byWeek[a.week].push(i); });
    if (!order.length) { list.replaceChildren(el("li", { id: "no-alerts" }, "No alerts in these weeks.")); return; }
    list.replaceChildren.apply(list, order.map(function (week) {
      var item = el("li", { class: "alert-week", "data-week": week });
      item.appendChild(el("h3", {}, week));
      var summary = doc.summaries.filter(function (s) { return s.week === week; })[0];
      if (summary) { item.appendChild(el("p", { class: "small summary" }, summary.text)); }
      var ul = el("ul");
      byWeek[week].forEach(function (i) {
        var a = doc.alerts[i], b = el("button", { type: "button", class: "alert " + a.kind, "data-index": i });
        b.appendChild(el("b", {}, kinds[a.kind] || a.kind));
        b.appendChild(document.createTextNode(" · " + (a.segment ? segName(a.segment) : "outside the segments") + " · " + a.customers.length + " customers · " + evidence(a)));
        b.addEventListener("click", function () { openAlert(i, 0); });
        var li = el("li"); li.appendChild(b); ul.appendChild(li);
      });
      item.appendChild(ul);
      return item;
    }));
  }
  var PAGE = 50;
  function openAlert(index, offset) {
    return fetchOk(api + "/alerts/" + index + "?limit=" + PAGE + "&offset=" + offset, "json").then(function (r) {
      var a = r.alert, box = $("alert-detail"), body = $("alert-customers").tBodies[0];
      $("alert-title").textContent = (kinds[a.kind] || a.kind) + ", " + a.week + ": " + r.total + " customers";
      $("alert-summary").textContent = evidence(a);
      body.replaceChildren.apply(body, r.customers.map(function (c) {
        var tr = el("tr", { class: "alert-customer", "data-id": c.id });
        [c.id, c.segment ? segName(c.segment) : (c.reason || "none"), r.previous_week === null ? "–" : (c.previous_segment ? segName(c.previous_segment) : "none"), c.fit_distance === null ? "–" : num(c.fit_distance)].forEach(function (t) { tr.appendChild(el("td", {}, t)); });
        return tr;
      }));
      $("alert-page").textContent = (r.offset + 1) + "–" + (r.offset + r.customers.length) + " of " + r.total;
      $("alert-prev").disabled = r.offset === 0;
      $("alert-next").disabled = r.next_offset === null;
      box.hidden = false;
      document.querySelectorAll("#alerts button.alert").forEach(function (b) { b.classList.toggle("active", Number(b.dataset.index) === index); });
      state.alert = { index: index, offset: r.offset, shown: r.customers.length, total: r.total, next: r.next_offset, week: a.week };
      var all = state.doc.alerts[index];
      highlight = { week: a.week, ids: new Set(all ? all.customers : r.customers.map(function (c) { return c.id; })) };
      return showWeek(a.week);
    }).catch(function (e) { fail("The alert could not be loaded: " + e.message); });
  }
  $("alert-prev").addEventListener("click", function () { if (state.alert) { openAlert(state.alert.index, Math.max(0, state.alert.offset - PAGE)); } });
  $("alert-next").addEventListener("click", function () { if (state.alert && state.alert.next !== null) { openAlert(state.alert.index, state.alert.next); } });

  // Everything from movement.json; again whenever the run gains a week.
  function load() {
    return fetchOk(api, "json").then(function (doc) {
      state.doc = doc; state.weeks = doc.weeks.slice(); state.loads++;
      $("week-count").textContent = String(doc.weeks.length);
      $("week-span").textContent = doc.weeks.length ? doc.weeks[0] + " to " + doc.weeks[doc.weeks.length - 1] : "none";
      slider.max = String(Math.max(0, doc.weeks.length - 1));
      drawShares(doc);
      fillWeekSelects();
      drawAlerts(doc);
      document.body.dataset.weeks = String(doc.weeks.length);
      return drawSankey();
    });
  }
  load().then(function () {
    return showWeek(state.map.week && state.weeks.indexOf(state.map.week) >= 0 ? state.map.week : state.weeks[state.weeks.length - 1]);
  }).catch(function (e) { fail("The movement could not be loaded: " + e.message); });

  var live = $("live-status");
  if (window.EventSource) {
    var source = new EventSource(api + "/events");
    var refresh = function () {
      state.updates++;
      document.body.dataset.updates = String(state.updates);
      // The files were rewritten: parsed weeks may have changed too.
      Object.keys(layers).forEach(function (k) { pm.drop(layers[k]); });
      layers = {}; ids = {};
      var atEnd = state.map.week === state.weeks[state.weeks.length - 1];
      load().then(function () { return showWeek(atEnd ? state.weeks[state.weeks.length - 1] : state.map.week); })
        .catch(function (e) { fail("The new week could not be loaded: " + e.message); });
    };
    var subscriptions = 0;
    source.addEventListener("subscribed", function () {
      state.live = "open"; live.textContent = "live updates: on";
      // A reconnection may have missed weeks.
      if (++subscriptions > 1) { refresh(); }
    });
    source.addEventListener("week_added", function (ev) {
      var update = JSON.parse(ev.data);
      live.textContent = "live updates: on (" + update.week + " added)";
      refresh();
    });
    source.addEventListener("reload", refresh);
    source.onerror = function () { state.live = "reconnecting"; live.textContent = "live updates: reconnecting…"; };
  } else { live.textContent = "live updates: not supported by this browser"; }
})();
