// segscope point map: the WebGL drawing shared by the run page (map.js) and the movement
// page (movement.js). One draw call over a Float32Array of x,y pairs straight from the binary
// points endpoint, a colour per point, pan/zoom, and a uniform grid index for hover.
// window.SegscopePointMap(canvas, {onDraw, onHover, onLeave, onClick}) -> a map, or
// {error} when WebGL is off; SegscopePointMap.parse(arrayBuffer) reads the SGPT layout.
(function () {
  "use strict";
  var palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"];
  function segHex(s) { return s === 0 ? "#b8bcc6" : palette[(s - 1) % palette.length]; }
  function rgb(hex) { return [parseInt(hex.substr(1, 2), 16), parseInt(hex.substr(3, 2), 16), parseInt(hex.substr(5, 2), 16)]; }
  var littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  // Binary points: 24-byte header, count x,y f32 pairs, count segment ids (u16 or u32).
  function parse(buf) {
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
  function boundsOf(xy, n) {
    var b = { min_x: Infinity, min_y: Infinity, max_x: -Infinity, max_y: -Infinity };
    for (var i = 0; i < n; i++) {
      var x = xy[2 * i], y = xy[2 * i + 1];
      if (x < b.min_x) { b.min_x = x; } if (x > b.max_x) { b.max_x = x; }
      if (y < b.min_y) { b.min_y = y; } if (y > b.max_y) { b.max_y = y; }
    }
    if (!n) { b = { min_x: 0, min_y: 0, max_x: 1, max_y: 1 }; }
    return b;
  }

  // Uniform grid over data coordinates: points bucketed by cell (counting sort), so a hover
  // looks only at the few cells under the cursor.
  function buildGrid(xy, n, b) {
    var side = Math.max(16, Math.min(512, Math.ceil(Math.sqrt(n / 8))));
    var span = Math.max(b.max_x - b.min_x, b.max_y - b.min_y) || 1;
    var cs = span / side * 1.0001, gx = Math.max(1, Math.ceil((b.max_x - b.min_x) / cs) || 1), gy = Math.max(1, Math.ceil((b.max_y - b.min_y) / cs) || 1);
    var cellOf = new Uint32Array(n), start = new Uint32Array(gx * gy + 1), items = new Uint32Array(n), i;
    for (i = 0; i < n; i++) {
      var cx = Math.max(0, Math.min(gx - 1, Math.floor((xy[2 * i] - b.min_x) / cs))), cy = Math.max(0, Math.min(gy - 1, Math.floor((xy[2 * i + 1] - b.min_y) / cs)));
      cellOf[i] = cy * gx + cx; start[cellOf[i] + 1]++;
    }
    for (i = 0; i < gx * gy; i++) { start[i + 1] += start[i]; }
    var fill = start.slice(0, gx * gy);
    for (i = 0; i < n; i++) { items[fill[cellOf[i]]++] = i; }
    return { cs: cs, gx: gx, gy: gy, start: start, items: items, b: b };
  }
  function nearestIn(m, x, y, r) {
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

  function create(canvas, opts) {
    opts = opts || {};
    var gl = canvas.getContext("webgl", { antialias: false, preserveDrawingBuffer: true });
    if (!gl) { return { error: "This browser cannot draw the map (WebGL is off)." }; }
    function shader(type, source) { var s = gl.createShader(type); gl.shaderSource(s, source); gl.compileShader(s); return s; }
    var program = gl.createProgram();
    gl.attachShader(program, shader(gl.VERTEX_SHADER,
      "attribute vec2 a_pos; attribute vec4 a_col; uniform vec2 u_scale; uniform vec2 u_offset; uniform float u_size; varying vec4 v_col;" +
      "void main() { gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0); gl_PointSize = u_size; v_col = a_col; }"));
    gl.attachShader(program, shader(gl.FRAGMENT_SHADER,
      "precision mediump float; varying vec4 v_col; uniform float u_round;" +
      "void main() { vec2 d = gl_PointCoord - 0.5; if (u_round > 0.5 && dot(d, d) > 0.25) discard; gl_FragColor = vec4(v_col.rgb * v_col.a, v_col.a); }"));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) { return { error: "The map's shaders did not compile." }; }
    gl.useProgram(program);
    var loc = {
      pos: gl.getAttribLocation(program, "a_pos"), col: gl.getAttribLocation(program, "a_col"),
      scale: gl.getUniformLocation(program, "u_scale"), offset: gl.getUniformLocation(program, "u_offset"), size: gl.getUniformLocation(program, "u_size"), round: gl.getUniformLocation(program, "u_round")
    };
    var colourBuffer = gl.createBuffer();
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    var current = null, view = { cx: 0, cy: 0, ppu: 1 }, dpr = window.devicePixelRatio || 1;
    var map = { frames: 0, drawMs: null, pointsDrawn: 0, hovered: -1 };

    function pointSize() { var n = current ? current.count : 0; return (n > 50000 ? 2.5 : n > 5000 ? 4 : 7) * dpr; }
    function fit() {
      if (!current) { return; }
      var b = current.bounds, w = canvas.width, h = canvas.height;
      view.cx = (b.min_x + b.max_x) / 2; view.cy = (b.min_y + b.max_y) / 2;
      view.ppu = 0.92 * Math.min(w / ((b.max_x - b.min_x) || 1), h / ((b.max_y - b.min_y) || 1));
      schedule();
    }
    function toData(sx, sy) { return { x: view.cx + (sx * dpr - canvas.width / 2) / view.ppu, y: view.cy - (sy * dpr - canvas.height / 2) / view.ppu }; }
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
      map.pointsDrawn = current.count;
      map.frames++;
      map.drawMs = performance.now() - t0;
      if (opts.onDraw) { opts.onDraw(map); }
    }
    function resize() {
      var w = Math.round(canvas.clientWidth * dpr), h = Math.round(canvas.clientHeight * dpr);
      if (w === canvas.width && h === canvas.height) { return; }
      var scale = canvas.width ? Math.min(w / canvas.width, h / canvas.height) : 1;
      canvas.width = w; canvas.height = h;
      if (current) { view.ppu *= scale; schedule(); }
    }
    function panBy(dx, dy) { view.cx -= dx * dpr / view.ppu; view.cy += dy * dpr / view.ppu; schedule(); }

    // A layer: one set of points in a vertex buffer with its hover grid (bounds default to
    // the points' own).
    map.layer = function (points, bounds) {
      var b = bounds || boundsOf(points.xy, points.count), buffer = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.bufferData(gl.ARRAY_BUFFER, points.xy, gl.STATIC_DRAW);
      return { xy: points.xy, seg: points.seg, count: points.count, bounds: b, buffer: buffer, grid: buildGrid(points.xy, points.count, b) };
    };
    map.drop = function (layer) { if (layer && layer !== current) { gl.deleteBuffer(layer.buffer); } };
    // Shows `layer`; `frame` (bounds) keeps one view across layers (weeks), else fits it.
    map.show = function (layer, keepView) { current = layer; if (!keepView) { fit(); } schedule(); };
    map.current = function () { return current; };
    // Colours as RGBA bytes, 4 per point of the shown layer.
    map.colours = function (rgba) { gl.bindBuffer(gl.ARRAY_BUFFER, colourBuffer); gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.STATIC_DRAW); schedule(); };
    map.fit = fit;
    map.panBy = panBy;
    map.schedule = schedule;
    map.pointSize = pointSize;
    map.screenPosition = function (i) {
      var rect = canvas.getBoundingClientRect();
      return { x: rect.left + (canvas.width / 2 + (current.xy[2 * i] - view.cx) * view.ppu) / dpr, y: rect.top + (canvas.height / 2 - (current.xy[2 * i + 1] - view.cy) * view.ppu) / dpr };
    };
    // The point under the pointer (within a few pixels), or -1.
    map.nearest = function (clientX, clientY) {
      if (!current) { return -1; }
      var rect = canvas.getBoundingClientRect(), p = toData(clientX - rect.left, clientY - rect.top);
      return nearestIn(current, p.x, p.y, (pointSize() / 2 + 4 * dpr) / view.ppu);
    };

    var drag = null;
    canvas.addEventListener("pointerdown", function (ev) { drag = { x: ev.clientX, y: ev.clientY, moved: false }; canvas.setPointerCapture(ev.pointerId); });
    canvas.addEventListener("pointermove", function (ev) {
      if (drag) {
        var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 2) { drag.moved = true; }
        if (drag.moved) { panBy(dx, dy); drag.x = ev.clientX; drag.y = ev.clientY; if (opts.onLeave) { opts.onLeave(); } return; }
      }
      if (opts.onHover) { opts.onHover(ev, map.nearest(ev.clientX, ev.clientY)); }
    });
    canvas.addEventListener("pointerup", function () {
      if (drag && !drag.moved && opts.onClick) { opts.onClick(); }
      drag = null;
    });
    canvas.addEventListener("pointerleave", function () { if (opts.onLeave) { opts.onLeave(); } });
    canvas.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var rect = canvas.getBoundingClientRect(), sx = ev.clientX - rect.left, sy = ev.clientY - rect.top, before = toData(sx, sy);
      view.ppu *= Math.exp(-ev.deltaY * 0.0015);
      var after = toData(sx, sy);
      view.cx += before.x - after.x; view.cy += before.y - after.y;
      if (opts.onLeave) { opts.onLeave(); }
      schedule();
    }, { passive: false });
    if (window.ResizeObserver) { new ResizeObserver(resize).observe(canvas); } else { window.addEventListener("resize", resize); }
    resize();
    return map;
  }

  create.parse = parse;
  create.boundsOf = boundsOf;
  create.segHex = segHex;
  create.rgb = rgb;
  window.SegscopePointMap = create;
})();
