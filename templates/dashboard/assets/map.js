// segscope run page: the customer map (WebGL, drawn by pointmap.js from the binary points
// endpoint), pan/zoom, hover, colour by segment or by a per-customer KPI, segment
// highlighting. State for tests and curious people: window.segscopeMap.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("run-data").textContent);
  var api = "/api/v1/runs/" + encodeURIComponent(data.run);
  var canvas = document.getElementById("map");
  var statusEl = document.getElementById("map-status");
  var tip = document.getElementById("tooltip");
  var methodSel = document.getElementById("map-method");
  var colourSel = document.getElementById("map-colour");
  var PointMap = window.SegscopePointMap, segHex = PointMap.segHex, rgb = PointMap.rgb;
  var viridis = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var names = {};
  data.segments.forEach(function (s) { names[s.id] = s.name; });
  function segLabel(s) { return s === 0 ? "no segment" : s + ". " + (names[s] || ""); }

  var state = window.segscopeMap = {
    ready: false, method: null, methods: [], pointsDrawn: 0, colour: "segment", highlighted: null,
    hovered: null, idsReady: false, error: null, loadMs: {}, drawMs: null, frames: 0
  };
  function fail(message) { state.error = message; statusEl.textContent = message; statusEl.hidden = false; }

  var pm = PointMap(canvas, {
    onDraw: function (m) {
      state.pointsDrawn = m.pointsDrawn; state.frames = m.frames; state.drawMs = m.drawMs;
      if (!state.ready) { state.ready = true; statusEl.hidden = true; }
    },
    onHover: function (ev, i) { hover(ev, i); },
    onLeave: function () { hideTip(); },
    onClick: function () { select(state.hovered ? state.hovered.segment : state.highlighted); }
  });
  if (pm.error) { fail(pm.error + " The segment cards below still show everything."); return; }

  var maps = {};          // method key -> pointmap layer
  var segments = null;    // segment per point (same order in every map)
  var ids = null, rowOf = null, details = {};
  var kpiValues = {};

  function fetchOk(url, kind) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error(url + " answered " + r.status); }
      return kind === "json" ? r.json() : r.arrayBuffer();
    });
  }

  function recolour() {
    if (!segments) { return; }
    var n = segments.length, cols = new Uint8Array(4 * n), h = state.highlighted, i, c;
    var kpi = state.colour === "segment" ? null : kpiValues[state.colour];
    var segRgb = {};
    for (i = 0; i < n; i++) {
      var s = segments[i];
      if (kpi) { c = kpi.colours[i]; } else { c = segRgb[s] || (segRgb[s] = rgb(segHex(s))); }
      var dim = h !== null && s !== h;
      cols[4 * i] = dim ? 200 : c[0]; cols[4 * i + 1] = dim ? 204 : c[1]; cols[4 * i + 2] = dim ? 212 : c[2];
      cols[4 * i + 3] = dim ? 40 : (n > 50000 ? 150 : 210);
    }
    pm.colours(cols);
  }

  function showMethod(key) {
    var m = maps[key];
    state.ready = false; state.method = key; hideTip();
    if (m) { pm.show(m); return Promise.resolve(); }
    var info = state.methods.filter(function (x) { return x.key === key; })[0];
    statusEl.hidden = false; statusEl.textContent = "Loading the " + info.title + " map…";
    var t0 = performance.now();
    return fetchOk(info.points + "?format=binary", "buffer").then(function (buf) {
      var p = PointMap.parse(buf), t1 = performance.now();
      m = pm.layer(p, info.bounds);
      maps[key] = m;
      if (!segments) { segments = p.seg; recolour(); }
      if (state.method === key) { pm.show(m); }
      state.loadMs[key] = { fetch: Math.round(t1 - t0), index: Math.round(performance.now() - t1) };
    });
  }

  function loadKpi(name) {
    if (kpiValues[name]) { return Promise.resolve(kpiValues[name]); }
    return fetchOk(api + "/kpis/" + encodeURIComponent(name), "buffer").then(function (buf) {
      var v = new Float32Array(buf), n = v.length, order = [], i;
      for (i = 0; i < n; i++) { if (!isNaN(v[i])) { order.push(i); } }
      order.sort(function (a, b) { return v[a] - v[b]; });
      // Colour by rank, not by value: revenue and recency are skewed, ranks spread them.
      var colours = new Array(n);
      for (i = 0; i < n; i++) { colours[i] = [225, 228, 234]; }
      for (var r = 0; r < order.length; r++) {
        var t = order.length > 1 ? r / (order.length - 1) : 0.5, f = t * 4, k = Math.min(3, Math.floor(f)), u = f - k;
        colours[order[r]] = [0, 1, 2].map(function (j) { return Math.round(viridis[k][j] + (viridis[k + 1][j] - viridis[k][j]) * u); });
      }
      kpiValues[name] = { colours: colours, low: order.length ? v[order[0]] : NaN, high: order.length ? v[order[order.length - 1]] : NaN };
      return kpiValues[name];
    });
  }
  function setColour(name) {
    state.colour = name;
    var scale = document.getElementById("kpi-scale");
    if (name === "segment") { scale.hidden = true; recolour(); return Promise.resolve(); }
    return loadKpi(name).then(function (k) {
      document.getElementById("kpi-low").textContent = fmt(k.low);
      document.getElementById("kpi-high").textContent = fmt(k.high) + " " + name.replace("_", " ");
      scale.hidden = false;
      recolour();
    });
  }
  function fmt(v) { return isNaN(v) ? "–" : (Math.abs(v) >= 100 ? Math.round(v).toString() : (Math.round(v * 100) / 100).toString()); }

  // Segment highlighting: the legend, the cards and the map agree on one segment.
  function select(seg) {
    state.highlighted = seg === state.highlighted ? null : seg;
    document.querySelectorAll(".legend .seg").forEach(function (b) { b.classList.toggle("active", Number(b.dataset.segment) === state.highlighted); });
    document.querySelectorAll(".segment-card").forEach(function (c) { c.classList.toggle("selected", Number(c.dataset.segment) === state.highlighted); });
    var panel = document.getElementById("segment-panel"), card = document.getElementById("segment-" + state.highlighted);
    if (state.highlighted !== null && card) {
      var copy = card.cloneNode(true);
      copy.removeAttribute("id"); copy.classList.remove("selected");
      var link = document.createElement("a"); link.href = "#segment-" + state.highlighted; link.textContent = "Go to the card";
      copy.appendChild(link);
      panel.replaceChildren(copy);
    }
    recolour();
  }
  document.querySelectorAll(".legend .seg, .swatch").forEach(function (el) {
    var i = el.tagName === "BUTTON" ? el.querySelector("i") : el;
    i.style.background = segHex(Number(el.dataset.segment));
    if (el.tagName === "BUTTON") { el.addEventListener("click", function () { select(Number(el.dataset.segment)); }); }
  });

  // Hover: nearest point within a few pixels; details fetched after a short pause.
  var hoverTimer = null;
  function hideTip() { tip.hidden = true; state.hovered = null; }
  function line(text, id) { var d = document.createElement("div"); d.textContent = text; if (id) { d.id = id; } return d; }
  function hover(ev, i) {
    if (!pm.current() || !ids) { return; }
    if (i < 0) { hideTip(); return; }
    var id = ids[i], seg = segments[i];
    state.hovered = { index: i, id: id, segment: seg };
    tip.replaceChildren(line(id, "tooltip-id"), line(segLabel(seg), "tooltip-segment"), line(details[id] || "…", "tooltip-details"));
    tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 14) + "px"; tip.hidden = false;
    clearTimeout(hoverTimer);
    if (!details[id]) { hoverTimer = setTimeout(function () { fetchDetails(id); }, 120); }
  }
  function fetchDetails(id) {
    fetchOk(api + "/customers/" + encodeURIComponent(id), "json").then(function (c) {
      var p = c.profile, parts = [];
      if (p) {
        parts.push(p.recency_days === null ? "never bought" : "R " + fmt(p.recency_days) + " days · F " + fmt(p.frequency) + " · M " + fmt(p.monetary));
        parts.push(p.views + " views, " + p.sessions + " sessions");
        if (p.top_categories.length) { parts.push("Top: " + p.top_categories.join(", ")); }
      } else if (c.label !== undefined) { parts.push("label: " + c.label); }
      if (c.reason) { parts.push(c.reason); }
      if (!parts.length) { parts.push("no further figures for this run"); }
      details[id] = parts.join("\n");
      if (state.hovered && state.hovered.id === id) { document.getElementById("tooltip-details").textContent = details[id]; }
    }).catch(function () { details[id] = "details unavailable"; });
  }

  document.getElementById("map-reset").addEventListener("click", function () { pm.fit(); });
  methodSel.addEventListener("change", function () { showMethod(methodSel.value).catch(function (e) { fail(String(e)); }); });
  colourSel.addEventListener("change", function () { setColour(colourSel.value).catch(function (e) { fail(String(e)); }); });

  state.screenPosition = function (i) { return pm.screenPosition(i); };
  state.indexOf = function (id) { return rowOf && rowOf.has(id) ? rowOf.get(id) : -1; };
  state.select = select;
  state.setMethod = function (key) { methodSel.value = key; return showMethod(key); };
  state.setColour = function (name) { colourSel.value = name; return setColour(name); };
  state.panBy = pm.panBy;

  fetchOk(api + "/maps", "json").then(function (info) {
    state.methods = info.methods;
    if (!info.methods.length) { fail("This run has no map."); return null; }
    info.methods.forEach(function (m) { var o = document.createElement("option"); o.value = m.key; o.textContent = m.title; methodSel.appendChild(o); });
    info.kpis.forEach(function (k) { var o = document.createElement("option"); o.value = k; o.textContent = k.replace("_", " "); colourSel.appendChild(o); });
    var shown = showMethod(info.methods[0].key);
    fetchOk(api + "/customers", "json").then(function (c) {
      ids = c.ids; rowOf = new Map();
      for (var i = 0; i < ids.length; i++) { rowOf.set(ids[i], i); }
      state.idsReady = true;
    });
    return shown;
  }).catch(function (e) { fail("The map could not be loaded: " + e.message); });
})();
