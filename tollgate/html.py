"""The HTML page of ``tollgate report --html report.html``: one file that opens offline anywhere.

:func:`render_report` turns the dict :func:`tollgate.ledger.summary.summarize` returns into a
self-contained page: the chart library, the page's CSS and JS and the data are all inline, and a
Content-Security-Policy forbids fetching anything else, so the file can be mailed, attached to a
ticket or opened on a train. The groups table is rendered here, escaped, with the same cells
``tollgate report`` prints (:func:`page_data` builds them with :func:`~tollgate.ledger.report.usd_cells`),
so it reads without JS; the charts are drawn in the browser from the already aggregated data,
so the page's weight and drawing time depend on the number of buckets, groups and models, not on
the ledger's size.

With ``refresh=URL`` the page polls that URL every 5 seconds for :func:`page_data` JSON (what a
live dashboard serves) and updates the totals, the table and the charts in place.

Why Chart.js (4.6.2, ``tollgate/assets/chart.umd.min.js``, the npm package's UMD build; its MIT
license, and that of the @kurkle/color it bundles, in ``assets/LICENSE-chart.js.txt``): it draws
every chart this page needs (stacked bars over time, horizontal bars by model and by token
kind, grouped bars) with legends and tooltips, on canvas, with no dependencies; it is MIT
licensed, widely used and released regularly (4.5.0 to 4.6.2 within 18 months); it needs no
``eval`` (so it runs under a strict CSP). It weighs 208 KB minified (70 KB gzipped): a typical
page is about 240 KB, 320 KB with 500 groups in the table. uPlot (51 KB) is smaller but draws
time series only: the by-model and by-kind bars would have been hand-written canvas code. To
update it: ``npm pack chart.js@4``, copy ``package/dist/chart.umd.min.js`` over the vendored
file and set :data:`CHART_JS_SHA256`.

>>> page = render_report({"ledger": "sqlite:///tollgate.db", "group_by": ["feature"],
...                       "total": {"calls": 1, "usd": 0.5}, "groups": [
...                           {"tags": {"feature": "</script>"}, "calls": 1, "usd": 0.5}]})
>>> page.startswith("<!DOCTYPE html>"), "&lt;/script&gt;" in page, page.count("</script>")
(True, True, 4)
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from tollgate.ledger.report import _HEADERS, COUNTERS, usd_cells

#: SHA-256 of the vendored ``assets/chart.umd.min.js`` (Chart.js 4.6.2 from npm), checked by the tests.
CHART_JS_SHA256 = "3f288f4f26882c26b58931fb586a9b4f30370b5de38d69dc005b0bd05b08e113"
#: How often a page given ``refresh=`` asks for fresh data.
REFRESH_SECONDS = 5
#: The charts the page draws, by canvas id; ``document.body.dataset.rendered`` counts those drawn
#: (a chart with nothing to show, e.g. no budget decisions, gives way to a line of text).
CHARTS = ("chart-spend-time", "chart-models", "chart-tokens", "chart-decisions", "chart-flagged")

#: The table always shows these columns; the other counters only when some call has them, as
#: ``tollgate report`` does.
_ALWAYS = {"calls", "input_tokens", "output_tokens", "usd"}


def render_report(
    summary: Mapping[str, Any],
    *,
    title: str = "tollgate report",
    refresh: str | None = None,
) -> str:
    """The report page for ``summary`` (what :func:`tollgate.ledger.summary.summarize` returns),
    as one HTML document with everything inline.

    ``title`` heads the page; ``refresh`` is a URL (absolute ``http(s)://`` or relative to the
    page) that serves :func:`page_data` JSON: the page then polls it every
    :data:`REFRESH_SECONDS` and updates itself in place. Missing keys in ``summary`` read as
    empty, so a partial summary still renders.

    >>> page = render_report({"total": {"calls": 3, "usd": 0.0125}}, title="Spend this week")
    >>> "<title>Spend this week</title>" in page, '<span id="total-usd">$0.012500</span>' in page
    (True, True)
    >>> render_report({}, refresh="javascript:alert(1)")
    Traceback (most recent call last):
    ...
    ValueError: refresh='javascript:alert(1)': give an http(s):// URL or a path relative to the page
    """
    data = page_data(summary)
    head = data["headline"]
    connect = _connect_source(refresh)
    csp = (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'"
    )
    e = _escape
    refresh_attr = f' data-refresh="{e(refresh)}" data-refresh-seconds="{REFRESH_SECONDS}"' if refresh else ""
    cards = "\n".join(
        f'<div class="card"><div class="label">{e(label)}</div>'
        f'<div class="value"><span id="total-{key}">{e(head[key])}</span></div>'
        f'<div class="sub" data-field="{key}-note">{e(head.get(key + "-note", ""))}</div></div>'
        for key, label in _CARDS
    )
    return _PAGE.format(
        title=e(title),
        csp=html.escape(csp, quote=False).replace('"', "&quot;"),  # keeps 'none' readable
        css=_asset("report.css"),
        error_trap=_ERROR_TRAP,
        refresh_attr=refresh_attr,
        cards=cards,
        period=e(head["period"]),
        ledger=e(head["ledger"]),
        filters=e(head["filters"]),
        table=_table_html(data["table"]),
        cache_saved=e(head["cache-saved"]),
        # the table is in the HTML already: its cells in the JSON too would double the page
        data=_script_json({key: value for key, value in data.items() if key != "table"}),
        chart_js=_asset("chart.umd.min.js"),
        report_js=_asset("report.js"),
    )


def page_data(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What the page shows, as JSON-ready data: the summary (its ``groups`` replaced by
    ``table``), the headline figures as the page prints them, and the table's cells, each as
    ``tollgate report`` prints it. A live page given ``refresh=URL`` expects this at the URL;
    :func:`render_report` inlines it without ``table``, whose cells are in the page's HTML.

    >>> data = page_data({"group_by": ["tenant"], "total": {"calls": 2, "usd": 0.000025},
    ...     "groups": [{"tags": {"tenant": "a"}, "calls": 1, "usd": 0.0000125},
    ...                {"tags": {"tenant": None}, "calls": 1, "usd": 0.0000125}]})
    >>> data["table"]["rows"]
    [['a', '1', '0', '0', '$0.0000125'], ['(none)', '1', '0', '0', '$0.0000125']]
    >>> data["headline"]["usd"], data["table"]["total"]
    ('$0.0000250', ['TOTAL', '2', '0', '0', '$0.0000250'])
    """
    table = _table(summary)
    plain = _plain({key: value for key, value in summary.items() if key != "groups"})
    return {"summary": plain, "headline": _headline(summary, table["total_usd"]), "table": table}


