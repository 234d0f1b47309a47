"""The benchmark's chart: the task metric against p50 latency at batch 1, one labelled point per format
(matplotlib, imported here only, with the Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["metric_latency_chart"]


def metric_latency_chart(result: dict[str, Any], path: str | Path) -> Path:
    """Draw ``result`` (see :func:`lightplug.export.benchmark.benchmark_checkpoint`) into the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    rows = [r for r in result["rows"] if r["metric"] is not None and r["latency_p50_ms"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for row in rows:
        ax.scatter(row["latency_p50_ms"], row["metric"], s=45, marker="s" if row["format"] == "eager" else "o", label=row["format"], alpha=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8, loc="best")
    ax.set_xlabel("p50 latency at batch 1 (ms, log scale)")
    better = "higher is better" if result.get("higher_is_better", True) else "lower is better"
    ax.set_ylabel(f"{result['metric']} ({better})")
    ax.set_title(f"{result['model']} on {result['data']['name']}: {result['metric']} against latency", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
