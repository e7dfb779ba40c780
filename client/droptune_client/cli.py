"""The `droptune` command."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from droptune_client import config
from droptune_client.client import Client
from droptune_client.errors import DroptuneError, Exit, UsageError
from droptune_client.progress import ProgressPrinter, final_line
from droptune_client.report import render_report
from droptune_client.table import table, trial_rows

EPILOG = """\
settings: --url/--token, else DROPTUNE_URL / DROPTUNE_TOKEN, else the file `droptune login` writes
($XDG_CONFIG_HOME/droptune/config.json, by default ~/.config/droptune/config.json); url defaults to
http://127.0.0.1:8000.

exit codes:
  0  the command worked (submit --follow and follow: the job succeeded)
  1  the job failed
  2  bad usage or input: the API refused the request (400, 404, 409, 413, 422)
  3  the job was cancelled
  4  the server cannot be reached, or stayed busy or unavailable (429, 5xx) after retries
  5  not authenticated: no token, or the server refused it (401, 403)
"""
JOB_EXIT = {"succeeded": Exit.OK, "failed": Exit.FAILED, "cancelled": Exit.CANCELLED}
DATASET_COLUMNS = ["id", "name", "format", "task", "n_samples", "n_features", "n_classes", "target"]
NETWORK_COLUMNS = ["id", "name", "model_class", "layers", "parameters", "dropout_sites", "created_at"]
JOB_COLUMNS = ["id", "name", "dataset_id", "algorithm", "status", "progress", "best", "created_at"]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 too; say how to get help
        self.print_usage(sys.stderr)
        self.exit(Exit.USAGE, f"{self.prog}: error: {message}\n")


def out(text: str) -> None:
    print(text, flush=True)


def dump(value: Any) -> None:
    out(json.dumps(value, indent=2))


def job_row(job: dict[str, Any]) -> dict[str, Any]:
    best = job.get("best")
    return {
        **job,
        "progress": f"{job['progress']['finished']}/{job['progress']['planned']}",
        "best": None if best is None or best["score"] is None else round(best["score"], 4),
        "created_at": job["created_at"][:19].replace("T", " "),
    }


def show_job(job: dict[str, Any]) -> str:
    best = job.get("best")
    lines = [
        ("job", job["id"]),
        ("name", job["name"]),
        (
            "status",
            job["status"] + (" (cancel requested)" if job["cancel_requested"] and job["status"] == "running" else ""),
        ),
        ("dataset", job["dataset_id"]),
        ("algorithm", job["algorithm"]),
        ("objective", f"{job['spec']['objective']['metric']} ({job['spec']['objective'].get('direction') or 'auto'})"),
        ("trials", f"{job['progress']['finished']}/{job['progress']['planned']}"),
        ("packs", packs_text(job)),
        (
            "best",
            "-"
            if best is None
            else f"trial {best['number']}: {best['score']:.4g} {json.dumps(best['hyperparameters'])}",
        ),
        ("created", job["created_at"]),
        ("started", job.get("started_at") or "-"),
        ("finished", job.get("finished_at") or "-"),
    ]
    if job.get("error"):
        lines.append(("error", job["error"]))
    return "\n".join(f"{k + ':':<11}{v}" for k, v in lines)


def packs_text(job: dict[str, Any]) -> str:
    """How the job's trials train together: as its search packed them once started, else as planned.
    A Bayesian search packs its initial random points first, then a few points chosen together, so
    that each pack learns from the results before it."""
    execution = job.get("execution") or {}
    bayesian = execution.get("bayesian") if execution else job.get("bayesian")
    if execution.get("reason"):
        return f"one trial at a time: {execution['reason']}"
    if bayesian:
        return (
            f"a first pack of its {plural(bayesian['initial_points'], 'initial random point')}, then packs of "
            f"{bayesian['pack_size']} chosen together from the results before them"
        )
    size = execution.get("pack_size", job["spec"].get("pack_size", "auto"))
    if size == 1:
        return "one trial at a time"
    return f"up to {size} trials together" if execution else f"pack size {size}"


def read_spec(path: str) -> dict[str, Any]:
    """A job spec from a .json or .yaml file ("-": JSON on stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError as exc:
                raise UsageError("YAML specs need PyYAML: pip install 'droptune-client[yaml]'") from exc
            spec = yaml.safe_load(text)
        else:
            spec = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError's parsers
        raise UsageError(f"{path} is not valid: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError is not a ValueError
        raise UsageError(f"{path} is not valid: {exc}".splitlines()[0]) from exc
    if not isinstance(spec, dict):
        raise UsageError(f"{path} must hold a mapping (the job spec), not {type(spec).__name__}")
    return spec


def follow(client: Client, job_id: str) -> int:
    job = client.wait(job_id, progress=ProgressPrinter(sys.stderr))
    out(final_line(job))
    return JOB_EXIT.get(job["status"], Exit.FAILED)


def run(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "login":
        return login(args)
    with Client(args.url, args.token) as client:
        as_json = getattr(args, "json", False)
        if cmd == "datasets":
            return datasets(client, args, as_json)
        if cmd == "networks":
            return networks(client, args, as_json)
        if cmd == "submit":
            job = client.submit(read_spec(args.spec))
            if as_json and not args.follow:
                dump(job)
            else:
                planned = plural(job["progress"]["planned"], "trial")
                bayesian = f"; {packs_text(job)}" if job.get("bayesian") else ""
                out(f"submitted job {job['id']} ({job['name']}): {planned} planned{bayesian}")
            return follow(client, job["id"]) if args.follow else Exit.OK
        if cmd == "jobs":
            jobs = client.jobs(args.status, args.limit)
            dump(jobs) if as_json else out(table([job_row(j) for j in jobs], JOB_COLUMNS))
        elif cmd == "show":
            job = client.job(args.job)
            dump(job) if as_json else out(show_job(job))
        elif cmd == "follow":
            return follow(client, args.job)
        elif cmd == "trials":
            trials = client.trials(args.job, sort=args.sort, order=args.order, limit=args.limit)
            if as_json:
                dump(trials)
            else:
                rows = trial_rows(trials)
                for row in rows:  # the table stays narrow; `--json` has them all
                    row.pop("started_at", None)
                    row["error"] = (row["error"] or "")[:60] or None
                out(table(rows))
        elif cmd == "report":
            report = client.report(args.job)
            dump(report) if as_json else out(render_report(report))
        elif cmd == "model":
            path = client.download_model(args.job, args.output, trial=args.trial, format=args.format)
            out(f"saved {path} ({path.stat().st_size} bytes)")
        elif cmd == "cancel":
            job = client.cancel(args.job)
            if as_json:
                dump(job)
            else:
                out(
                    f"job {job['id']} {job['status']}"
                    + (" (stopping at the next epoch)" if job["status"] == "running" else "")
                )
        elif cmd == "delete":
            client.delete(args.job)
            out(f"deleted job {args.job}")
    return Exit.OK


def datasets(client: Client, args: argparse.Namespace, as_json: bool) -> int:
    action = args.action
    if action == "list":
        items = client.datasets()
        dump(items) if as_json else out(table(items, DATASET_COLUMNS))
    elif action in ("show", "upload"):
        item = (
            client.dataset(args.id)
            if action == "show"
            else client.upload(args.file, name=args.name, target=args.target)
        )
        if as_json:
            dump(item)
        else:
            out(fields(item))
    elif action == "delete":
        client.delete_dataset(args.id)
        out(f"deleted dataset {args.id}")
    return Exit.OK


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def fields(item: dict[str, Any]) -> str:
    """A record as `name: value` lines, the values in one column however long the longest name."""
    width = max((len(k) for k in item), default=0) + 2
    shown = {k: "-" if v is None else ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in item.items()}
    return "\n".join(f"{k + ':':<{width}}{v}" for k, v in shown.items())


def networks(client: Client, args: argparse.Namespace, as_json: bool) -> int:
    action = args.action
    if action == "list":
        items = client.networks()
        rows = [{**n, "layers": len(n["layers"]), "dropout_sites": len(n["dropout_sites"])} for n in items]
        dump(items) if as_json else out(table(rows, NETWORK_COLUMNS))
    elif action in ("show", "upload"):
        item = client.network(args.id) if action == "show" else client.upload_network(args.file, name=args.name)
        dump(item) if as_json else out(show_network(item))
    elif action == "delete":
        client.delete_network(args.id)
        out(f"deleted network {args.id}")
    return Exit.OK


def show_network(network: dict[str, Any]) -> str:
    """A network's summary, then its layers with the dropout sites marked where dropout goes."""
    compile_settings = network["compile"] or {}
    optimizer = (compile_settings.get("optimizer") or {}).get("class_name")
    head = [
        f"{'id:':<14}{network['id']}",
        f"{'name:':<14}{network['name']}",
        f"{'model:':<14}{network['model_class']}, {len(network['layers'])} layers, "
        f"{network['parameters'] if network['parameters'] is not None else '?'} parameters",
        f"{'inputs:':<14}" + ", ".join(f"{i['name']} {i['shape']} {i['dtype']}" for i in network["inputs"]),
        f"{'compiled:':<14}"
        + (
            f"loss {compile_settings.get('loss')}, {optimizer}, metrics {compile_settings.get('metrics')}"
            if compile_settings
            else "no (the job's spec gives loss and optimizer)"
        ),
        "",
    ]
    sites = {site["after"]: site for site in network["dropout_sites"]}
    own = {site["layer"] for site in network["dropout_sites"] if site["layer"]}
    rows = []
    for layer in network["layers"]:
        site = sites.get(layer["name"])
        mark = "searched" if layer["name"] in own else (f"+ {site['kind']}" if site and not site["layer"] else "")
        rows.append(
            {
                "layer": layer["name"],
                "class": layer["class_name"],
                "output": "?" if layer["output_shape"] is None else str(layer["output_shape"]),
                "parameters": layer["parameters"],
                "dropout": mark or None,
            }
        )
    return "\n".join(head) + table(rows)


def login(args: argparse.Namespace) -> int:
    """Ask for the URL and token (or take the flags), check them against the server, save them."""
    current = config.read_config()
    url = args.url or input(f"droptune URL [{current.get('url', config.DEFAULT_URL)}]: ").strip()
    url = (url or current.get("url") or config.DEFAULT_URL).rstrip("/")
    token = args.token or getpass.getpass("API token (dtk_...): ").strip()
    if not token:
        raise UsageError("no token given")
    with Client(url, token) as client:
        me = client.me()
    path = config.write_config(url, token)
    out(f"signed in to {url} as {me['owner']}; saved to {path}")
    return Exit.OK


def parser() -> argparse.ArgumentParser:
    top = Parser(
        prog="droptune",
        description="Search the dropout of Keras models with a droptune service.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--url", help="the service, e.g. http://127.0.0.1:8000 (env DROPTUNE_URL)")
    top.add_argument("--token", help="an API token, dtk_... (env DROPTUNE_TOKEN)")
    # The same flags after the command too (`droptune login --url ...`); SUPPRESS keeps a value given
    # before the command when none is given after it.
    common = Parser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name: str, help: str, json_flag: bool = True) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help, parents=[common])
        if json_flag:
            cmd.add_argument("--json", action="store_true", help="print the API's JSON")
        return cmd

    ds = command("datasets", "list, upload, show or delete datasets", json_flag=False)
    actions = ds.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    actions.add_parser("list", help="every dataset you can use", parents=[common]).add_argument(
        "--json", action="store_true"
    )
    up = actions.add_parser("upload", help="upload a CSV (header row) or NPZ (arrays x and y)", parents=[common])
    up.add_argument("file")
    up.add_argument("--target", help="the CSV's target column (default: the last)")
    up.add_argument("--name", help="a name for it (default: the file's)")
    up.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="describe a dataset", parents=[common])
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    actions.add_parser("delete", help="delete an uploaded dataset", parents=[common]).add_argument("id")

    nets = command("networks", "list, upload, show or delete your own Keras networks", json_flag=False)
    net_actions = nets.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    net_actions.add_parser("list", help="your networks", parents=[common]).add_argument("--json", action="store_true")
    net_up = net_actions.add_parser(
        "upload", help="upload a .keras file (Sequential or Functional, built-in layers)", parents=[common]
    )
    net_up.add_argument("file")
    net_up.add_argument("--name", help="a name for it (default: the file's)")
    net_up.add_argument("--json", action="store_true")
    net_show = net_actions.add_parser("show", help="a network's layers and dropout sites", parents=[common])
    net_show.add_argument("id")
    net_show.add_argument("--json", action="store_true")
    net_actions.add_parser("delete", help="delete a network", parents=[common]).add_argument("id")

    submit = command("submit", "submit a job spec (.json or .yaml; - for JSON on stdin)")
    submit.add_argument("spec")
    submit.add_argument("--follow", action="store_true", help="then follow it; the exit code is the job's outcome")
    jobs = command("jobs", "list jobs, newest first")
    jobs.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    jobs.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    command("show", "a job's status, progress and best trial").add_argument("job")
    command("follow", "follow a job until it ends; the exit code is its outcome", json_flag=False).add_argument("job")
    trials = command("trials", "a job's trials as a table")
    trials.add_argument("job")
    trials.add_argument("--sort", choices=["number", "score", "duration"], default="number", help="score: best first")
    trials.add_argument("--order", choices=["asc", "desc"], default="asc")
    trials.add_argument("--limit", type=int, help="at most this many")
    command("report", "the dropout verdict and its figures").add_argument("job")
    model = command("model", "download the job's model (or a kept trial's)", json_flag=False)
    model.add_argument("job")
    model.add_argument("-o", "--output", help="the file to write (default: the server's file name)")
    model.add_argument("--trial", type=int, help="a kept trial's model instead of the job's")
    model.add_argument("--format", choices=["keras", "savedmodel"], default="keras", help="savedmodel: a tar.gz")
    command("cancel", "cancel a queued or running job").add_argument("job")
    command("delete", "delete a finished job and its trials", json_flag=False).add_argument("job")
    command("login", "save the URL and a token for later commands", json_flag=False)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(run(args))
    except DroptuneError as exc:
        print(f"droptune: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