# -- the headline -------------------------------------------------------------------------------

#: Headline cards: the key of ``page_data(...)["headline"]`` (element ``#total-<key>``), the label.
_CARDS = (
    ("usd", "Spend"),
    ("calls", "Calls"),
    ("tokens", "Tokens"),
    ("blocked", "Blocked"),
    ("unpriced", "Unpriced"),
    ("estimated", "Estimated"),
)


def _headline(summary: Mapping[str, Any], total_usd: str) -> dict[str, str]:
    total = summary.get("total") or {}
    tokens = summary.get("tokens") or {}
    count = functools.partial(_count, total)
    errors = _int(total.get("errors"))
    unpriced = _int(total.get("unpriced_calls"))
    return {
        "usd": total_usd,
        "usd-note": f"leaves out {unpriced:,} unpriced call{'s' if unpriced != 1 else ''}"
        if unpriced
        else "",
        "calls": count("calls"),
        "calls-note": f"{errors:,} failed" if errors else "",
        "tokens": f"{_int(total.get('input_tokens')) + _int(total.get('output_tokens')):,}",
        "tokens-note": f"{count('input_tokens')} in, {count('output_tokens')} out",
        "blocked": count("blocked_calls"),
        "blocked-note": "stopped by a budget",
        "unpriced": count("unpriced_calls"),
        "unpriced-note": "no price: not in the spend",
        "estimated": count("estimated_calls"),
        "estimated-note": "usage estimated, not reported",
        "cache-saved": usd_cells([], _float(tokens.get("cache_saved_usd")))[1],
        "period": _period(summary),
        "ledger": str(summary.get("ledger") or "(unnamed ledger)"),
        "filters": _filters(summary),
    }


def _period(summary: Mapping[str, Any]) -> str:
    first, last = summary.get("first"), summary.get("last")
    if not first and not last:
        return "no calls"
    return f"{_when(first)} to {_when(last)}"


