"""A job's report (`GET /api/v1/jobs/{id}/report`) as text: the verdict first, then its figures.

Reports stored by older servers lack some fields (`notes`, `reference`, `variance_method`, ...):
each is read with `.get` and left out when missing."""

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
    text = num(value["mean"]) + (f" ± {num(value['sd'])} sd" if value.get("sd") is not None else "")
    return f"{text} (n={value['n']})"


def advantage(report: dict[str, Any], first: str, second: str) -> str:
    """How an advantage of `first` over `second` is taken, so that its sign reads right: > 0 favours
    `first` whichever way the objective goes."""
    objective = report["objective"]
    if report["direction"] == "max":
        return f"{first} {objective} - {second}'s"
    return f"{second} {objective} - {first}'s"


def variance(effects: dict[str, Any]) -> str:
    shares = ", ".join(f"{k} {v:.0%}" for k, v in effects["variance_explained"].items()) or "-"
    if effects.get("variance_method") == "sequential":
        return f"  variance explained (sequential sums of squares, in this order; they add up to 100%): {shares}"
    return f"  variance explained (eta squared of each alone: may overlap): {shares}"


def levels(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{level['value']}: {stats(level['score'])}" for level in items) or "-"


def render_report(report: dict[str, Any]) -> str:
    verdict = report["verdict"]
    # The level of the intervals, from the report (a server older than the field does not say).
    level = f"{report['confidence']:.0%} CI" if report.get("confidence") else "CI"
    family = verdict.get("comparisons") or 1
    together = f", simultaneous over {family} configurations" if family > 1 and verdict["answer"] != "hurts" else ""
    lines = [
        f"verdict:     {verdict['answer']}" + ("" if report["final"] else " (not final: the job has not ended)"),
        f"             {verdict['sentence']}",
        *(f"note:        {note['text']}" for note in verdict.get("notes") or []),
        f"objective:   {report['objective']} ({report['direction']}), {report['repeats']} seeds per confirmation",
        f"advantage:   {interval(verdict.get('difference'))}  (dropout over no dropout: "
        f"{advantage(report, 'dropout', 'baseline')}; > 0: dropout better{together})",
    ]
    if verdict.get("detectable") is not None:
        detectable = num(verdict["detectable"])
        lines.append(f"detectable:  {detectable}  (the smallest advantage these runs could detect, 80% power)")
    reference = report.get("reference")
    if reference:
        beaten = {True: "no confirmed configuration beats it", False: "see beats trivial", None: "too few runs to tell"}
        lines.append(
            f"trivial:     {num(reference['score'])}  ({reference['description']}; "
            f"{beaten[reference.get('no_better_than_reference')]})"
        )
    lines.append(f"recommended: {verdict.get('recommended') or '-'}")
    if report["confirmed"]:
        rows = []
        for c in report["confirmed"]:
            row = {
                "arm": c["arm"],
                "configuration": c["label"],
                "recommended": c["recommended"],
                "score": stats(c["score"]),
                level: f"[{num(c['score']['low'])}, {num(c['score']['high'])}]",
                "best epoch": num(c["best_epoch"]["mean"]),
            }
            if verdict.get("comparisons") is not None:
                row["advantage over no dropout"] = interval(c.get("versus_baseline"))
            if reference:
                row["beats trivial"] = {True: "yes", False: "no"}.get(c.get("beats_reference"), "-")
            rows.append(row)
        lines += ["", "confirmed over seeds (± is an sd over seeds):", table(rows)]
    effects = report["effects"]
    lines += [
        "",
        f"effects ({effects['trials']} search trials):",
        f"  by rate:   {levels(effects['by_rate'])}",
        f"  by layers: {levels(effects['by_layers'])}",
        variance(effects),
    ]
    if report.get("convergence"):
        lines.append(f"convergence: {report['convergence']['sentence']}")
    if report.get("smaller_network"):
        lines.append(f"smaller network: {report['smaller_network']['sentence']}")
    mc = report.get("mc_dropout")
    if mc:
        noise = mc.get("noise") or {}

        def noisy(key: str, value: float) -> str:
            span = noise.get(key)
            return f"{num(value)} [{num(span[0])}, {num(span[1])}]" if span else num(value)

        calibration = ", ".join(f"{k} {noisy(k, v)}" for k, v in mc["calibration"].items())
        served = f", served model {mc['model']}" if mc.get("model") else ""
        sets = f"; [ranges over {mc['pass_seeds']} sets of passes]" if noise else ""
        lines.append(
            f"MC dropout (T={mc['samples']} passes, {mc['label']}{served}): deterministic {num(mc['deterministic'])}, "
            f"mc {noisy('mc', mc['mc'])}, spread {noisy('spread', mc['spread'])}; {calibration}{sets}"
        )
    if report.get("mc_dropout_note"):
        lines.append(f"MC dropout: {report['mc_dropout_note']}")
    return "\n".join(lines)
