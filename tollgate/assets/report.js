/* The page of tollgate/html.py (inlined there): draws the charts from the inlined page data,
 * writes the headline figures, and with data-refresh on <body> polls that URL for fresh page
 * data (tollgate.html.page_data) and updates everything in place. Text from the data only ever
 * reaches the DOM through textContent, and the charts draw it on canvas. */
(function () {
  "use strict";

  var PALETTE = [
    "#2f6fdb", "#e8833a", "#3aa56b", "#d64550", "#8a5cc9",
    "#2fa8b8", "#c9a227", "#7f8a99", "#d16fb4", "#5a7d2a"
  ];
  var DECISIONS = [
    ["blocked", "blocked", "#d64550"],
    ["downgraded", "downgraded", "#e8833a"],
    ["clamped", "clamped", "#c9a227"],
    ["truncated", "truncated", "#8a5cc9"],
    ["cutoff", "cut off", "#2fa8b8"],
    ["rate_limited", "rate limited", "#7f8a99"]
  ];
  var TOKEN_KINDS = [
    ["uncached_input", "uncached input"],
    ["cache_read", "cache reads"],
    ["cache_write", "cache writes"],
    ["output", "output"],
    ["reasoning", "reasoning"]
  ];
  var charts = {};
  var bucket = "day";

  function num(v) {
    var n = Number(v);
    return isFinite(n) ? n : 0;
  }

  function money(v) {
    var n = num(v);
    if (n === 0) return "$0";
    var a = Math.abs(n);
    var digits = a >= 100 ? 0 : a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
    return (n < 0 ? "-$" : "$") + a.toLocaleString("en-US", {
      minimumFractionDigits: digits, maximumFractionDigits: digits
    });
  }

  function count(v) {
    return Math.round(num(v)).toLocaleString("en-US");
  }

  /* Axis labels: short ("$0.25", "1.2M"); tooltips give the full figure. */
  var COMPACT = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

  function moneyTick(v) {
    var n = num(v);
    if (Math.abs(n) >= 1000) return "$" + COMPACT.format(n);
    return "$" + n.toLocaleString("en-US", { maximumFractionDigits: Math.abs(n) >= 1 ? 2 : 6 });
  }

  function countTick(v) {
    return COMPACT.format(num(v));
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function when(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    var day = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
    return bucket === "hour" ? day + " " + pad(d.getUTCHours()) + ":00" : day;
  }

  function list(v) {
    return Array.isArray(v) ? v : [];
  }

  function any(values) {
    return values.some(function (v) { return num(v) !== 0; });
  }

  function barOptions(opts) {
    var valueAxis = opts.horizontal ? "x" : "y";
    var format = opts.money ? money : count;
    var tick = opts.money ? moneyTick : countTick;
    var scales = { x: { stacked: !!opts.stacked }, y: { stacked: !!opts.stacked } };
    scales[valueAxis].beginAtZero = true;
    scales[valueAxis].ticks = { maxTicksLimit: 7, maxRotation: 0, callback: function (v) { return tick(v); } };
    if (!opts.money) scales[valueAxis].ticks.precision = 0;  // calls and tokens come whole
    if (opts.horizontal) {
      scales.y.ticks = {
        callback: function (v) {
          var label = String(this.getLabelForValue(v));
          return label.length > 28 ? label.slice(0, 27) + "\u2026" : label;
        }
      };
    }
    return {
      indexAxis: opts.horizontal ? "y" : "x",
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: scales,
      plugins: {
        legend: { display: !!opts.legend, position: "bottom" },
        tooltip: {
          callbacks: {
            label: function (ctx) {
              var v = opts.horizontal ? ctx.parsed.x : ctx.parsed.y;
              return (ctx.dataset.label ? ctx.dataset.label + ": " : "") + format(v);
            }
          }
        }
      }
    };
  }

  /* Each chart: its canvas id and a function of the summary giving its Chart.js config, or
   * null when it has nothing to show. */
  var CHARTS = [
    ["chart-spend-time", function (s) {
      var t = s.over_time || {};
      var buckets = list(t.buckets), series = list(t.series);
      if (!buckets.length || !series.length) return null;
      return {
        type: "bar",
        data: {
          labels: buckets.map(when),
          datasets: series.map(function (x, i) {
            return {
              label: x.name === null || x.name === undefined ? "(none)" : String(x.name),
              data: list(x.usd).map(num),
              backgroundColor: PALETTE[i % PALETTE.length]
            };
          })
        },
        options: barOptions({ money: true, stacked: true, legend: true })
      };
    }],
    ["chart-models", function (s) {
      var models = list(s.models);
      if (!models.length) return null;
      return {
        type: "bar",
        data: {
          labels: models.map(function (m) { return String(m.model); }),
          datasets: [{ label: "spend", data: models.map(function (m) { return num(m.usd); }),
                       backgroundColor: PALETTE[0] }]
        },
        options: barOptions({ money: true, horizontal: true }),
        rows: models.length
      };
    }],
    ["chart-tokens", function (s) {
      var t = s.tokens || {};
      var values = TOKEN_KINDS.map(function (k) { return num(t[k[0]]); });
      if (!any(values)) return null;
      return {
        type: "bar",
        data: {
          labels: TOKEN_KINDS.map(function (k) { return k[1]; }),
          datasets: [{ label: "tokens", data: values, backgroundColor: PALETTE.slice(0, values.length) }]
        },
        options: barOptions({ horizontal: true })
      };
    }],
    ["chart-decisions", function (s) {
      var d = s.decisions || {};
      var series = d.series || {};
      var buckets = list(d.buckets);
      var shown = DECISIONS.filter(function (k) { return any(list(series[k[0]])); });
      if (!buckets.length || !shown.length) return null;
      return {
        type: "bar",
        data: {
          labels: buckets.map(when),
          datasets: shown.map(function (k) {
            return { label: k[1], data: list(series[k[0]]).map(num), backgroundColor: k[2] };
          })
        },
        options: barOptions({ stacked: true, legend: true })
      };
    }],
    ["chart-flagged", function (s) {
      var f = s.flagged || {};
      var names = [], estimated = {}, unpriced = {};
      function add(rows, into) {
        list(rows).forEach(function (r) {
          var name = String(r.model);
          if (names.indexOf(name) < 0) names.push(name);
          into[name] = num(r.calls);
        });
      }
      add(f.unpriced_models, unpriced);
      add(f.estimated_models, estimated);
      if (!names.length) return null;
      return {
        type: "bar",
        data: {
          labels: names,
          datasets: [
            { label: "unpriced calls", data: names.map(function (n) { return unpriced[n] || 0; }),
              backgroundColor: "#d64550" },
            { label: "estimated calls", data: names.map(function (n) { return estimated[n] || 0; }),
              backgroundColor: "#c9a227" }
          ]
        },
        options: barOptions({ horizontal: true, legend: true }),
        rows: names.length
      };
    }]
  ];

  function draw(id, config) {
    var canvas = document.getElementById(id);
    var section = canvas.closest("section");
    var box = canvas.parentNode;
    var empty = section.querySelector(".empty");
    var chart = charts[id];
    if (!config) {
      if (chart) chart.destroy();
      delete charts[id];
      box.hidden = true;
      if (empty) empty.hidden = false;
      return false;
    }
    box.hidden = false;
    if (empty) empty.hidden = true;
    if (config.rows) {  // horizontal bars: room for every label
      box.style.height = Math.max(160, Math.min(900, 28 * config.rows + 60)) + "px";
    }
    if (chart) {
      chart.data = config.data;
      chart.options = config.options;
      chart.update("none");
    } else {
      charts[id] = new Chart(canvas, { type: config.type, data: config.data, options: config.options });
    }
    return true;
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function setHeadline(head) {
    Object.keys(head || {}).forEach(function (key) {
      setText(document.getElementById("total-" + key), String(head[key]));
      setText(document.querySelector('[data-field="' + key + '"]'), String(head[key]));
    });
    setText(document.getElementById("period"), String(head.period || ""));
    setText(document.getElementById("ledger"), String(head.ledger || ""));
    setText(document.getElementById("filters"), String(head.filters || ""));
  }

  function setTable(table) {
    var labels = table.labels;
    function row(cells, tag) {
      var tr = document.createElement("tr");
      list(cells).forEach(function (cell, i) {
        var td = document.createElement(tag);
        if (i < labels) td.className = "tag";
        td.textContent = String(cell);
        tr.appendChild(td);
      });
      return tr;
    }
    var t = document.createElement("table");
    t.id = "groups";
    t.createTHead().appendChild(row(table.columns, "th"));
    var body = t.createTBody();
    list(table.rows).forEach(function (cells) { body.appendChild(row(cells, "td")); });
    t.createTFoot().appendChild(row(table.total, "td"));
    var box = document.getElementById("groups-box");
    box.replaceChildren(t);
    if (table.note) {
      var p = document.createElement("p");
      p.className = "note";
      p.id = "groups-note";
      p.textContent = String(table.note);
      box.appendChild(p);
    }
  }

  function render(data, fresh) {
    var summary = data.summary || {};
    bucket = summary.bucket === "hour" ? "hour" : "day";
    setHeadline(data.headline);
    if (fresh && data.table) setTable(data.table);
    var drawn = 0;
    CHARTS.forEach(function (c) {
      if (draw(c[0], c[1](summary))) drawn += 1;
    });
    document.body.dataset.rendered = String(drawn);
  }

  function status(text) {
    var el = document.getElementById("status");
    el.hidden = !text;
    setText(el, text);
  }

  function poll(url, seconds) {
    var done = 0;
    function next() { window.setTimeout(once, seconds * 1000); }
    function once() {
      window.fetch(url, { cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          if (!data || typeof data.summary !== "object" || !data.headline) {
            throw new Error("not tollgate page data (serve tollgate.html.page_data(summary))");
          }
          render(data, true);
          done += 1;
          document.body.dataset.refreshes = String(done);
          status("");
        })
        .catch(function (err) {
          status("Could not refresh from " + url + ": " + err.message + "; trying again in " + seconds + " s.");
        })
        .then(next);
    }
    next();
  }

  Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
  Chart.defaults.color = "#5f6b7a";
  render(JSON.parse(document.getElementById("tollgate-data").textContent), false);
  var url = document.body.dataset.refresh;
  if (url) poll(url, num(document.body.dataset.refreshSeconds) || 5);
})();
