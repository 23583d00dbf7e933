#!/usr/bin/env python3
"""Medians over rounds of tests/bench/foreign/run.sh's per-run lines.

  summary.py <runs.tsv> <medians.tsv> [<plot.png> <plot.gp>]

runs.tsv: client, path, in flight, calls/s, p50 us, proxy CPU us/call ("-"
for direct), ok calls; one line per run. Prints a Markdown table per client
(calls/s and p50 per path, the proxies' CPU per call) and how leverd fares
against the issue's targets; writes the medians to medians.tsv and, with a
PNG name, a gnuplot script that draws median p50 against median throughput,
one line per path (through its 1, 16 and 64 in flight points), one panel
per client.
"""
import collections
import statistics
import sys

# leverd-busy: leverd with --busy-poll-us (run.sh with BUSY_POLL_US);
# leverd-base: another build's leverd (run.sh with BASE_BUILD).
ALL_PATHS = ["direct", "nghttpx", "nginx", "leverd", "leverd-busy", "leverd-base"]
PATHS = []
PROXIES = []


def fmt_rate(v):
    return "%.0f" % v


def fmt_us(v):
    return "%.2f ms" % (v / 1e3) if v >= 1000 else "%.0f µs" % v


def main():
    runs, medians_out = sys.argv[1], sys.argv[2]
    plot = sys.argv[3:5]
    samples = collections.defaultdict(lambda: ([], [], []))
    clients, depths = [], []
    for line in open(runs):
        f = line.rstrip("\n").split("\t")
        if len(f) < 7:
            continue
        client, path, m = f[0], f[1], int(f[2])
        if client not in clients:
            clients.append(client)
        if m not in depths:
            depths.append(m)
        rps, p50, cpu = samples[(client, path, m)]
        rps.append(float(f[3]))
        p50.append(float(f[4]))
        if f[5] != "-":
            cpu.append(float(f[5]))
    present = {path for (_, path, _) in samples}
    PATHS[:] = [p for p in ALL_PATHS if p in present]
    PROXIES[:] = [p for p in PATHS if p != "direct"]
    med = {}
    with open(medians_out, "w") as out:
        for (client, path, m), (rps, p50, cpu) in sorted(samples.items()):
            med[(client, path, m)] = (statistics.median(rps), statistics.median(p50),
                                      statistics.median(cpu) if cpu else None)
            r, p, c = med[(client, path, m)]
            out.write("%s\t%s\t%d\t%.1f\t%.1f\t%s\t%d\n" % (client, path, m, r, p, "-" if c is None else "%.2f" % c,
                                                          len(rps)))
    rounds = max(len(v[0]) for v in samples.values())
    print("\nMedians of %d rounds: calls/s (p50)\n" % rounds)
    print("| client | in flight | " + " | ".join(PATHS) + " | " +
          " | ".join("CPU/call " + p for p in PROXIES) + " |")
    print("|---|---|" + "---|" * (len(PATHS) + len(PROXIES)))
    for client in clients:
        for m in depths:
            cells = []
            for path in PATHS:
                v = med.get((client, path, m))
                cells.append("–" if v is None else "%s (%s)" % (fmt_rate(v[0]), fmt_us(v[1])))
            for path in PROXIES:
                v = med.get((client, path, m))
                cells.append("–" if v is None or v[2] is None else "%.1f µs" % v[2])
            print("| %s | %d | %s |" % (client, m, " | ".join(cells)))
    for lever_path in (p for p in PATHS if p.startswith("leverd")):
        print("\n%s against the targets (medians):" % lever_path)
        for client in clients:
            for m in depths:
                lv, ng, d = (med.get((client, p, m)) for p in (lever_path, "nghttpx", "direct"))
                if not lv or not ng:
                    continue
                note = "%s %2d: %s/nghttpx throughput %.2fx %s" % (client, m, lever_path, lv[0] / ng[0],
                                                                    "ok" if lv[0] >= ng[0] else "MISSED")
                if m == 64 and lv[2] is not None:
                    note += "; CPU/call %.1f us %s" % (lv[2], "ok" if lv[2] <= 10 else "MISSED")
                if m == 1 and d:
                    note += "; p50 +%.0f us over direct %s" % (lv[1] - d[1], "ok" if lv[1] - d[1] <= 50 else "MISSED")
                print("  " + note)
    if len(plot) == 2:
        write_plot(plot[0], plot[1], med, clients, depths)


def write_plot(png, script, med, clients, depths):
    with open(script, "w") as g:
        for client in clients:
            for path in PATHS:
                g.write("$%s_%s << EOD\n" % (client.replace("-", "_"), path.replace("-", "_")))
                for m in depths:
                    v = med.get((client, path, m))
                    if v:
                        g.write("%.1f %.1f %d\n" % (v[0], v[1], m))
                g.write("EOD\n")
        cols = 2
        rows = (len(clients) + cols - 1) // cols
        g.write('set terminal pngcairo size %d,%d font "sans,10"\n' % (560 * cols, 420 * rows))
        g.write("set output '%s'\n" % png)
        g.write("set multiplot layout %d,%d title 'p50 latency against throughput, 64 B unary, one connection, "
                "1/16/64 calls in flight'\n" % (rows, cols))
        g.write("set logscale y\nset grid\nset key below horizontal\n")
        g.write("set xlabel 'calls/s'\nset ylabel 'p50 (µs)'\n")
        styles = {"direct": "lc rgb '#777777' dt 2", "nghttpx": "lc rgb '#1f77b4'", "nginx": "lc rgb '#2ca02c'",
                  "leverd": "lc rgb '#d62728' lw 2", "leverd-busy": "lc rgb '#ff7f0e' dt 3",
                  "leverd-base": "lc rgb '#9467bd' dt 4"}
        for client in clients:
            g.write("set title '%s'\n" % client)
            parts = []
            for path in PATHS:
                block = "$%s_%s" % (client.replace("-", "_"), path.replace("-", "_"))
                parts.append("%s using 1:2 with linespoints pt 7 %s title '%s'" % (block, styles[path], path))
                # Each point names its calls in flight.
                parts.append("%s using 1:2:3 with labels offset char 0.9,0.6 font ',8' notitle" % block)
            g.write("plot " + ", \\\n     ".join(parts) + "\n")
        g.write("unset multiplot\n")


if __name__ == "__main__":
    main()
