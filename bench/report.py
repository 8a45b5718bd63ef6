#!/usr/bin/env python3
"""Writes bench/REPORT.md and its SVG charts from the runs of ``bench/report``.

Run by ``bench/report``, which passes everything through the environment:
``REPORT_TSV`` (every run, one row each), ``REPORT_MD``, ``REPORT_CHART_DIR`` and the
machine description (``REPORT_DATE``, ``REPORT_COMMIT``, ``REPORT_CPU``,
``REPORT_CORES``, ``REPORT_KERNEL``, ``REPORT_MEMORY``, ``REPORT_SETUP``,
``REPORT_PYTHON``, ``REPORT_SKIPPED``), and the files of ``bench/proxy.sh``'s run for the
Proxy section (``REPORT_PROXY_TSV``: every run; ``REPORT_PROXY_TABLE``: its table, whose
slowsink-c100 summary gives the memory figures; both unset or empty: no Proxy section), and
the tables bench/tls.sh and bench/http.sh printed (``REPORT_TLS_TABLE``,
``REPORT_HTTP_TABLE``: paths; unset or empty: no such section).
Figures are medians over the repetitions; ratios
are of medians, to raw mio's median in the same scenario. Charts are drawn with
matplotlib when it can be imported (and ``REPORT_PLAIN_SVG`` is not set), else with
the small SVG writer below (no dependency).
"""

import csv
import os
import re
import statistics
import sys
from html import escape

SERVER_ORDER = ["raw-mio", "torsion", "tokio", "asyncio", "uvloop", "twisted"]
SERVER_DESC = {
    "raw-mio": "hand-written mio loop (`raw-mio-echo`; UDP: `raw-mio-udp-echo`): the reference",
    "torsion": "torsion's `echo-server` example (UDP: `udp-echo`)",
    "tokio": "tokio `current_thread`, a task per connection (`tokio-echo`)",
    "asyncio": "`asyncio.Protocol`, default event loop (`bench/asyncio_echo.py`; UDP: `bench/asyncio_udp_echo.py`)",
    "uvloop": "the same protocol on uvloop (`bench/asyncio_echo.py --uvloop`)",
    "twisted": "Twisted `Protocol`, default reactor (`bench/twisted_echo.py`)",
}
PINGPONG = ["pp64-c100", "pp64-c1000", "unix-pp64-c100", "udp-pp64"]
STREAM = ["stream64k-c10", "unix-stream64k-c10"]
HIGHLIGHT = "torsion"
COLORS = {
    "raw-mio": "#7f7f7f",
    "torsion": "#d62728",
    "tokio": "#8c9fca",
    "asyncio": "#9ecae1",
    "uvloop": "#6baed6",
    "twisted": "#c7b07a",
}
CHART_DIR_REL = "report-charts"


