"""OpenTelemetry: what a hit and a computation cost with an SDK tracer provider (spans recorded
and exported to memory), with the API alone (no provider: its no-op tracer), and without
``opentelemetry`` importable at all. Each variant runs in a process of its own (a provider is
process-wide), three times, alternating; each figure is a ratio to a raw ``cache.get`` measured
in the same process.

Goal (issue 30): no cost when it is not installed; the hit makes no span in any variant.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

VARIANTS = ("not installed", "API, no provider", "SDK provider")


def measure(variant: str) -> dict[str, float]:
    if variant == "not installed":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    from _common import interleaved, per_round
    from django.core.cache import cache

    from cache_tools import cache_aside, tracing

    if variant == "SDK provider":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    assert tracing.ENABLED is (variant != "not installed")

    @cache_aside(timeout=600, key_maker="tracing-hit")
    def hit():
        return {"value": list(range(20))}

    @cache_aside(timeout=600, key_maker="tracing-miss")
    def miss():
        return {"value": list(range(20))}

    def computation():
        miss.invalidate()
        miss()

    cache.set("bench:raw", hit(), 600)
    samples = interleaved(
        {"raw": lambda: cache.get("bench:raw"), "hit": hit, "computation": computation},
        rounds=21,
        calls=200,
    )
    if variant == "SDK provider":
        assert len(exporter.get_finished_spans()) > 0  # computations were traced ...
        exporter.clear()
        hit()
        assert exporter.get_finished_spans() == ()  # ... and a hit makes no span
    return {
        "hit": statistics.median(per_round(samples, "hit", "raw")),
        "computation": statistics.median(per_round(samples, "computation", "raw")),
    }


def main() -> None:
    from _common import table

    results: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    for _ in range(3):
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, __file__, variant], capture_output=True, text=True, check=True
            )
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    for variant in VARIANTS:
        hits = [r["hit"] for r in results[variant]]
        computations = [r["computation"] for r in results[variant]]
        rows.append(
            (
                variant,
                f"{statistics.median(hits):.2f} ({min(hits):.2f}-{max(hits):.2f})",
                f"{statistics.median(computations):.2f} ({min(computations):.2f}-"
                f"{max(computations):.2f})",
            )
        )
    table(
        "OpenTelemetry: x a raw cache.get in the same process (median, range of 3 processes)",
        rows,
        ("opentelemetry", "hit", "invalidate + compute + store"),
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(measure(sys.argv[1])))
    else:
        main()
