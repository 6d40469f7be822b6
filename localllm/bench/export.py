"""Benchmark exports: Markdown (full, or seed 002's layout), CSV and JSON; each parses back."""

from __future__ import annotations

import csv
import io
import json

from localllm.bench.results import COLUMN_KEYS, BenchResult, Column, Delta, RowResult, Summary
from localllm.config.redact import redact, redact_text

# A text cell starting with one of these is a formula to a spreadsheet (OWASP's CSV injection list).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

STATS = ("mean", "sd", "p50", "p90", "n")
CSV_HEAD = ("label", "status", "reason", "backend", "model", "quant", "threads", "gpu_layers", "n_ctx",
            "prompt_tokens", "gen_tokens", "size_bytes", "bits_per_weight", "first_load_s", "rss_hwm_mib",
            "prompt_sha256")
SEED002_HEAD = ("model", "batch", "method", "act_order", "bits", "group", "load s", "latency ms", "tok/s",
                "peak MB")


def number(value: float | None) -> str:
    """A number with ~4 significant digits, "-" when absent."""
    if value is None:
        return "-"
    size = abs(value)
    digits = 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 10 else 3
    return f"{value:.{digits}f}"


def cell(s: Summary) -> str:
    if s.mean is None:
        return "-"
    return number(s.mean) + (f" ± {number(s.sd)}" if s.sd is not None else "")


def _title(c: Column) -> str:
    return f"{c.title} {c.unit}".strip()


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(x.replace("|", "/") for x in cells) + " |"

    return [line(head), "|" + "---|" * len(head), *(line(r) for r in rows)]


def headline(result: BenchResult) -> str:
    m = result.manifest
    hw, sw, plan = m.get("hardware", {}), m.get("software", {}), m.get("plan", {})
    gpus = ", ".join(g["name"] for g in hw.get("gpus", [])) or "none"
    return (f"localllm bench · {m.get('date', '')} · CPU {hw.get('cpu', '?')} ({hw.get('cores_physical')} "
            f"cores, {hw.get('ram_gib', 0):.1f} GiB) · GPU {gpus} · llama-cpp-python "
            f"{sw.get('llama_cpp_python')} · prompt {plan.get('prompt_tokens')} tok, "
            f"{plan.get('gen_tokens')} new tok · {plan.get('reps')} reps after {plan.get('warmup')} "
            f"warm-up · seed {m.get('seed')}" + (" · CANCELLED (partial)" if result.cancelled else ""))


def to_markdown(result: BenchResult, layout: str = "full") -> str:
    """The results table; layout "seed002" gives the seed 002 blog's columns (means only)."""
    if layout == "seed002":
        body = _table(list(SEED002_HEAD), [_seed002_row(r) for r in result.rows])
    else:
        cols = result.present_columns()
        head = ["config", "quant", "status", *(_title(c) for c in cols)]
        body = _table(head, [[r.label, r.quant, r.status, *(cell(r.columns.get(c.key, Summary()))
                                                              for c in cols)] for r in result.rows])
    notes = [f"- {r.label}: {r.status}: {r.reason.splitlines()[0]}" for r in result.rows if r.reason]
    notes += [f"- {r.label}: {n}" for r in result.rows for n in r.notes]
    return redact_text("\n".join([headline(result), "", *body, *([""] + notes if notes else [])]) + "\n")


def _seed002_row(r: RowResult) -> list[str]:
    def mean(key: str) -> float | None:
        return r.columns.get(key, Summary()).mean

    peak = mean("vram_peak_mib") if mean("vram_peak_mib") is not None else mean("rss_peak_mib")
    fmt = {"load": f"{mean('load_s'):.2f}" if mean("load_s") is not None else "-",
           "lat": f"{mean('latency_mean_ms'):.3f}" if mean("latency_mean_ms") is not None else "-",
           "tps": f"{mean('decode_tok_s'):.3f}" if mean("decode_tok_s") is not None else "-",
           "peak": f"{peak:.2f}" if peak is not None else "-"}
    bits = f"{r.bits_per_weight:.2f}" if r.bits_per_weight else "-"
    batch = str(r.config.get("batch") or 1)
    return [r.label, batch, r.quant, "-", bits, "-", fmt["load"], fmt["lat"], fmt["tps"], fmt["peak"]]


