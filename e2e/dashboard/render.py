#!/usr/bin/env python3
"""Renders the panels of the tenants' Grafana dashboard
(charts/faceid-operator/dashboards/faceid-tenants.json) from a service's own /metrics,
sampled during a load run, where no Grafana is at hand.

    python3 e2e/dashboard/render.py --url http://127.0.0.1:8000 --seconds 120 \
        --out docs/screenshots/dashboard.png

It samples /metrics every --interval seconds (loopback only), then draws, per interval,
what the dashboard's PromQL computes with rate() and histogram_quantile(): requests by
status class, login latency p50/p95, login outcomes by reason, liveness live/spoof,
face-analysis p95 by stage and vector-search p95. Needs matplotlib.
"""

import argparse
import re
import time
import urllib.request
from collections import defaultdict

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+([0-9.eE+\-]+|NaN|\+Inf)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        labels = tuple(sorted(LABEL.findall(m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def series(samples, name, keep=lambda labels: True, by=()):
    """Per-interval increase of counter `name`, summed by the labels in `by`."""
    result = defaultdict(list)
    for (t0, a), (t1, b) in zip(samples, samples[1:]):
        acc = defaultdict(float)
        for (n, labels), v in b.items():
            if n != name or not keep(dict(labels)):
                continue
            key = tuple(dict(labels).get(k, "") for k in by)
            acc[key] += max(0.0, v - a.get((n, labels), 0.0))
        for key, inc in acc.items():
            result[key].append((t1, inc / (t1 - t0)))
    return result


def quantile(samples, name, q, keep=lambda labels: True, by=()):
    """histogram_quantile(q) of the per-interval bucket increases, grouped by `by`."""
    result = defaultdict(list)
    for (t0, a), (t1, b) in zip(samples, samples[1:]):
        buckets = defaultdict(lambda: defaultdict(float))
        for (n, labels), v in b.items():
            if n != name + "_bucket":
                continue
            d = dict(labels)
            if not keep(d):
                continue
            key = tuple(d.get(k, "") for k in by)
            le = float("inf") if d["le"] == "+Inf" else float(d["le"])
            buckets[key][le] += max(0.0, v - a.get((n, labels), 0.0))
        for key, bs in buckets.items():
            edges = sorted(bs)
            total = bs[edges[-1]]
            if total <= 0:
                continue
            rank, prev_le, prev_c = q * total, 0.0, 0.0
            for le in edges:
                c = bs[le]
                if c >= rank:
                    if le == float("inf"):
                        value = prev_le
                    else:
                        value = prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
                    result[key].append((t1, value))
                    break
                prev_le, prev_c = le, c
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--interval", type=float, default=5)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if not re.match(r"^http://(127\.|localhost|\[::1\])", args.url):
        raise SystemExit("--url must be a loopback address")

    start = time.time()
    samples = []
    while time.time() - start <= args.seconds:
        samples.append((time.time() - start, scrape(args.url)))
        time.sleep(args.interval)
    if len(samples) < 3:
        raise SystemExit("too few samples")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    login = lambda d: d.get("route") == "/api/v1/auth/login"
    panels = [
        ("Requests by status class (req/s)", series(samples, "faceid_http_requests_total", by=("status_class",))),
        ("Login latency (s)", {("p50",): quantile(samples, "faceid_http_request_duration_seconds", 0.5, login)[()],
                               ("p95",): quantile(samples, "faceid_http_request_duration_seconds", 0.95, login)[()]}),
        ("Login outcomes (req/s)", series(samples, "faceid_login_attempts_total", by=("status", "reason"))),
        ("Liveness: live and spoof (checks/s)", series(samples, "faceid_liveness_checks_total", by=("result",))),
        ("Face analysis time by stage, p95 (s)", quantile(samples, "faceid_face_match_latency_seconds", 0.95, by=("stage",))),
        ("Vector search time, p95 (s)", quantile(samples, "faceid_vector_search_duration_seconds", 0.95, by=("kind",))),
    ]
    fig, axes = plt.subplots(3, 2, figsize=(14, 11), constrained_layout=True)
    fig.suptitle("FaceID tenants: panels of faceid-tenants.json computed from /metrics samples of a local load run "
                 f"({len(samples)} samples, every {args.interval:g} s; rendered with matplotlib, not Grafana)", fontsize=10)
    for ax, (title, data) in zip(axes.flat, panels):
        for key, points in sorted(data.items()):
            if not points or not any(v for _, v in points):
                continue
            ax.plot([t for t, _ in points], [v for _, v in points], label=" ".join(k for k in key if k) or title)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds", fontsize=8)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