def _filters(summary: Mapping[str, Any]) -> str:
    parts = []
    if summary.get("since"):
        parts.append(f"since {_when(summary['since'])}")
    if summary.get("until"):
        parts.append(f"until {_when(summary['until'])}")
    for name, value in (summary.get("where") or {}).items():
        values = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        parts.append(f"{name}={'|'.join(str(v) for v in values)}")
    group_by = summary.get("group_by") or []
    if group_by:
        parts.append(f"grouped by {', '.join(str(n) for n in group_by)}")
    if summary.get("bucket"):
        parts.append(f"per {summary['bucket']}")
    return "; ".join(parts) or "all calls"


def _when(value: Any) -> str:
    """An ISO date-time as ``2024-05-01 14:00 UTC``; anything else as it is."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# -- the groups table ---------------------------------------------------------------------------


def _table(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The cells of ``str(Report)``: the columns it shows, its tag and count formatting, and its
    usd cells (which add up to the total as printed)."""
    group_by = [str(name) for name in summary.get("group_by") or []]
    total = summary.get("total") or {}
    # As Report.__str__: without group_by there are no rows, only the total.
    rows = list(summary.get("groups") or []) if group_by else []
    counters = [c for c in COUNTERS if c in _ALWAYS or total.get(c)]
    usd, total_usd = usd_cells([_float(row.get("usd")) for row in rows], _float(total.get("usd")))
    labels = group_by or [""]

    def cells(row: Mapping[str, Any], tags: list[str], row_usd: str) -> list[str]:
        return tags + [row_usd if c == "usd" else _count(row, c) for c in counters]

    body = [
        cells(row, [_tag(row.get("tags") or {}, name) for name in group_by], row_usd)
        for row, row_usd in zip(rows, usd, strict=True)
    ]
    unknown = total.get("unknown_usage") or {}
    note = (
        "usage fields tollgate does not know (cost may be short): "
        + ", ".join(f"{name} ({n:,} call{'s' if n != 1 else ''})" for name, n in sorted(unknown.items()))
        if unknown
        else None
    )
    return {
        "columns": labels + [_HEADERS[c] for c in counters],
        "labels": len(labels),
        "rows": body,
        "total": cells(total, ["TOTAL"] + [""] * (len(labels) - 1), total_usd),
        "total_usd": total_usd,
        "note": note,
    }


def _table_html(table: Mapping[str, Any]) -> str:
    labels = table["labels"]

    def row(cells: list[str], tag: str = "td") -> str:
        # the tag columns are marked, the counts and money (most cells) align right by default
        marked = [f'<{tag} class="tag">' if i < labels else f"<{tag}>" for i in range(len(cells))]
        return (
            "<tr>"
            + "".join(f"{start}{_escape(c)}</{tag}>" for start, c in zip(marked, cells, strict=True))
            + "</tr>"
        )

    note = f'<p class="note" id="groups-note">{_escape(table["note"])}</p>' if table["note"] else ""
    return (
        '<table id="groups">'
        f"<thead>{row(table['columns'], 'th')}</thead>"
        f"<tbody>{''.join(row(cells) for cells in table['rows'])}</tbody>"
        f"<tfoot>{row(table['total'])}</tfoot>"
        f"</table>{note}"
    )


def _tag(tags: Mapping[str, Any], name: str) -> str:
    value = tags.get(name)
    return "(none)" if value is None else str(value)


def _count(row: Mapping[str, Any], name: str) -> str:
    return f"{_int(row.get(name)):,}"


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _float(value: Any) -> float:
    try:
        number = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


