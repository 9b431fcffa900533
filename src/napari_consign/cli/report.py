"""The evaluation report as a printed table, Markdown tables and PNG plots.

:func:`format_table` is the table ``napari-consign evaluate`` prints; :func:`markdown` renders
its JSON report: one table of every method at every alpha, mean (SD) over splits.
:func:`plots` draws, with matplotlib's Agg backend (no display needed; imported only here):

* ``coverage_per_image.png``: the distribution of per-image coverage (outer-band TPR) of the
  test images of all splits, per method, at the main alpha, against 1 - alpha;
* ``coverage_vs_alpha.png``: marginal coverage and coverage gap against alpha (mean +- SD),
  with the set coverage (the fraction of test images whose ground truth is in the set, their
  guarantee) of CONSIGN and the pixel-wise baseline dotted;
* ``band_size_vs_alpha.png``: outer and inner band size (pixels per test unit) against alpha.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io.safe_write import check_target, write_atomically
from .errors import CLIError

PLOTS = ("coverage_per_image.png", "coverage_vs_alpha.png", "band_size_vs_alpha.png")

#: Metrics shown in the printed table: key, column title, number format.
TABLE_COLUMNS = (
    ("marginal_coverage", "coverage", ".4f"),
    ("coverage_gap", "gap", ".4f"),
    ("mean_fnr", "FNR", ".4f"),
    ("inner_loss", "inner loss", ".4f"),
    ("outer_area", "outer px", ".1f"),
    ("inner_area", "inner px", ".1f"),
)
#: Set metrics of CONSIGN and the pixel-wise baseline, shown when a method reports them, then
#: the calibrated lambda-hat and CONSIGN's calibration time (cost next to benefit).
SET_COLUMNS = (
    ("set_coverage", "set coverage", ".4f"),
    ("sEC_100", "sEC (100)", ".4f"),
    ("chao1_100", "Chao1 (100)", ".1f"),
    ("corr_100", "corr (100)", ".3f"),
    ("lambda_hat", "lambda-hat", ".3f"),
    ("calibration_s", "calibration (s)", ".2f"),
)


def split_unit(report: dict) -> str:
    """What the split sizes count: "units", or "scans" when whole scans were split."""
    return "scans" if report.get("split_by") == "scan" else "units"


def format_table(report: dict) -> str:
    """A readable table: mean (SD) over splits for every method."""
    head = f"{'method':<10}" + "".join(f"{title:>20}" for _, title, _ in TABLE_COLUMNS)
    lines = [
        f"alpha = {report['alpha']:g}, {report['splits']} splits (seed {report['seed']}), "
        f"n = {report['n_units']} units: train {report['n_train']} / cal {report['n_cal']} / "
        f"test {report['n_test']} {split_unit(report)}",
        head,
        "-" * len(head),
    ]
    for name, metrics in report["methods"].items():
        cells = "".join(
            f"{metrics[key]['mean']:{fmt}} ({metrics[key]['sd']:{fmt}})".rjust(20)
            for key, _, fmt in TABLE_COLUMNS
        )
        lines.append(f"{name:<10}{cells}")
        extra = [c for c in SET_COLUMNS if c[0] in metrics]
        if extra:
            lines.append(
                f"{'':<10}"
                + "".join(
                    f"{title}: {metrics[key]['mean']:{fmt}} ({metrics[key]['sd']:{fmt}})  "
                    for key, title, fmt in extra
                ).rstrip()
            )
        cal_empty, test_empty = metrics["n_cal_empty"]["mean"], metrics["n_test_empty"]["mean"]
        if cal_empty + test_empty:
            lines.append(
                f"{'':<10}excluded empty masks per split: cal {cal_empty:.1f}, "
                f"test {test_empty:.1f}"
            )
    return "\n".join(lines)


def _cell(metric: dict | None, fmt: str) -> str:
    if metric is None:
        return "–"
    return f"{metric['mean']:{fmt}} ({metric['sd']:{fmt}})"


def markdown(report: dict, plots: list[Path] = (), relative_to: Path | None = None) -> str:
    """Markdown tables of ``report``, linking ``plots`` relative to ``relative_to``."""
    sweep = report.get("sweep") or {f"{report['alpha']:g}": report["methods"]}
    methods = list(report["methods"])
    extra = [c for c in SET_COLUMNS if any(c[0] in report["methods"][m] for m in methods)]
    columns = TABLE_COLUMNS + tuple(extra)
    parts = [
        "# Evaluation",
        "",
        f"`{report.get('samples_file', '')}`: {report['n_units']} units; {report['splits']} "
        f"random splits (seed {report['seed']}) of train {report['n_train']} / calibration "
        f"{report['n_cal']} / test {report['n_test']} {split_unit(report)}; mean (SD) over "
        "splits. Coverage is the outer band's TPR (for CONSIGN and the pixel-wise baseline, "
        "of their envelope; their guarantee is the set coverage); the gap is mean "
        "|TPR_i - (1 - alpha)|; sizes are pixels per test unit.",
        "",
        "| method | alpha | " + " | ".join(t for _, t, _ in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for name in methods:
        for key, by_method in sweep.items():
            m = by_method[name]
            cells = " | ".join(_cell(m.get(k), f) for k, _, f in columns)
            parts.append(f"| {name.upper()} | {key} | {cells} |")
    empty = {
        n: report["methods"][n]["n_test_empty"]["mean"]
        for n in methods
        if "n_test_empty" in report["methods"][n]
    }
    if any(empty.values()):
        per = ", ".join(f"{n.upper()} {v:.1f}" for n, v in empty.items())
        parts += ["", f"Test units per split with an empty mask, excluded from coverage: {per}."]
    if plots:
        parts += ["", "## Plots", ""]
        for p in plots:
            link = os.path.relpath(p, relative_to) if relative_to is not None else str(p)
            parts.append(f"![{Path(p).stem.replace('_', ' ')}]({Path(link).as_posix()})")
    return "\n".join(parts) + "\n"


def plots(report: dict, folder: Path, overwrite: bool = False) -> list[Path]:
    """Write the three PNG plots of ``report`` into ``folder``; returns their paths.

    Each is written atomically and verified (:mod:`napari_consign.io.safe_write`); an existing
    file is replaced only with ``overwrite`` and only if it is a PNG.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError("--plots needs matplotlib: pip install matplotlib") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create {folder}: {exc}") from None
    methods = list(report["methods"])
    alpha = report["alpha"]
    paths = [folder / name for name in PLOTS]

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(methods), 4))
    data = [report.get("per_image_tpr", {}).get(m, []) or [float("nan")] for m in methods]
    ax.violinplot(data, showmedians=True)
    ax.boxplot(data, widths=0.12, showfliers=False)
    ax.axhline(1 - alpha, color="grey", ls="--", lw=1, label=f"1 - alpha = {1 - alpha:g}")
    ax.set_xticks(range(1, len(methods) + 1), [m.upper() for m in methods])
    ax.set_ylabel("per-image coverage (outer-band TPR)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Per-image coverage at alpha = {alpha:g} (test images of all splits)")
    ax.legend(loc="lower left")
    _save(fig, paths[0], overwrite)

    sweep = report.get("sweep") or {f"{alpha:g}": report["methods"]}
    levels = [float(k) for k in sweep]

    def series(name: str, key: str) -> tuple[list[float], list[float]]:
        rows = [sweep[k][name].get(key, {"mean": float("nan"), "sd": 0.0}) for k in sweep]
        return [r["mean"] for r in rows], [r["sd"] for r in rows]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(levels, [1 - a for a in levels], color="grey", ls="--", lw=1, label="1 - alpha")
    for i, name in enumerate(methods):
        for ax_, key in ((left, "marginal_coverage"), (right, "coverage_gap")):
            mean, sd = series(name, key)
            ax_.errorbar(
                levels, mean, yerr=sd, marker="o", capsize=3, color=f"C{i}", label=name.upper()
            )
        if "set_coverage" in report["methods"][name]:  # the guarantee of a set method
            mean, sd = series(name, "set_coverage")
            left.errorbar(
                levels,
                mean,
                yerr=sd,
                ls=":",
                marker="s",
                capsize=3,
                color=f"C{i}",
                label=f"{name.upper()} set coverage",
            )
    left.set(xlabel="alpha", ylabel="marginal coverage", title="Coverage against alpha")
    right.set(
        xlabel="alpha",
        ylabel="coverage gap  mean |TPR_i - (1 - alpha)|",
        title="Coverage gap against alpha (lower: more adaptive)",
    )
    left.legend()
    right.legend()
    _save(fig, paths[1], overwrite)

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, name in enumerate(methods):
        colour = f"C{i}"
        for key, style, label in (("outer_area", "-", "outer"), ("inner_area", ":", "inner")):
            mean, sd = series(name, key)
            ax.errorbar(
                levels,
                mean,
                yerr=sd,
                ls=style,
                marker="o",
                capsize=3,
                color=colour,
                label=f"{name.upper()} {label}",
            )
    ax.set(xlabel="alpha", ylabel="band size (pixels per test unit)", title="Band size")
    ax.legend(fontsize="small")
    _save(fig, paths[2], overwrite)
    return paths


def _save(fig, path: Path, overwrite: bool) -> None:
    import matplotlib.pyplot as plt

    def verify(tmp: Path) -> None:
        with open(tmp, "rb") as f:
            f.seek(-12, os.SEEK_END)
            if f.read(12)[4:8] != b"IEND":  # a PNG ends with its IEND chunk
                raise ValueError("the PNG is incomplete")

    fig.tight_layout()
    try:
        check_target(path, "plot", overwrite=overwrite)
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), verify,
                         replace=overwrite)  # fmt: skip
    finally:
        plt.close(fig)