def fnum(value):
    """The cell's figure as a float, or None for "na" and empty cells."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def load(path):
    """Groups the runs by (server, scenario): {key: {column: [figures]}}, and the order."""
    runs, scenarios = {}, []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            key = (row["server"], row["scenario"])
            if row["scenario"] not in scenarios:
                scenarios.append(row["scenario"])
            cols = runs.setdefault(key, {"mode": row["mode"]})
            for name, value in row.items():
                if name not in ("rep", "server", "scenario", "mode"):
                    cols.setdefault(name, []).append(fnum(value))
    return runs, scenarios


def med(runs, key, col):
    figures = [v for v in runs.get(key, {}).get(col, []) if v is not None]
    return statistics.median(figures) if figures else None


def spread(runs, key, col):
    figures = [v for v in runs.get(key, {}).get(col, []) if v is not None]
    return (min(figures), max(figures)) if figures else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, pattern="{:.2f}", none="-"):
    return none if value is None else pattern.format(value)


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- Charts ------------------------------------------------------------------------


def panel(title, ylabel, groups, values, labels, ref=None, ref_label=""):
    """One chart panel: bars grouped by `groups`, one bar per server present."""
    series = [s for s in SERVER_ORDER if any(values.get((g, s)) is not None for g in groups)]
    return {"title": title, "ylabel": ylabel, "groups": groups, "series": series,
            "values": values, "labels": labels, "ref": ref, "ref_label": ref_label}


def draw_matplotlib(path, heading, panels):
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    matplotlib.rcParams["svg.hashsalt"] = "torsion-bench"
    matplotlib.rcParams["svg.fonttype"] = "none"
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 4.3 * len(panels)), squeeze=False)
    for ax, p in zip(axes[:, 0], panels):
        n = max(len(p["series"]), 1)
        width = 0.8 / n
        for i, server in enumerate(p["series"]):
            xs, hs, texts = [], [], []
            for gi, group in enumerate(p["groups"]):
                value = p["values"].get((group, server))
                if value is None:
                    continue
                xs.append(gi - 0.4 + width * (i + 0.5))
                hs.append(value)
                texts.append(p["labels"].get((group, server), ""))
            bold = server == HIGHLIGHT
            bars = ax.bar(xs, hs, width * 0.92, color=COLORS.get(server, "#999999"),
                          edgecolor="black" if bold else "none", linewidth=1.5 if bold else 0,
                          label=server + (" (this project)" if bold else ""), zorder=3)
            for bar, text in zip(bars, texts):
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                            fontsize=7, fontweight="bold" if bold else "normal", rotation=90 if n > 4 else 0)
        if p["ref"] is not None:
            ax.axhline(p["ref"], color="black", linestyle="--", linewidth=1, zorder=4)
            ax.annotate(p["ref_label"], (len(p["groups"]) - 0.5, p["ref"]), xytext=(-2, 3),
                        textcoords="offset points", ha="right", va="bottom", fontsize=8)
        ax.set_xticks(range(len(p["groups"])))
        ax.set_xticklabels(p["groups"])
        ax.set_xlim(-0.5, len(p["groups"]) - 0.5)
        top = max([v for v in p["values"].values() if v is not None] + [p["ref"] or 0, 1e-9])
        ax.set_ylim(0, top * 1.25)
        ax.set_ylabel(p["ylabel"])
        ax.set_title(p["title"], fontsize=10)
        ax.grid(axis="y", color="#dddddd", zorder=0)
        ax.legend(fontsize=8, ncol=min(n, 6), loc="upper left")
    fig.suptitle(heading, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def draw_plain_svg(path, heading, panels):
    """The fallback: the same grouped bars, written as SVG by hand."""
    width, ph, top_margin = 900, 330, 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{top_margin + ph * len(panels)}" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="16">{escape(heading)}</text>']
    for k, p in enumerate(panels):
        y0 = top_margin + k * ph
        left, right, plot_top, plot_h = 70, width - 20, y0 + 40, ph - 110
        base = plot_top + plot_h
        out.append(f'<text x="{width / 2}" y="{y0 + 20}" text-anchor="middle" font-size="13">'
                   f'{escape(p["title"])}</text>')
        out.append(f'<text x="15" y="{plot_top + plot_h / 2}" font-size="11" '
                   f'transform="rotate(-90 15 {plot_top + plot_h / 2})" text-anchor="middle">'
                   f'{escape(p["ylabel"])}</text>')
        top = max([v for v in p["values"].values() if v is not None] + [p["ref"] or 0, 1e-9]) * 1.2
        out.append(f'<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="black"/>')
        gw = (right - left) / max(len(p["groups"]), 1)
        n = max(len(p["series"]), 1)
        bw = gw * 0.8 / n
        for gi, group in enumerate(p["groups"]):
            gx = left + gi * gw
            out.append(f'<text x="{gx + gw / 2}" y="{base + 16}" text-anchor="middle" '
                       f'font-size="12">{escape(group)}</text>')
            for i, server in enumerate(p["series"]):
                value = p["values"].get((group, server))
                if value is None:
                    continue
                h = plot_h * value / top
                x = gx + gw * 0.1 + i * bw
                bold = server == HIGHLIGHT
                stroke = ' stroke="black" stroke-width="2"' if bold else ""
                out.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bw * 0.92:.1f}" '
                           f'height="{h:.1f}" fill="{COLORS.get(server, "#999")}"{stroke}/>')
                weight = ' font-weight="bold"' if bold else ""
                out.append(f'<text x="{x + bw * 0.46:.1f}" y="{base - h - 3:.1f}" text-anchor="middle" '
                           f'font-size="9"{weight}>{escape(p["labels"].get((group, server), ""))}</text>')
        if p["ref"] is not None:
            ry = base - plot_h * p["ref"] / top
            out.append(f'<line x1="{left}" y1="{ry:.1f}" x2="{right}" y2="{ry:.1f}" stroke="black" '
                       f'stroke-dasharray="6 4"/>')
            out.append(f'<text x="{right}" y="{ry - 4:.1f}" text-anchor="end" font-size="11">'
                       f'{escape(p["ref_label"])}</text>')
        lx = left
        for server in p["series"]:
            bold = server == HIGHLIGHT
            name = server + (" (this project)" if bold else "")
            stroke = ' stroke="black" stroke-width="2"' if bold else ""
            out.append(f'<rect x="{lx}" y="{base + 30}" width="12" height="12" '
                       f'fill="{COLORS.get(server, "#999")}"{stroke}/>')
            out.append(f'<text x="{lx + 16}" y="{base + 41}" font-size="11">{escape(name)}</text>')
            lx += 30 + 7 * len(name)
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(out) + "\n")


def draw(path, heading, panels):
    panels = [p for p in panels if p["series"]]
    if not panels:
        return None
    try:
        if os.environ.get("REPORT_PLAIN_SVG"):
            raise ImportError("REPORT_PLAIN_SVG is set")
        draw_matplotlib(path, heading, panels)
        return "matplotlib"
    except ImportError:
        draw_plain_svg(path, heading, panels)
        return "built-in SVG writer"


# --- The proxy section (bench/proxy.sh's files) --------------------------------------

PROXY_SCENARIOS = ["stream64k-c10", "pp64-c100"]
# Lines of proxy.sh's slowsink-c100 summary: (key, regular expression); MiB figures.
PROXY_MEMORY_LINES = [
    ("peak", r"^\s*proxy peak RSS\s+([0-9.]+) MiB"),
    ("empty", r"^\s*proxy RSS, no connections\s+([0-9.]+) MiB"),
    ("pairs", r"^\s*proxy RSS, idle pairs\s+([0-9.]+) MiB\s+\((\d+) pairs connected"),
    ("growth", r"^\s*growth in the flood\s+([0-9.]+) MiB\s+\(peak minus ([a-z ]+): .* ([0-9.]+)x the bound\)"),
    ("bound", r"^\s*bound on the buffers\s+([0-9.]+) MiB\s+\((\d+) pairs x \((\d+) KiB high mark "
              r"\+ (\d+) KiB read\), client->backend; both ways ([0-9.]+) MiB\)"),
    ("last", r"^\s*RSS in the last 1 s\s+([0-9.]+|na) MiB"),
    ("cpu", r"^\s*proxy CPU\s+([0-9.]+) %"),
    ("flood", r"^slowsink-c100: .* for ([0-9.]+) s, the backend reads (\d+) KiB per connection every (\d+) ms"),
]


def load_proxy(path):
    """proxy.sh's .tsv grouped by (scenario, path): {key: {column: [figures]}}."""
    runs = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            cols = runs.setdefault((row["scenario"], row["path"]), {"mode": row["mode"]})
            for name, value in row.items():
                if name not in ("scenario", "path", "mode", "rep"):
                    cols.setdefault(name, []).append(fnum(value))
    return runs


