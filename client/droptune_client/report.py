"""A job's report (`GET /api/v1/jobs/{id}/report`) as text: the verdict first, then its figures."""

from __future__ import annotations

from typing import Any

from droptune_client.table import table


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def interval(value: dict[str, Any] | None) -> str:
    if value is None:
        return "-"
    if value.get("low") is None:
        return num(value["estimate"])
    return f"{num(value['estimate'])} [{num(value['low'])}, {num(value['high'])}]"


def stats(value: dict[str, Any] | None) -> str:
    if value is None:
        return "-"
    text = num(value["mean"]) + (f" ± {num(value['sd'])}" if value.get("sd") is not None else "")
    return f"{text} (n={value['n']})"


def levels(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{level['value']}: {stats(level['score'])}" for level in items) or "-"


def render_report(report: dict[str, Any]) -> str:
    verdict = report["verdict"]
    # The level of the intervals, from the report (a server older than the field does not say).
    level = f"{report['confidence']:.0%} CI" if report.get("confidence") else "CI"
    lines = [
        f"verdict:     {verdict['answer']}" + ("" if report["final"] else " (not final: the job has not ended)"),
        f"             {verdict['sentence']}",
        f"objective:   {report['objective']} ({report['direction']}), {report['repeats']} seeds per confirmation",
        f"difference:  {interval(verdict.get('difference'))}  (baseline - dropout; > 0 favours dropout)",
        f"recommended: {verdict.get('recommended') or '-'}",
    ]
    if report["confirmed"]:
        rows = [
            {
                "arm": c["arm"],
                "configuration": c["label"],
                "recommended": c["recommended"],
                "score": stats(c["score"]),
                level: f"[{num(c['score']['low'])}, {num(c['score']['high'])}]",
                "best epoch": num(c["best_epoch"]["mean"]),
            }
            for c in report["confirmed"]
        ]
        lines += ["", "confirmed over seeds:", table(rows)]
    effects = report["effects"]
    lines += [
        "",
        f"effects ({effects['trials']} search trials):",
        f"  by rate:   {levels(effects['by_rate'])}",
        f"  by layers: {levels(effects['by_layers'])}",
        "  variance explained: " + (", ".join(f"{k} {v:.0%}" for k, v in effects["variance_explained"].items()) or "-"),
    ]
    if report.get("convergence"):
        lines.append(f"convergence: {report['convergence']['sentence']}")
    if report.get("smaller_network"):
        lines.append(f"smaller network: {report['smaller_network']['sentence']}")
    mc = report.get("mc_dropout")
    if mc:
        calibration = ", ".join(f"{k} {num(v)}" for k, v in mc["calibration"].items())
        lines.append(
            f"MC dropout ({mc['samples']} passes, {mc['label']}): deterministic {num(mc['deterministic'])}, "
            f"mc {num(mc['mc'])}, spread {num(mc['spread'])}; {calibration}"
        )
    return "\n".join(lines)