# -- safe embedding -----------------------------------------------------------------------------


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: mappings as dicts, sequences as lists, NaN and infinities
    as null (``JSON.parse`` refuses them, and one bad number must not blank the page)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def _script_json(data: Any) -> str:
    """JSON for inside a ``<script>`` element: ``<``, ``>`` and ``&`` written as ``\\u`` escapes,
    so no tag value can close the element (they only occur inside JSON strings, where the
    escapes read back as the same characters)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_SCRIPT_SAFE)


_SCRIPT_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)

_SAFE_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def _connect_source(refresh: str | None) -> str:
    """The CSP ``connect-src`` that lets the page fetch ``refresh`` and nothing else."""
    if refresh is None:
        return "'none'"
    parts = urlsplit(refresh)
    fix = "give an http(s):// URL or a path relative to the page"
    if not refresh or not _SAFE_URL.fullmatch(refresh) or parts.scheme not in ("", "http", "https"):
        raise ValueError(f"refresh={refresh!r}: {fix}")
    if parts.scheme:
        if not parts.netloc:
            raise ValueError(f"refresh={refresh!r}: {fix}")
        return f"{parts.scheme}://{parts.netloc}"
    return "'self'"


@functools.cache
def _asset(name: str) -> str:
    text = (resources.files("tollgate") / "assets" / name).read_text(encoding="utf-8")
    if "</script" in text.lower() or "<!--" in text:  # would end the inline <script> early
        raise RuntimeError(f"tollgate/assets/{name} cannot be inlined in a <script>")
    if name == "chart.umd.min.js" and hashlib.sha256(text.encode()).hexdigest() != CHART_JS_SHA256:
        raise RuntimeError(f"tollgate/assets/{name} is not the vendored Chart.js build")
    return text


#: Collects JS errors and CSP refusals into ``<html data-js-errors="[...]">``, before anything
#: else runs, so a test (or a curious user) can see why a chart is missing.
_ERROR_TRAP = """(function () {
  var errors = [];
  function note(text) {
    errors.push(String(text));
    document.documentElement.setAttribute("data-js-errors", JSON.stringify(errors));
  }
  window.addEventListener("error", function (e) { note(e.message || "error"); });
  window.addEventListener("unhandledrejection", function (e) {
    note("unhandled rejection: " + (e.reason && e.reason.message ? e.reason.message : e.reason));
  });
  document.addEventListener("securitypolicyviolation", function (e) {
    note("blocked by the page's policy: " + e.violatedDirective + " " + e.blockedURI);
  });
})();"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tollgate">
<title>{title}</title>
<script>{error_trap}</script>
<style>{css}</style>
</head>
<body{refresh_attr}>
<header>
<h1>{title}</h1>
<p class="meta"><span id="period">{period}</span> &middot; <span id="ledger">{ledger}</span></p>
<p class="meta filters" id="filters">{filters}</p>
<p class="meta status" id="status" hidden></p>
</header>
<main>
<section class="cards">
{cards}
</section>
<section>
<h2>Spend over time</h2>
<div class="chart-box tall">
<canvas id="chart-spend-time" role="img" aria-label="Spend over time"></canvas></div>
<p class="empty" hidden>No calls in this period.</p>
</section>
<section>
<h2>Top groups</h2>
<div class="table-box" id="groups-box">{table}</div>
</section>
<div class="pair">
<section>
<h2>Spend by model</h2>
<div class="chart-box"><canvas id="chart-models" role="img" aria-label="Spend by model"></canvas></div>
<p class="empty" hidden>No calls in this period.</p>
</section>
<section>
<h2>Tokens by kind</h2>
<div class="chart-box"><canvas id="chart-tokens" role="img" aria-label="Tokens by kind"></canvas></div>
<p class="empty" hidden>No tokens in this period.</p>
<p class="note">Cache reads saved <span id="total-cache-saved">{cache_saved}</span>.</p>
</section>
</div>
<div class="pair">
<section>
<h2>Budget decisions over time</h2>
<div class="chart-box">
<canvas id="chart-decisions" role="img" aria-label="Budget decisions over time"></canvas></div>
<p class="empty" hidden>No budget decisions: nothing was blocked, downgraded, clamped, truncated,
cut off or rate limited.</p>
</section>
<section>
<h2>Estimated and unpriced calls</h2>
<div class="chart-box">
<canvas id="chart-flagged" role="img" aria-label="Estimated and unpriced calls by model">
</canvas></div>
<p class="empty" hidden>Every call reported its usage and had a price.</p>
<p class="note">Estimated: the provider reported no usage, tollgate counted the tokens.
Unpriced: no price for the model, so the spend leaves them out.</p>
</section>
</div>
</main>
<footer>Made by tollgate. Charts by Chart.js (MIT). Times in UTC.</footer>
<script type="application/json" id="tollgate-data">{data}</script>
<script>{chart_js}</script>
<script>{report_js}</script>
</body>
</html>
"""