def load_proxy_memory(path):
    """The slowsink-c100 figures of proxy.sh's table: {key: (groups...)}; {} if absent."""
    found = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            for key, pattern in PROXY_MEMORY_LINES:
                match = re.match(pattern, line)
                if match and key not in found:
                    found[key] = match.groups()
    return found


def proxy_section(table_path, tsv_path):
    """The Proxy section's lines and its two tables (throughput/CPU, memory)."""
    md = ["", "## Proxy", "",
          "torsion's `proxy` example measured by `bench/proxy.sh` in the same run: each throughput "
          "scenario runs the echo server directly (pinned to the server CPU, as above), then through "
          "the proxy (the proxy on the server CPU, its backend echo server sharing the load "
          "generator's CPU). Throughput ratio: through the proxy / direct (**higher is better**; "
          "1.00x = the proxy costs no throughput). CPU ratio: the proxy's CPU per MB or per message "
          "/ the direct echo server's (**lower is better**); the proxy moves every byte twice (in "
          "from the client and out to the backend, and back), so 2.00x would be the same cost per "
          "byte moved as echoing it. The last column adds the backend's CPU to the proxy's. Medians "
          "of the repetitions, throughput with their range in brackets: a wide range means other "
          "work on the machine starved some runs (their load generator got well under a full core, "
          "`loadgen_cpu_pct` in proxy.sh's .tsv), which moves throughput far more than CPU per unit."]
    rows, throughput_table = [], None
    runs = load_proxy(tsv_path) if tsv_path and os.path.exists(tsv_path) else {}
    for scn in PROXY_SCENARIOS:
        direct, proxied = runs.get((scn, "direct")), runs.get((scn, "proxy"))
        if not direct or not proxied:
            continue
        stream = direct["mode"] == "stream"
        unit = "us/MB" if stream else "us/msg"
        rate_fmt = "{:.1f} MB/s" if stream else "{:.0f} msg/s"

        def m(key, col, path_runs=runs):
            figures = [v for v in path_runs[key].get(col, []) if v is not None]
            return statistics.median(figures) if figures else None

        d_rate, p_rate = m((scn, "direct"), "rate"), m((scn, "proxy"), "rate")
        d_cpu = m((scn, "direct"), "echo_cpu_per_unit")
        p_cpu = m((scn, "proxy"), "proxy_cpu_per_unit")
        b_cpu = m((scn, "proxy"), "echo_cpu_per_unit")
        total = p_cpu + b_cpu if p_cpu is not None and b_cpu is not None else None
        n = min(len([v for v in direct.get("rate", []) if v is not None]),
                len([v for v in proxied.get("rate", []) if v is not None]))
        def rng(key, col, pattern):
            figures = [v for v in runs[key].get(col, []) if v is not None]
            if len(figures) < 2:
                return ""
            return " [" + pattern.format(min(figures)) + "-" + pattern.format(max(figures)) + "]"

        rng_fmt = "{:.0f}"
        rows.append([scn, fmt(d_rate, rate_fmt) + rng((scn, "direct"), "rate", rng_fmt),
                     fmt(p_rate, rate_fmt) + rng((scn, "proxy"), "rate", rng_fmt),
                     f"**{fmt_ratio(ratio(p_rate, d_rate))}**",
                     fmt(d_cpu, "{:.2f} " + unit), fmt(p_cpu, "{:.2f} " + unit),
                     f"**{fmt_ratio(ratio(p_cpu, d_cpu))}**", fmt_ratio(ratio(total, d_cpu)),
                     fmt(m((scn, "proxy"), "proxy_cpu_pct"), "{:.0f}"), str(n)])
    md.append("")
    if rows:
        md.append(table(["scenario", "direct echo", "through the proxy", "throughput proxy/direct",
                         "direct echo CPU", "proxy CPU", "CPU proxy/direct", "proxy + backend / direct",
                         "proxy CPU %", "runs"], rows))
        throughput_table = md[-1]
    else:
        md.append("No throughput runs of the proxy were recorded (see the skipped list).")

    mem = load_proxy_memory(table_path) if table_path and os.path.exists(table_path) else {}
    memory_table = None
    md += ["", "### Proxy memory in front of a slow sink (slowsink-c100)", ""]
    if "peak" in mem and "bound" in mem:
        flood = mem.get("flood")
        bound, pairs, high, rbuf, both = mem["bound"]
        md.append(
            f"The proxy forwards {pairs} connections to `slow-sink`"
            + (f", which reads only {flood[1]} KiB per connection every {flood[2]} ms, while "
               f"`loadgen flood` writes 64 KiB blocks to all of them for {flood[0]} s" if flood else "")
            + " (after holding them open, idle, for 1 s). The proxy's RSS is sampled every 0.1 s. "
            f"Its buffers should stay within the bound: per pair and direction at most the high "
            f"watermark plus one read ({high} KiB + {rbuf} KiB), {pairs} pairs x {int(high) + int(rbuf)} "
            f"KiB = {bound} MiB client->backend ({both} MiB both ways). The growth in the flood (peak "
            f"minus the RSS with {mem['growth'][1] if 'growth' in mem else 'idle pairs'}) is what the "
            "bound applies to.")
        md.append("")

        def mib(key):
            return f"{mem[key][0]} MiB" if key in mem and mem[key][0] != "na" else "-"

        growth = fnum(mem["growth"][0]) if "growth" in mem else None
        within = "-" if growth is None else (
            f"{mem['growth'][2]}x ({'within' if growth <= float(bound) else 'ABOVE'} the bound)")
        rows = [[mib("empty"), mib("pairs"), f"**{mib('peak')}**", mib("growth"), f"{bound} MiB",
                 within, mib("last"), f"{mem['cpu'][0]} %" if "cpu" in mem else "-"]]
        md.append(table(["RSS idle (no connections)",
                         f"RSS with {mem['pairs'][1] if 'pairs' in mem else pairs} pairs (idle)",
                         "peak RSS (flood)", "growth in the flood", "bound (client->backend)",
                         "growth / bound", "RSS, last 1 s (mean)", "proxy CPU % (flood)"], rows))
        memory_table = md[-1]
    else:
        md.append("The slowsink-c100 scenario did not run or left no summary (see the skipped list).")
    md.append("")
    md.append(f"proxy.sh's own table: `bench/results/{os.path.basename(table_path or '-')}`; every run: "
              f"`bench/results/{os.path.basename(tsv_path or '-')}`.")
    return md, throughput_table, memory_table


