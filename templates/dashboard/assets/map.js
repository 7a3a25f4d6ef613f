// segscope run page: the customer map in WebGL (one draw call over a Float32Array of
// x,y pairs straight from the binary points endpoint), pan/zoom, hover with a uniform grid
// index, colour by segment or by a per-customer KPI, segment highlighting.
// State for tests and curious people: window.segscopeMap.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("run-data").textContent);
  var api = "/api/v1/runs/" + encodeURIComponent(data.run);
  var canvas = document.getElementById("map");
  var statusEl = document.getElementById("map-status");
  var tip = document.getElementById("tooltip");
  var methodSel = document.getElementById("map-method");
  var colourSel = document.getElementById("map-colour");
  var palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"];
  var viridis = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var names = {};
  data.segments.forEach(function (s) { names[s.id] = s.name; });
  function segHex(s) { return s === 0 ? "#b8bcc6" : palette[(s - 1) % palette.length]; }
  function rgb(hex) { return [parseInt(hex.substr(1, 2), 16), parseInt(hex.substr(3, 2), 16), parseInt(hex.substr(5, 2), 16)]; }
  function segLabel(s) { return s === 0 ? "no segment" : s + ". " + (names[s] || ""); }
  var littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  var state = window.segscopeMap = {
    ready: false, method: null, methods: [], pointsDrawn: 0, colour: "segment", highlighted: null,
    hovered: null, idsReady: false, error: null, loadMs: {}, drawMs: null, frames: 0
  };
  function fail(message) { state.error = message; statusEl.textContent = message; statusEl.hidden = false; }

  var gl = canvas.getContext("webgl", { antialias: false, preserveDrawingBuffer: true });
  if (!gl) { fail("This browser cannot draw the map (WebGL is off). The segment cards below still show everything."); return; }
  function shader(type, source) {
    var s = gl.createShader(type); gl.shaderSource(s, source); gl.compileShader(s); return s;
  }
  var program = gl.createProgram();
  gl.attachShader(program, shader(gl.VERTEX_SHADER,
    "attribute vec2 a_pos; attribute vec4 a_col; uniform vec2 u_scale; uniform vec2 u_offset; uniform float u_size; varying vec4 v_col;" +
    "void main() { gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0); gl_PointSize = u_size; v_col = a_col; }"));
  gl.attachShader(program, shader(gl.FRAGMENT_SHADER,
    "precision mediump float; varying vec4 v_col; uniform float u_round;" +
    "void main() { vec2 d = gl_PointCoord - 0.5; if (u_round > 0.5 && dot(d, d) > 0.25) discard; gl_FragColor = vec4(v_col.rgb * v_col.a, v_col.a); }"));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) { fail("The map's shaders did not compile."); return; }
  gl.useProgram(program);
  var loc = {
    pos: gl.getAttribLocation(program, "a_pos"), col: gl.getAttribLocation(program, "a_col"),
    scale: gl.getUniformLocation(program, "u_scale"), offset: gl.getUniformLocation(program, "u_offset"), size: gl.getUniformLocation(program, "u_size"), round: gl.getUniformLocation(program, "u_round")
  };
  var colourBuffer = gl.createBuffer();
  gl.enable(gl.BLEND);
  gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);

  var maps = {};          // method key -> {xy, seg, buffer, grid, bounds}
  var current = null;     // the map shown
  var segments = null;    // segment per point (same order in every map)
  var ids = null, rowOf = null, details = {};
  var kpiValues = {};
  var view = { cx: 0, cy: 0, ppu: 1 };
  var dpr = window.devicePixelRatio || 1;

  function fetchOk(url, kind) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error(url + " answered " + r.status); }
      return kind === "json" ? r.json() : r.arrayBuffer();
    });
  }

  // Binary points: 24-byte header, count x,y f32 pairs, count segment ids (u16 or u32).
  function parsePoints(buf) {
    var dv = new DataView(buf);
    var magic = String.fromCharCode(dv.getUint8(0), dv.getUint8(1), dv.getUint8(2), dv.getUint8(3));
    if (magic !== "SGPT" || dv.getUint16(4, true) !== 1) { throw new Error("unexpected points format"); }
    var segBytes = dv.getUint16(6, true), count = dv.getUint32(16, true), i;
    var xy, seg, at = 24 + 8 * count;
    if (littleEndian) {
      xy = new Float32Array(buf, 24, 2 * count);
      seg = segBytes === 2 ? new Uint16Array(buf, at, count) : new Uint32Array(buf, at, count);
    } else {
      xy = new Float32Array(2 * count); seg = new Uint32Array(count);
      for (i = 0; i < 2 * count; i++) { xy[i] = dv.getFloat32(24 + 4 * i, true); }
      for (i = 0; i < count; i++) { seg[i] = segBytes === 2 ? dv.getUint16(at + 2 * i, true) : dv.getUint32(at + 4 * i, true); }
    }
    return { xy: xy, seg: seg, count: count };
  }

  // Uniform grid over data coordinates: points bucketed by cell (counting sort), so a hover
  // looks only at the few cells under the cursor.
  function buildGrid(xy, n, b) {
    var side = Math.max(16, Math.min(512, Math.ceil(Math.sqrt(n / 8))));
    var span = Math.max(b.max_x - b.min_x, b.max_y - b.min_y) || 1;
    var cs = span / side * 1.0001, gx = Math.max(1, Math.ceil((b.max_x - b.min_x) / cs) || 1), gy = Math.max(1, Math.ceil((b.max_y - b.min_y) / cs) || 1);
    var cellOf = new Uint32Array(n), start = new Uint32Array(gx * gy + 1), items = new Uint32Array(n), i;
    for (i = 0; i < n; i++) {
      var cx = Math.min(gx - 1, Math.floor((xy[2 * i] - b.min_x) / cs)), cy = Math.min(gy - 1, Math.floor((xy[2 * i + 1] - b.min_y) / cs));
      cellOf[i] = cy * gx + cx; start[cellOf[i] + 1]++;
    }
    for (i = 0; i < gx * gy; i++) { start[i + 1] += start[i]; }
    var fill = start.slice(0, gx * gy);
    for (i = 0; i < n; i++) { items[fill[cellOf[i]]++] = i; }
    return { cs: cs, gx: gx, gy: gy, start: start, items: items, b: b };
  }
  function nearest(m, x, y, r) {
    var g = m.grid, b = g.b, best = -1, bestD = r * r;
    var x0 = Math.max(0, Math.floor((x - r - b.min_x) / g.cs)), x1 = Math.min(g.gx - 1, Math.floor((x + r - b.min_x) / g.cs));
    var y0 = Math.max(0, Math.floor((y - r - b.min_y) / g.cs)), y1 = Math.min(g.gy - 1, Math.floor((y + r - b.min_y) / g.cs));
    for (var cy = y0; cy <= y1; cy++) {
      for (var cx = x0; cx <= x1; cx++) {
        var c = cy * g.gx + cx;
        for (var k = g.start[c]; k < g.start[c + 1]; k++) {
          var i = g.items[k], dx = m.xy[2 * i] - x, dy = m.xy[2 * i + 1] - y, d = dx * dx + dy * dy;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  function pointSize() {
    var n = current ? current.count : 0;
    return (n > 50000 ? 2.5 : n > 5000 ? 4 : 7) * dpr;
  }
  function fit() {
    var b = current.bounds, w = canvas.width, h = canvas.height;
    view.cx = (b.min_x + b.max_x) / 2; view.cy = (b.min_y + b.max_y) / 2;
    view.ppu = 0.92 * Math.min(w / ((b.max_x - b.min_x) || 1), h / ((b.max_y - b.min_y) || 1));
  }
  function toData(sx, sy) { return { x: view.cx + (sx * dpr - canvas.width / 2) / view.ppu, y: view.cy - (sy * dpr - canvas.height / 2) / view.ppu }; }
  function toScreen(i) {
    var rect = canvas.getBoundingClientRect();
    return { x: rect.left + (canvas.width / 2 + (current.xy[2 * i] - view.cx) * view.ppu) / dpr, y: rect.top + (canvas.height / 2 - (current.xy[2 * i + 1] - view.cy) * view.ppu) / dpr };
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
    gl.bindBuffer(gl.ARRAY_BUFFER, colourBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, cols, gl.STATIC_DRAW);
    schedule();
  }

  var pending = false;
  function schedule() { if (!pending) { pending = true; requestAnimationFrame(draw); } }
  function draw() {
    pending = false;
    if (!current) { return; }
    var t0 = performance.now(), w = canvas.width, h = canvas.height;
    gl.viewport(0, 0, w, h);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    var sx = 2 * view.ppu / w, sy = 2 * view.ppu / h;
    gl.uniform2f(loc.scale, sx, sy);
    gl.uniform2f(loc.offset, -view.cx * sx, -view.cy * sy);
    gl.uniform1f(loc.size, pointSize());
    // Points under 4 device pixels look the same square or round; squares skip the discard.
    gl.uniform1f(loc.round, pointSize() >= 4 ? 1 : 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, current.buffer);
    gl.enableVertexAttribArray(loc.pos);
    gl.vertexAttribPointer(loc.pos, 2, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, colourBuffer);
    gl.enableVertexAttribArray(loc.col);
    gl.vertexAttribPointer(loc.col, 4, gl.UNSIGNED_BYTE, true, 0, 0);
    gl.drawArrays(gl.POINTS, 0, current.count);
    state.pointsDrawn = current.count;
    state.frames++;
    state.drawMs = performance.now() - t0;
    if (!state.ready) { state.ready = true; statusEl.hidden = true; }
  }

  function resize() {
    var w = Math.round(canvas.clientWidth * dpr), h = Math.round(canvas.clientHeight * dpr);
    if (w === canvas.width && h === canvas.height) { return; }
    var scale = canvas.width ? Math.min(w / canvas.width, h / canvas.height) : 1;
    canvas.width = w; canvas.height = h;
    if (current) { view.ppu *= scale; schedule(); }
  }

  function showMethod(key) {
    var m = maps[key];
    state.ready = false; state.method = key; hideTip();
    if (m) { current = m; fit(); schedule(); return Promise.resolve(); }
    var info = state.methods.filter(function (x) { return x.key === key; })[0];
    statusEl.hidden = false; statusEl.textContent = "Loading the " + info.title + " map…";
    var t0 = performance.now();
    return fetchOk(info.points + "?format=binary", "buffer").then(function (buf) {
      var p = parsePoints(buf), t1 = performance.now();
      m = { xy: p.xy, count: p.count, bounds: info.bounds, buffer: gl.createBuffer() };
      gl.bindBuffer(gl.ARRAY_BUFFER, m.buffer);
      gl.bufferData(gl.ARRAY_BUFFER, p.xy, gl.STATIC_DRAW);
      m.grid = buildGrid(p.xy, p.count, info.bounds);
      maps[key] = m;
      if (!segments) { segments = p.seg; recolour(); }
      if (state.method === key) { current = m; fit(); schedule(); }
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
  function hover(ev) {
    if (!current || !ids) { return; }
    var rect = canvas.getBoundingClientRect(), p = toData(ev.clientX - rect.left, ev.clientY - rect.top);
    var i = nearest(current, p.x, p.y, (pointSize() / 2 + 4 * dpr) / view.ppu);
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

  var drag = null;
  canvas.addEventListener("pointerdown", function (ev) { drag = { x: ev.clientX, y: ev.clientY, moved: false }; canvas.setPointerCapture(ev.pointerId); });
  canvas.addEventListener("pointermove", function (ev) {
    if (drag) {
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) { drag.moved = true; }
      if (drag.moved) { panBy(dx, dy); drag.x = ev.clientX; drag.y = ev.clientY; hideTip(); return; }
    }
    hover(ev);
  });
  canvas.addEventListener("pointerup", function () {
    if (drag && !drag.moved) { select(state.hovered ? state.hovered.segment : state.highlighted); }
    drag = null;
  });
  canvas.addEventListener("pointerleave", hideTip);
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var rect = canvas.getBoundingClientRect(), sx = ev.clientX - rect.left, sy = ev.clientY - rect.top, before = toData(sx, sy);
    view.ppu *= Math.exp(-ev.deltaY * 0.0015);
    var after = toData(sx, sy);
    view.cx += before.x - after.x; view.cy += before.y - after.y;
    hideTip(); schedule();
  }, { passive: false });
  function panBy(dx, dy) { view.cx -= dx * dpr / view.ppu; view.cy += dy * dpr / view.ppu; schedule(); }
  document.getElementById("map-reset").addEventListener("click", function () { if (current) { fit(); schedule(); } });
  methodSel.addEventListener("change", function () { showMethod(methodSel.value).catch(function (e) { fail(String(e)); }); });
  colourSel.addEventListener("change", function () { setColour(colourSel.value).catch(function (e) { fail(String(e)); }); });
  if (window.ResizeObserver) { new ResizeObserver(resize).observe(canvas); } else { window.addEventListener("resize", resize); }

  state.screenPosition = function (i) { return toScreen(i); };
  state.indexOf = function (id) { return rowOf && rowOf.has(id) ? rowOf.get(id) : -1; };
  state.select = select;
  state.setMethod = function (key) { methodSel.value = key; return showMethod(key); };
  state.setColour = function (name) { colourSel.value = name; return setColour(name); };
  state.panBy = panBy;

  resize();
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
