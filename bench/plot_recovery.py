#!/usr/bin/env python3
"""Plot bench/recovery.py's results: time to recover (last server ACTIVE elsewhere, median with its min-max range)
against the servers on the failed host, one line per system.

    $OHLAB_HOME/bench-venv/bin/python bench/plot_recovery.py bench/results/recovery.json bench/results/recovery.png

Runs in the benchmark's own venv (matplotlib, bench/requirements.txt); bench/recovery.py calls it.
"""

import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def main(results_json, png):
    with open(results_json) as handle:
        results = json.load(handle)
    figure, axes = plt.subplots(figsize=(8, 5))
    order = results.get('systems') or sorted(results['summary'])
    for system in order:
        sizes = results['summary'].get(system, {})
        points = sorted((int(n), entry['last_active']) for n, entry in sizes.items() if entry['last_active']['n'])
        if not points:
            continue
        xs = [n for n, dummy in points]
        medians = [stat['median'] for dummy, stat in points]
        below = [stat['median'] - stat['min'] for dummy, stat in points]
        above = [stat['max'] - stat['median'] for dummy, stat in points]
        axes.errorbar(xs, medians, yerr=[below, above], marker='o', capsize=3, label=system)
    axes.set_xlabel('instances on the failed host')
    axes.set_ylabel('seconds from the crash to the last instance ACTIVE elsewhere')
    counts = sorted({entry['last_active']['n'] for sizes in results['summary'].values() for entry in sizes.values()
                     if entry['last_active']['n']}) or [0]
    runs = '%d' % counts[0] if counts[0] == counts[-1] else '%d-%d' % (counts[0], counts[-1])
    axes.set_title('Host failure recovery (median, min-max of %s recovered run(s) per point)' % runs)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=120)


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit('usage: plot_recovery.py RESULTS.json OUT.png')
    main(sys.argv[1], sys.argv[2])