# --- The report --------------------------------------------------------------------


def side_section(title, path, intro):
    """A section holding a side benchmark's table as it printed it; [] without one."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            table = handle.read().rstrip()
    except OSError:
        return []
    if not table:
        return []
    return ["", f"## {title}", "", intro, "", "```", table, "```"]


def main():
    env = os.environ
    runs, scenarios = load(env["REPORT_TSV"])
    chart_dir = env["REPORT_CHART_DIR"]
    servers = [s for s in SERVER_ORDER if any(k[0] == s for k in runs)]
    echo = [s for s in scenarios if s != "idle"]
    mode = {s: runs[k]["mode"] for k in runs for s in [k[1]]}

    def unit(scn):
        return "us/MB" if mode.get(scn) == "stream" else "us/msg"

    def cpu(server, scn):
        return med(runs, (server, scn), "cpu_us_per_unit")

    def rate(server, scn):
        return med(runs, (server, scn), "rate")

    def cpu_ratio(server, scn):
        return ratio(cpu(server, scn), cpu("raw-mio", scn))

    def rate_ratio(server, scn):
        return ratio(rate(server, scn), rate("raw-mio", scn))

    md = ["# torsion benchmark report", ""]
    md.append(f"Generated by `bench/report` on {env.get('REPORT_DATE', '?')}, measuring commit "
              f"`{env.get('REPORT_COMMIT', '?')}`. See [README.md](README.md) for what each "
              "scenario and figure means.")
    md.append("")
    md.append("**Absolute figures are from a 2-core VM that other work may share** (the load "
              "averages under Machine and setup say how busy it was; timings are noisy): compare "
              "servers by the **ratios to raw mio**, measured in the same scenario of the same run, "
              "not by the absolute numbers.")
    md += ["", "## Machine and setup", ""]
    md.append(f"* CPU: {env.get('REPORT_CPU', '?')}, {env.get('REPORT_CORES', '?')} cores; "
              f"memory {env.get('REPORT_MEMORY', '?')}")
    md.append(f"* Kernel: {env.get('REPORT_KERNEL', '?')}")
    md.append(f"* Python servers: {env.get('REPORT_PYTHON', '?')}")
    md.append(f"* Runs: {env.get('REPORT_SETUP', '?')}. Every figure is the median of the "
              "repetitions; ratios are ratios of medians.")
    md.append("* Servers: " + "; ".join(f"`{s}`: {SERVER_DESC[s]}" for s in servers) + ".")
    skipped = [line for line in env.get("REPORT_SKIPPED", "").splitlines() if line.strip()]
    missing = [s for s in SERVER_ORDER if s not in servers]
    if missing:
        skipped.append("not measured: " + ", ".join(missing))
    md.append("* Skipped: " + ("; ".join(skipped) if skipped else "nothing") + ". The `unix-*` "
              "scenarios run only raw-mio and torsion (the other servers listen on TCP only); "
              "`udp-pp64` runs raw-mio, torsion and asyncio (no UDP echo for the others).")

    # Main table: server CPU per unit as a ratio to raw mio.
    md += ["", "## Server CPU per unit of work, relative to raw mio (main table)", "",
           "Server CPU time (user + system, from `/proc/PID/stat`) per message (pingpong, udp) "
           "or per MB (stream), divided by raw mio's in the same scenario. **Lower is better**; "
           "1.00x = as cheap as the hand-written mio loop. Last column: RSS bytes per idle "
           "connection, absolute (raw mio's is close to zero, so a ratio would mean little).",
           ""]
    rows = []
    for server in servers:
        row = [f"**{server}**" if server == HIGHLIGHT else server]
        row += [fmt_ratio(cpu_ratio(server, s)) for s in echo]
        if "idle" in scenarios:
            row.append(fmt(med(runs, (server, "idle"), "idle_bytes_per_conn"), "{:.0f}"))
        rows.append(row)
    md.append(table(["server"] + echo + (["idle bytes/conn"] if "idle" in scenarios else []), rows))
    main_table = md[-1]

    md += ["", "## Server CPU per unit (absolute)", "",
           "Median, with the range of the repetitions in brackets.", ""]
    rows = []
    for server in servers:
        row = [server]
        for s in echo:
            m, r = cpu(server, s), spread(runs, (server, s), "cpu_us_per_unit")
            row.append("-" if m is None else f"{m:.2f} {unit(s)} [{r[0]:.2f}-{r[1]:.2f}]")
        rows.append(row)
    md.append(table(["server"] + echo, rows))

    md += ["", "## Throughput", "",
           "Round trips per second (pingpong, udp: datagrams) or echoed MB/s (stream), median, "
           "and as a ratio to raw mio (**higher is better**). On this machine the load generator "
           "often saturates its core before the fast servers do (`lg CPU %` in the details), "
           "which compresses these ratios: CPU per unit is the better comparison.", ""]
    rows = []
    for server in servers:
        row = [server]
        for s in echo:
            m = rate(server, s)
            pattern = "{:.1f}" if mode.get(s) == "stream" else "{:.0f}"
            row.append("-" if m is None else f"{pattern.format(m)} ({fmt_ratio(rate_ratio(server, s))})")
        rows.append(row)
    md.append(table(["server"] + echo, rows))

    md += ["", "## Peak RSS", "", "The server's `VmHWM` at the end of each run, MiB (median).", ""]
    rows = [[server] + [fmt(ratio(med(runs, (server, s), "rss_kib"), 1024), "{:.1f}") for s in echo]
            for server in servers]
    md.append(table(["server"] + echo, rows))

    if "idle" in scenarios:
        md += ["", "## Idle memory per connection", "",
               f"RSS of the server before any connection, and its peak RSS (the larger of `VmRSS` "
               f"and `VmHWM`) once it has accepted the idle connections of `bench/idle_conns.py` "
               f"(no data sent); the difference divided by the number of connections. Kernel socket "
               f"memory is not in RSS.", ""]
        rows = []
        raw_idle = med(runs, ("raw-mio", "idle"), "idle_bytes_per_conn")
        for server in servers:
            key = (server, "idle")
            if key not in runs:
                continue
            per = med(runs, key, "idle_bytes_per_conn")
            rows.append([server, fmt(ratio(med(runs, key, "idle_rss_before_kib"), 1024), "{:.1f}"),
                         fmt(ratio(med(runs, key, "idle_peak_kib"), 1024), "{:.1f}"),
                         fmt(per, "{:.0f}"), fmt_ratio(ratio(per, raw_idle))])
        md.append(table(["server", "RSS before, MiB", "peak RSS, MiB", "bytes per connection",
                         "/raw-mio"], rows))

    proxy_tables = []
    if env.get("REPORT_PROXY_TABLE") or env.get("REPORT_PROXY_TSV"):
        lines, throughput_table, memory_table = proxy_section(env.get("REPORT_PROXY_TABLE"),
                                                              env.get("REPORT_PROXY_TSV"))
        md += lines
        proxy_tables = [t for t in (throughput_table, memory_table) if t]

    md += side_section("TLS", env.get("REPORT_TLS_TABLE"),
                       "`bench/tls.sh` in the same run: torsion's `echo-server` over TLS against a "
                       "tokio-rustls echo server (current_thread, the same rustls and ring provider); "
                       "full TLS 1.3 handshakes (the P-384 key exchange the provider offers first, and X25519), a 64 KiB stream over 10 connections, 64 B ping-pong over 100. "
                       "Server CPU per unit from /proc; torsion/tokio-rustls below 1.00x is cheaper.")
    md += side_section("HTTP", env.get("REPORT_HTTP_TABLE"),
                       "`bench/http.sh` in the same run: `wrk -t1 -c100` on `/hello` against torsion's "
                       "`http-server` and a hyper HTTP/1 server (current_thread): keep-alive, 16-deep "
                       "pipelining and `Connection: close`. Server CPU per request from /proc; "
                       "torsion/hyper CPU below 1.00x is cheaper, req/s above 1.00x is faster.")

    md += ["", "## Details", "",
           "Medians: server CPU % of the wall time of the load run (near 100: the server was "
           "saturated), load generator CPU % (near 100: the client limited throughput), "
           "round-trip latency p50/p99 in microseconds (pingpong).", ""]
    rows = []
    for s in echo:
        for server in servers:
            key = (server, s)
            if key not in runs:
                continue
            rows.append([s, server, fmt(med(runs, key, "server_cpu_pct"), "{:.0f}"),
                         fmt(med(runs, key, "loadgen_cpu_pct"), "{:.0f}"),
                         fmt(med(runs, key, "p50_us"), "{:.0f}"), fmt(med(runs, key, "p99_us"), "{:.0f}"),
                         str(len([v for v in runs[key]["rate"] if v is not None]))])
    md.append(table(["scenario", "server", "srv CPU %", "lg CPU %", "p50 us", "p99 us", "runs"], rows))

    # Charts.
    charts, backend = [], None
    ref_label = "raw mio = 1.0"

    def ratio_panel(title, ylabel, groups, fn):
        values = {(g, s): fn(s, g) for g in groups for s in servers}
        labels = {k: f"{v:.2f}" for k, v in values.items() if v is not None}
        return panel(title, ylabel, groups, values, labels, 1.0, ref_label)

    pp = [s for s in PINGPONG if s in echo]
    st = [s for s in STREAM if s in echo]
    specs = [
        ("cpu-per-message.svg", "Server CPU per message, relative to raw mio (lower is better)",
         [ratio_panel("pingpong 64 B (TCP, Unix socket) and UDP 64 B datagrams",
                      "CPU per message / raw mio's", pp, cpu_ratio)] if pp else []),
        ("cpu-per-mb.svg", "Server CPU per MB echoed, relative to raw mio (lower is better)",
         [ratio_panel("stream 64 KiB writes, 10 connections", "CPU per MB / raw mio's", st,
                      cpu_ratio)] if st else []),
        ("throughput.svg", "Throughput, relative to raw mio (higher is better)",
         [ratio_panel("round trips/s (pingpong, udp) or MB/s (stream)", "throughput / raw mio's",
                      echo, rate_ratio)] if echo else []),
    ]
    mem_panels = []
    if "pp64-c1000" in echo:
        values = {("pp64-c1000", s): ratio(med(runs, (s, "pp64-c1000"), "rss_kib"), 1024) for s in servers}
        raw = values.get(("pp64-c1000", "raw-mio"))
        mem_panels.append(panel("peak RSS in pp64-c1000 (1000 busy connections)", "MiB", ["pp64-c1000"],
                                values, {k: f"{v:.1f}" for k, v in values.items() if v is not None},
                                raw, "raw mio"))
    if "idle" in scenarios:
        values = {("idle", s): med(runs, (s, "idle"), "idle_bytes_per_conn") for s in servers}
        raw = values.get(("idle", "raw-mio"))
        mem_panels.append(panel("RSS per idle connection (peak with the idle connections open "
                                "minus RSS before, / connections)", "bytes per connection", ["idle"],
                                values, {k: f"{v:.0f}" for k, v in values.items() if v is not None},
                                raw, "raw mio"))
    specs.append(("memory.svg", "Server memory (lower is better)", mem_panels))
    for name, heading, panels in specs:
        used = draw(os.path.join(chart_dir, name), heading, panels)
        if used:
            charts.append(name)
            backend = used

    md += ["", "## Charts", "",
           f"Drawn with {backend or '-'}; raw mio is the dashed reference line, torsion the "
           "outlined red bar.", ""]
    md += [f"![{name[:-4]}]({CHART_DIR_REL}/{name})" for name in charts]
    md.append("")
    with open(env["REPORT_MD"], "w", encoding="utf-8") as handle:
        handle.write("\n".join(md))
    print(main_table)
    for proxy_table in proxy_tables:
        print()
        print(proxy_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
