// Operator dashboard: renders window.NOWCAST_DATA (written by products.dashboard.render_site
// into data.js). No external libraries, no network access beyond this site's own files.
(function () {
  "use strict";

  var state = { data: null, frames: [], index: 0, timer: null, base: "", layer: "forecast" };
  var $ = function (id) { return document.getElementById(id); };

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // "2026-06-01T12:30:00Z" -> "2026-06-01 12:30 UTC" (the same text the maps show).
  function fmtTime(iso) {
    if (!iso) { return ""; }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return String(iso); }
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }

  function fmtLead(minutes) {
    if (minutes === null || minutes === undefined) { return ""; }
    return (minutes > 0 ? "+" : minutes < 0 ? "\u2212" : "\u00b1") + Math.abs(minutes) + " min";
  }

  function text(el, value) { el.textContent = value; }

  // "1 frame", "25 frames".
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function showFrame(i) {
    if (!state.frames.length) { return; }
    i = Math.max(0, Math.min(state.frames.length - 1, i));
    state.index = i;
    var f = state.frames[i];
    $("frame").src = state.base + f.image;
    $("slider").value = String(i);
    var kind = $("frame-kind");
    kind.className = f.kind;
    text(kind, f.kind === "forecast" ? "Forecast" : f.label && f.kind !== "observation" ? f.label : "Observed");
    text($("lead-time"), fmtLead(f.lead_time));
    text($("valid-time"), fmtTime(f.valid_time));
    var thumbs = $("strip").children;
    for (var k = 0; k < thumbs.length; k++) {
      thumbs[k].classList.toggle("current", k === i);
    }
  }

  function stop() {
    if (state.timer !== null) { clearInterval(state.timer); state.timer = null; }
    $("play").innerHTML = "&#9654; Play";
  }

  function play() {
    if (state.timer !== null) { stop(); return; }
    $("play").innerHTML = "&#10074;&#10074; Pause";
    state.timer = setInterval(function () {
      showFrame(state.index + 1 >= state.frames.length ? 0 : state.index + 1);
    }, 600);
  }

  // Frames of a layer: the observations, then the forecast frames of the deterministic
  // forecast ("forecast") or of one probability layer of an ensemble run (manifest.layers).
  // Rain-amount layers (manifest.accumulations) show their one map each.
  function allLayers(m) {
    var layers = (m.layers || []).slice();
    var acc = m.accumulations || [];
    if (acc.length && !layers.length) {
      layers.push({ id: "forecast", label: "Forecast", kind: "deterministic" });
    }
    return layers.concat(acc);
  }

  function layerFrames(m, id) {
    var frames = m.frames || [];
    var layer = null;
    allLayers(m).forEach(function (l) {
      if (l.id === id && (l.kind === "probability" || l.kind === "accumulation")) { layer = l; }
    });
    if (!layer) { return frames; }
    if (layer.kind === "accumulation") {
      return layer.frames.map(function (f) {
        return { kind: "accumulation", label: layer.label, valid_time: f.valid_time,
                 lead_time: f.lead_time, image: f.image };
      });
    }
    var byLead = {};
    layer.frames.forEach(function (f) { byLead[f.lead_time] = f; });
    return frames.map(function (f) {
      var p = f.kind === "forecast" ? byLead[f.lead_time] : null;
      if (!p) { return f; }
      return { kind: "probability", label: layer.label, valid_time: f.valid_time,
               lead_time: f.lead_time, image: p.image };
    });
  }

  function buildStrip() {
    var strip = $("strip");
    strip.innerHTML = "";
    state.frames.forEach(function (f, k) {
      var img = document.createElement("img");
      img.src = state.base + f.image;
      img.alt = f.kind + " " + fmtTime(f.valid_time);
      img.title = fmtLead(f.lead_time) + "  " + fmtTime(f.valid_time);
      img.className = f.kind;
      img.addEventListener("click", function () { stop(); showFrame(k); });
      strip.appendChild(img);
    });
  }

  function renderLayers(m) {
    var select = $("layer");
    var layers = allLayers(m);
    select.innerHTML = "";
    layers.forEach(function (l) {
      var o = document.createElement("option");
      o.value = l.id;
      o.textContent = l.label;
      select.appendChild(o);
    });
    var known = layers.some(function (l) { return l.id === state.layer; });
    if (!known) { state.layer = "forecast"; }
    select.value = state.layer;
    $("layer-box").hidden = layers.length === 0;
  }

  function switchLayer(id) {
    var latest = state.data && state.data.latest;
    if (!latest || !latest.manifest) { return; }
    state.layer = id;
    state.frames = layerFrames(latest.manifest, id);
    buildStrip();
    showFrame(state.index);
  }

  function renderRun(latest) {
    var info = $("run-info");
    if (!latest || !latest.manifest) {
      $("no-run").hidden = false;
      $("frame-box").hidden = true;
      $("controls").hidden = true;
      text(info, "no forecast yet");
      state.frames = [];
      return;
    }
    var m = latest.manifest;
    var first = state.frames.length === 0 || state.base !== latest.path + "/";
    state.base = latest.path + "/";
    renderLayers(m);
    state.frames = layerFrames(m, state.layer);
    $("no-run").hidden = true;
    $("frame-box").hidden = false;
    $("controls").hidden = false;
    var grid = m.grid ? " \u00b7 " + m.grid.x + " \u00d7 " + m.grid.y + " px" +
      (m.grid.pixel_km ? " (" + m.grid.pixel_km.toFixed(2) + " km)" : "") : "";
    var ens = m.ensemble ? " \u00b7 " + plural(m.ensemble.members, "member") : "";
    if (m.interpolated_inputs) { ens += " \u00b7 from interpolated frames " + m.interpolated_inputs; }
    text(info, "issued " + fmtTime(m.issue_time) + " \u00b7 model " + m.model + ens + grid +
      " \u00b7 " + plural(state.frames.length, "frame"));
    $("slider").max = String(Math.max(0, state.frames.length - 1));
    $("loop-link").href = state.base + m.loop;
    $("netcdf-link").href = state.base + m.netcdf;
    buildStrip();
    // Start on the last observation: the "now" of the run.
    var now = 0;
    state.frames.forEach(function (f, k) { if (f.kind === "observation") { now = k; } });
    showFrame(first ? now : Math.min(state.index, state.frames.length - 1));
  }

  // When verification starts (no scores yet) or who is next (data.verification, written
  // by products.dashboard.verification_schedule).
  function renderSchedule(when, started) {
    var el = $("scores-when");
    if (!when) { text(el, ""); return; }
    var lead = "+" + when.last_lead_min + " min";
    var issued = fmtTime(when.next_issue_time);
    var from = fmtTime(when.next_verified_from);
    text(el, started ?
      "Next to be verified: the run issued " + issued + ", from " + from +
        " (once the observations to " + lead + " are in)." :
      "A forecast is verified by the first forecast cycle (nowcast serve, replay) after " +
        "the observations for all its leads (to " + lead + ") have arrived: the first, " +
        "issued " + issued + ", from " + from + ".");
  }

  function renderScores(scores, chart, when) {
    var table = $("scores-table");
    table.innerHTML = "";
    var img = $("scores-chart");
    var started = !!(scores && scores.csi_mean);
    renderSchedule(when, started);
    $("scores-legend").hidden = true;
    if (!started) {
      $("scores-empty").hidden = false;
      img.hidden = true;
      return;
    }
    $("scores-empty").hidden = true;
    if (chart) { img.src = chart + "?v=" + encodeURIComponent(state.data.generated); }
    img.hidden = !chart;
    var head = table.createTHead().insertRow();
    var th = document.createElement("th");
    th.textContent = "mm/h \\ lead";
    head.appendChild(th);
    scores.lead_time.forEach(function (lead) {
      var c = document.createElement("th");
      c.textContent = lead + "'";
      head.appendChild(c);
    });
    var body = table.createTBody();
    var undefinedCsi = false;
    scores.thresholds_mmh.forEach(function (thr, i) {
      var row = body.insertRow();
      var c0 = row.insertCell();
      c0.textContent = "\u2265 " + thr;
      scores.csi_mean[i].forEach(function (v) {
        var c = row.insertCell();
        c.className = "num";
        c.textContent = v === null ? "\u2013" : v.toFixed(2);
        undefinedCsi = undefinedCsi || v === null;
      });
    });
    $("scores-legend").hidden = !undefinedCsi;
    var cap = table.createCaption();
    var n = scores.n_forecasts;
    cap.textContent = n === 1 ?
      "CSI of 1 forecast, issued " + fmtTime(scores.first_issue_time) :
      "mean CSI of " + n + " forecasts issued " + fmtTime(scores.first_issue_time) +
        " \u2013 " + fmtTime(scores.last_issue_time);
  }

  function renderStatus(status) {
    var body = $("status-table").tBodies[0];
    body.innerHTML = "";
    (status && status.runs ? status.runs : []).forEach(function (r) {
      var row = body.insertRow();
      row.className = "run-" + r.status;
      row.insertCell().textContent = fmtTime(r.issue_time);
      var badge = document.createElement("span");
      badge.className = "badge " + r.status;
      badge.textContent = r.status;
      row.insertCell().appendChild(badge);
      row.insertCell().textContent = r.reason || "";
    });
  }

  function render(data) {
    state.data = data;
    renderRun(data.latest);
    renderScores(data.scores, data.scores_chart, data.verification);
    renderStatus(data.status);
    text($("generated"), fmtTime(data.generated));
  }

  // Re-read data.js; re-render only when it changed.
  function refresh() {
    var s = document.createElement("script");
    s.src = "data.js?t=" + Date.now();
    s.onload = function () {
      var d = window.NOWCAST_DATA;
      if (d && (!state.data || d.generated !== state.data.generated)) {
        stop();
        render(d);
      }
      s.remove();
    };
    s.onerror = function () { s.remove(); };
    document.body.appendChild(s);
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("slider").addEventListener("input", function (e) {
      stop();
      showFrame(parseInt(e.target.value, 10));
    });
    $("play").addEventListener("click", play);
    $("layer").addEventListener("change", function (e) { switchLayer(e.target.value); });
    document.addEventListener("keydown", function (e) {
      if (e.target === $("slider") || e.target === $("layer")) { return; }
      if (e.key === "ArrowRight") { stop(); showFrame(state.index + 1); }
      if (e.key === "ArrowLeft") { stop(); showFrame(state.index - 1); }
      if (e.key === " ") { e.preventDefault(); play(); }
    });
    if (window.NOWCAST_DATA) {
      render(window.NOWCAST_DATA);
    } else {
      text($("run-info"), "data.js missing: run `nowcast dashboard SITE`");
    }
    // Poll for new runs every 60 s (``?refresh=SECONDS`` in the URL overrides it).
    var q = /[?&]refresh=([0-9.]+)/.exec(window.location.search);
    setInterval(refresh, q ? Math.max(0.5, parseFloat(q[1])) * 1000 : 60000);
  });
})();
