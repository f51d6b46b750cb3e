"""Tables and a chart from what ``compare.py`` measured.

    python report.py OUT      # reads OUT/results.json, writes OUT/report.md and OUT/chart.png

The tables are what bench/RESULTS.md quotes. Medians over rounds, spread as
min to max; walls, ratios and per-task overheads count only the rounds whose
run succeeded (a failed round is listed above the tables and counted in the
wall's cell). Ratios are pave / Airflow of the medians (below 1: pave is
faster or smaller); "x faster" is their inverse.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

#: A round with fewer memory samples than this may have missed its peak (a
#: run shorter than a few sampling intervals): its cell is marked and has
#: no ratio.
MIN_MEMORY_SAMPLES = 3

MODES = {"test": "`airflow dags test` vs `pave dags test`", "service": "Airflow's services vs `pave standalone` (trigger to run end)"}


def med(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{min(xs):.2f} to {max(xs):.2f}"


def fmt(x: float | None, unit: str = "s", digits: int = 2) -> str:
    if x is None:
        return "-"
    if unit == "ms":
        return f"{x * 1000:.{digits}f} ms"
    if unit == "MiB":
        return f"{x / 1024:.0f} MiB"
    return f"{x:.{digits}f} s"


def ratio(p: float | None, a: float | None) -> str:
    if p is None or a is None or a == 0 or p == 0:
        return "-"
    return f"{p / a:.4f} ({a / p:.0f}x)" if a / p >= 10 else f"{p / a:.3f} ({a / p:.1f}x)"


def round_ratios(samples: list[dict[str, Any]], mode: str, case: str) -> str:
    """How many times faster pave was than Airflow round by round (both ran
    in the same round, one after the other), as ``"A to B"``: Airflow's
    own wall moves a lot between rounds (101 to 210 s for the same 1000
    mapped tasks on one machine), so the median ratio alone hides how far
    a single comparison can land from it. Empty with fewer than two rounds
    in which both succeeded."""
    walls: dict[tuple[str, int], float] = {}
    for s in samples:
        if s["mode"] == mode and s["case"] == case and s["system"] in ("airflow", "pave") \
                and s.get("run_state") == "success" and s.get("wall_s"):
            walls[(s["system"], s["round"])] = s["wall_s"]
    xs = sorted(walls[("airflow", r)] / walls[("pave", r)]
                for (system, r) in walls if system == "pave" and ("airflow", r) in walls)
    if len(xs) < 2:
        return ""
    digits = 0 if xs[0] >= 10 else 1
    return f"{xs[0]:.{digits}f}x to {xs[-1]:.{digits}f}x"


def pick(samples: list[dict[str, Any]], mode: str, system: str, case: str, key: str) -> list[float]:
    return [s[key] for s in samples if s["mode"] == mode and s["system"] == system and s["case"] == case and s.get(key) is not None]


def pick_ok(samples: list[dict[str, Any]], mode: str, system: str, case: str, key: str) -> list[float]:
    """``pick`` over the rounds whose run succeeded: a failed run's wall is
    not the time the work takes, so walls and ratios leave it out."""
    return [s[key] for s in samples if s["mode"] == mode and s["system"] == system and s["case"] == case
            and s.get(key) is not None and s.get("run_state") == "success"]


def wall_cell(all_walls: list[float], ok_walls: list[float]) -> str:
    """Median (spread) of the successful rounds, saying how many failed."""
    cell = f"{fmt(med(ok_walls))} ({spread(ok_walls)})"
    failed = len(all_walls) - len(ok_walls)
    if failed:
        cell += f" [{failed} of {len(all_walls)} failed, left out]"
    return cell


def floor_of(samples: list[dict[str, Any]], mode: str, case: str, system: str = "floor") -> float | None:
    """The median wall of a floor (``floor``: bare spawns, ``fork_floor``:
    forks of one interpreter) in ``mode``'s rounds, or else in any mode's."""
    own = med(pick(samples, mode, system, case, "wall_s"))
    if own is not None:
        return own
    return med([s["wall_s"] for s in samples if s["system"] == system and s["case"] == case])


def report(res: dict[str, Any]) -> str:
    samples = res["samples"]
    cases = res["cases"]
    v, m = res["versions"], res["machine"]
    out = [
        f"Run {res['started']} to {res.get('finished', '?')}; {res['runs']} round(s), order alternating each round;"
        f" parallelism {res['parallelism']} for both systems and the floor.",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']};"
        f" load average before {tuple(round(x, 1) for x in res['load_before'])},"
        f" after {tuple(round(x, 1) for x in res.get('load_after', (0, 0, 0)))}.",
        f"Versions: Apache Airflow {v['airflow']} (core {v['airflow_core']}, task SDK {v['airflow_task_sdk']}), {v['pave']}, {v['python']}.",
        "",
    ]
    bad = [s for s in samples if s["system"] in ("airflow", "pave") and s["run_state"] != "success"]
    for s in bad:
        out.append(f"**not a success**: {s['mode']} {s['system']} {s['case']} round {s['round']}: {s['run_state']} {s.get('ti_states')}")
    if bad:
        out.append("")
    for mode, title in MODES.items():
        if not any(s["mode"] == mode for s in samples):
            continue
        out += [f"### {title}", ""]
        out.append(
            "| case | tasks | Airflow wall | pave wall | floor (bare spawns) | floor (forks) | pave / Airflow"
            " | round by round | pave above the bare spawns |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for name, c in cases.items():
            a_all = pick(samples, mode, "airflow", name, "wall_s")
            p_all = pick(samples, mode, "pave", name, "wall_s")
            if not a_all and not p_all:
                continue
            a = pick_ok(samples, mode, "airflow", name, "wall_s")
            p = pick_ok(samples, mode, "pave", name, "wall_s")
            fl = floor_of(samples, mode, name)
            ff = floor_of(samples, mode, name, "fork_floor")
            pm = med(p)
            above = "-" if pm is None or fl is None else f"{pm - fl:+.2f} s ({pm / fl:.2f}x)"
            out.append(
                f"| {name} | {c['tasks']} | {wall_cell(a_all, a)} | {wall_cell(p_all, p)} | {fmt(fl)} | {fmt(ff)}"
                f" | {ratio(pm, med(a))} | {round_ratios(samples, mode, name) or '-'} | {above} |"
            )
        out += ["", "| case | first task start, Airflow / pave | hop (end to next start), Airflow / pave | overhead per task above the forks, Airflow / pave |", "|---|---|---|---|"]
        for name, c in cases.items():
            if not pick(samples, mode, "airflow", name, "wall_s") and not pick(samples, mode, "pave", name, "wall_s"):
                continue
            a = pick_ok(samples, mode, "airflow", name, "wall_s")
            p = pick_ok(samples, mode, "pave", name, "wall_s")
            # What the system adds per task to a process per task (both
            # give each task one): its wall above the forks' floor.
            fl = floor_of(samples, mode, name, "fork_floor")

            def per_task(xs: list[float]) -> str:
                x = med(xs)
                return "-" if x is None or fl is None else fmt((x - fl) / c["tasks"], "ms", 1)

            fa = med(pick(samples, mode, "airflow", name, "first_task_start_s"))
            fp = med(pick(samples, mode, "pave", name, "first_task_start_s"))
            ha = med(pick(samples, mode, "airflow", name, "hop_median_s"))
            hp = med(pick(samples, mode, "pave", name, "hop_median_s"))
            hops = f"{fmt(ha, 'ms', 1)} / {fmt(hp, 'ms', 1)}" if c["chain"] else "-"
            out.append(f"| {name} | {fmt(fa)} / {fmt(fp)} | {hops} | {per_task(a)} / {per_task(p)} |")
        out += ["", "| memory, whole system (peak, median over rounds) | Airflow | pave | pave / Airflow |", "|---|---|---|---|"]
        thin_cells = False
        for key, label in (("peak_pss_kib", "sum of PSS"), ("peak_rss_kib", "sum of RSS"), ("peak_procs", "processes"),
                           ("memory_samples", "samples taken")):
            for name in cases:
                a = med(pick(samples, mode, "airflow", name, key))
                p = med(pick(samples, mode, "pave", name, key))
                if a is None and p is None:
                    continue
                cells, thin = [], False
                for system, x in (("airflow", a), ("pave", p)):
                    cell = "-" if x is None else (fmt(x, "MiB") if key.endswith("_kib") else f"{x:.0f}")
                    taken = med(pick(samples, mode, system, name, "memory_samples"))
                    if key != "memory_samples" and x is not None and taken is not None and taken < MIN_MEMORY_SAMPLES:
                        cell += " (too few samples)"
                        thin = True
                    cells.append(cell)
                thin_cells = thin_cells or thin
                r = "-" if not a or not p or thin or key == "memory_samples" else f"{p / a:.3f}"
                what = f"{label}, {name}" if mode == "test" else f"{label} (a round of every case)"
                out.append(f"| {what} | {cells[0]} | {cells[1]} | {r} |")
                if mode == "service":
                    break
        if thin_cells:
            out += ["", f"A cell marked \"too few samples\" comes from rounds with fewer than {MIN_MEMORY_SAMPLES} memory "
                    "samples (a run shorter than a few sampling intervals): it may have missed the peak, so it has no ratio."]
        if mode == "service":
            st_a = med([s["startup_s"] for s in samples if s["mode"] == mode and s["system"] == "airflow"])
            st_p = med([s["startup_s"] for s in samples if s["mode"] == mode and s["system"] == "pave"])
            out += ["", f"Start-up to ready (services answering, every DAG parsed): Airflow {fmt(st_a)}, pave {fmt(st_p)} (not in the walls above)."]
        out.append("")
    return "\n".join(out)


def chart(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = res["samples"]
    modes = [m for m in MODES if any(s["mode"] == m for s in samples)]
    fig, axes = plt.subplots(1, len(modes), figsize=(7 * len(modes), 4.8), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        names = [n for n in res["cases"] if pick(samples, mode, "pave", n, "wall_s") or pick(samples, mode, "airflow", n, "wall_s")]
        series = [
            ("Airflow 3", "airflow", "#d95f02"),
            ("pave", "pave", "#1b9e77"),
            ("bare spawns (floor)", "floor", "#7570b3"),
            ("forks of one interpreter (floor)", "fork_floor", "#a6a6a6"),
        ]
        width = 0.2
        for i, (label, system, color) in enumerate(series):
            ys = []
            for n in names:
                if system in ("floor", "fork_floor"):
                    y = floor_of(samples, mode, n, system)
                else:
                    y = med(pick_ok(samples, mode, system, n, "wall_s"))
                ys.append(y or 0)
            xs = [j + (i - 1.5) * width for j in range(len(names))]
            ax.bar(xs, ys, width, label=label, color=color)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_ylabel("wall time, s (log scale)")
        ax.set_title({"test": "dags test: command start to exit", "service": "services: trigger to run end"}[mode])
        ax.grid(axis="y", which="both", alpha=0.3)
        # Below the plot: inside, it would hide the tallest bars.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False)
    v = res["versions"]
    fig.suptitle(f"Same Airflow DAG files: Apache Airflow {v['airflow']} vs {v['pave']} ({res['machine']['cores']} cores, medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> int:
    out = Path(sys.argv[1])
    res = json.loads((out / "results.json").read_text())
    text = report(res)
    (out / "report.md").write_text(text + "\n")
    print(text)
    try:
        chart(res, out / "chart.png")
    except ImportError:
        print("(no matplotlib: chart skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