def parse_markdown(text: str) -> list[dict[str, str]]:
    """The first table of a Markdown export as rows of {header: cell}."""
    lines: list[str] = []
    for raw in text.splitlines():
        if raw.strip().startswith("|"):
            lines.append(raw.strip())
        elif lines:
            break
    if len(lines) < 2:
        return []
    split = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    head = split[0]
    return [dict(zip(head, cells, strict=True)) for cells in split[2:]]


def parse_cell(text: str) -> tuple[float | None, float | None]:
    """"12.3 ± 0.4" -> (12.3, 0.4); "-" -> (None, None)."""
    mean, _, sd = text.partition("±")
    as_float = lambda s: None if s.strip() in ("", "-") else float(s)  # noqa: E731
    return as_float(mean), as_float(sd)


def to_csv(result: BenchResult) -> str:
    """One line per configuration: its settings, then mean/sd/p50/p90/n of every column."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_HEAD, *(f"{k}_{s}" for k in COLUMN_KEYS for s in STATS)])
    for r in result.rows:
        c = r.config
        writer.writerow([*map(_csv_text, (r.label, r.status, r.reason, c.get("backend"),
                                          r.model.get("path") or c.get("model"), r.quant)), r.model.get("n_threads") or c.get("n_threads"), c.get("n_gpu_layers"),
                         r.model.get("n_ctx") or c.get("n_ctx"), r.prompt_tokens, r.gen_tokens, r.size_bytes,
                         r.bits_per_weight, r.first_load_s, r.rss_hwm_mib, _csv_text(r.prompt_sha256),
                         *(_csv_value(getattr(r.columns.get(k, Summary()), s)) for k in COLUMN_KEYS
                           for s in STATS)])
    return out.getvalue()


def _csv_value(value) -> str:
    return "" if value is None else repr(value)


def _csv_text(value):
    """A text cell made safe to open in a spreadsheet: no URL credentials, and a leading ' on one that
    would start a formula (a model name or error text is not ours to trust). Numbers stay numbers."""
    if not isinstance(value, str):
        return value
    value = redact_text(value)
    value = "'" + value if value.startswith(FORMULA_START) else value
    # csv quotes a cell holding \n but not one holding a lone \r, which readers take for a line break
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _uncsv_text(value: str) -> str:
    """What _csv_text escaped, back as it was written."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


def parse_csv(text: str) -> list[dict]:
    """CSV rows back, numbers as floats and empty cells as None."""
    rows = []
    for raw in csv.DictReader(io.StringIO(text, newline="")):
        row: dict = {}
        for key, value in raw.items():
            if value == "":
                row[key] = None
            elif key in ("label", "status", "reason", "backend", "model", "quant", "prompt_sha256"):
                row[key] = _uncsv_text(value)
            else:
                row[key] = float(value)
        rows.append(row)
    return rows


def to_json(result: BenchResult) -> str:
    return json.dumps(redact(result.to_dict()), indent=1, ensure_ascii=False)


def from_json(text: str) -> BenchResult:
    return BenchResult.from_dict(json.loads(text))


def compare_markdown(deltas: list[Delta], before: str, after: str) -> str:
    """compare()'s changes as a table: before, after, change and change in %."""
    rows = [[d.label, d.column, number(d.a), number(d.b),
             number(d.delta) if d.delta is None else f"{d.delta:+.3g}",
             "-" if d.pct is None else f"{d.pct:+.1f}%"] for d in deltas]
    head = ["config", "column", f"before ({before})", f"after ({after})", "change", "change %"]
    return "\n".join(_table(head, rows)) + "\n"
