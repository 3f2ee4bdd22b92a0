"""``fedgate train``: a federated training run on Flower, each owner on its own rows."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.common import (
    INT32,
    Subparsers,
    add_command,
    client_options,
    file_name,
    path,
    profile,
    seconds,
    whole,
    writable_folder,
)
from gateway.errors import InvalidArgument

if TYPE_CHECKING:
    from gateway.roles.train_home import TrainResult, TrainRound

STRATEGIES = (
    "fedavg",
    "fedprox",
    "fedadam",
    "fedyogi",
    "fedadagrad",
    "fedmedian",
    "fedtrimmedavg",
    "krum",
)


def _names(text: str, what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise InvalidArgument(f"{what}: name at least one, comma-separated")
    return names


def _show(r: TrainRound, quiet: bool) -> None:
    if quiet:
        return
    parts = [f"round {r.round:>3}/{r.rounds}", f"nodes {r.answered}"]
    for name, value in (
        ("train loss", r.train_loss),
        ("eval loss", r.eval_loss),
        ("accuracy", r.eval_accuracy),
    ):
        if not math.isnan(value):  # a DP run releases no loss; a regression no accuracy
            parts.append(f"{name} {value:.4f}")
    print(
        "  ".join(parts) + f"  ({r.elapsed:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


def write_run(result: TrainResult, out: Path) -> list[Path]:
    """The run's folder: model, per-round metrics, receipts, and the plot."""
    from gateway.training.plot import chart, png

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "model.npz", out / "metrics.json", out / "plot.png"]
    written[0].write_bytes(result.model_npz)
    rounds = [
        {
            "round": r.round,
            "nodes_answered": r.answered,
            "train_loss": None if math.isnan(r.train_loss) else r.train_loss,
            "eval_loss": None if math.isnan(r.eval_loss) else r.eval_loss,
            "eval_accuracy": None if math.isnan(r.eval_accuracy) else r.eval_accuracy,
            "elapsed_seconds": r.elapsed,
        }
        for r in result.rounds
    ]
    refusals = [
        {"owner": o.node_id, "code": o.error.code.name, "reason": o.error.reason}
        for o in result.owners
        if o.error is not None
    ]
    meta: dict[str, object] = {
        "run_id": result.run_id,
        "task": result.task,
        "features": list(result.features),
        "label": result.label,
        "mean": list(result.mean),
        "std": list(result.std),
        "rounds": rounds,
        "refusals": refusals,
    }
    if result.dp_epsilon:  # Flower's central DP: the model's guarantee
        meta["dp"] = {"epsilon": result.dp_epsilon, "delta": result.dp_delta}
    written[1].write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
    series = {
        "train loss": [r.train_loss for r in result.rounds],
        "eval loss": [r.eval_loss for r in result.rounds],
        "accuracy": [r.eval_accuracy for r in result.rounds],
    }
    written[2].write_bytes(png(chart(series)))
    receipts = out / "receipts"
    receipts.mkdir(exist_ok=True)
    for i, o in enumerate(result.owners):
        if o.receipt:
            path = receipts / (file_name(f"{i:04d}", o.node_id) + ".json")
            path.write_text(o.receipt)
            written.append(path)
    return written


def cmd_runs(args: argparse.Namespace) -> int:
    """``fedgate train list | status RUN | cancel RUN``."""
    from gateway import display
    from gateway.client import Client

    if args.action != "list" and not args.run:
        raise InvalidArgument(f"fedgate train {args.action} needs a run id")
    with Client(profile(args)) as c:
        if args.action == "cancel":
            r = c.train_cancel(args.run)
            if r.state == "running":
                print(f"run {r.run_id}: cancelled; it stops at every node at its next step")
            else:
                print(f"run {r.run_id} had already ended ({r.state}): nothing to cancel")
            return 0
        runs = c.train_runs(args.run if args.action == "status" else "")

    def acc(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.4f}"

    rows = [
        [r.run_id, r.state, f"{r.round}/{r.rounds}", r.task, r.dataset, acc(r.eval_accuracy),
         r.started, r.reason]
        for r in runs
    ]  # fmt: skip
    headers = ["run", "state", "round", "task", "dataset", "accuracy", "started", "reason"]
    print(display.table(headers, rows))
    return 0


def _dp(text: str) -> tuple[float, float]:
    """``CLIP`` or ``NOISE,CLIP`` as (noise multiplier, clipping bound)."""
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError("write CLIP or NOISE,CLIP (numbers)") from None
    if len(values) == 1:
        return 0.0, values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise argparse.ArgumentTypeError("write CLIP or NOISE,CLIP")


def cmd_train(args: argparse.Namespace) -> int:
    from gateway.client import Client
    from gateway.roles.train_home import EVERY_PUBLISHER, TrainAsk
    from gateway.training.spec import TrainSpec

    if args.action is not None:
        return cmd_runs(args)
    missing = [f"--{n}" for n in ("dataset", "features", "label", "out")
               if not getattr(args, n)]  # fmt: skip
    if not args.task and not args.app:
        missing.insert(0, "--task (or --app)")
    if missing:
        raise InvalidArgument(f"fedgate train needs {', '.join(missing)}")
    if args.task and args.app:
        raise InvalidArgument("--task or --app, not both")
    writable_folder(args.out, "--out")  # before the run: its model would have nowhere to go
    features = _names(args.features, "--features")
    task = args.task
    if args.app:
        from federation.training.app_bundle import task_of
        from gateway.cli.custom_app import read_app

        task = task_of(read_app(args.app).digest)

    spec = TrainSpec(
        task=task,
        dataset=args.dataset,
        features=features,
        label=args.label,
        rounds=args.rounds,
        strategy=args.strategy,
        min_nodes=args.min_nodes,
        seed=args.seed,
        learning_rate=args.lr,
        local_epochs=args.epochs,
        n_classes=args.classes,
        dp_clip=args.dp[1],
        dp_noise=args.dp[0],
        secagg=args.secagg,
    )
    if not args.nodes:
        raise InvalidArgument(
            "fedgate train needs --nodes a,b,c (the owners that train), or --nodes all"
        )
    nodes = EVERY_PUBLISHER if args.nodes == "all" else _names(args.nodes, "--nodes")
    if nodes == EVERY_PUBLISHER:
        print(f"--nodes all: every member that lists {args.dataset!r} trains", file=sys.stderr)
    ask = TrainAsk(spec, nodes, args.purpose)
    with Client(profile(args), timeout=args.timeout) as c:
        run = c.train(ask, on_round=lambda r: _show(r, args.quiet))
        try:
            result = run.result()
        except KeyboardInterrupt:
            run.cancel()
            print("cancelled: the run stops at every node", file=sys.stderr)
            return 130
    written = write_run(result, Path(args.out))
    last = result.rounds[-1] if result.rounds else None
    if last is not None and not math.isnan(last.eval_accuracy):
        print(f"final accuracy {last.eval_accuracy:.4f}, eval loss {last.eval_loss:.4f}")
    elif last is not None and not math.isnan(last.eval_loss):
        print(f"final eval loss {last.eval_loss:.6g}")
    elif last is not None:
        print("no evaluation (a DP run): the model is in the run's folder")
    if result.dp_epsilon:
        print(
            f"central DP (Flower's RDP accountant, {len(result.rounds)} releases): "
            f"epsilon {result.dp_epsilon:.4g} at delta {result.dp_delta:g}"
        )
    receipts = sum(1 for o in result.owners if o.receipt)
    trained = sorted({o.node_id for o in result.owners if o.receipt})
    never = sorted({o.node_id for o in result.owners} - set(trained))
    print(
        f"run {result.run_id}: {len(result.rounds)} rounds at {', '.join(trained) or 'no owner'}, "
        f"{receipts} receipts"
        + (f" ({', '.join(never)} took no part: see metrics.json)" if never else "")
        + f"; wrote {len(written)} files to {args.out}",
        file=sys.stderr,
    )
    return 0


MAX_CLASSES = 1000  # federation.training.tasks.MAX_CLASSES (not imported: it loads numpy)


def _classes(value: str) -> int:
    """``--classes``: 2 to ``MAX_CLASSES``, or 0 (a custom app's regression); a number
    past the wire's field once ended in a traceback from building the message."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n != 0 and not 2 <= n <= MAX_CLASSES:
        raise argparse.ArgumentTypeError(f"must be 0 or 2 to {MAX_CLASSES}, got {n}")
    return n


def register(sub: Subparsers) -> None:
    sp = add_command(
        sub,
        "train",
        "train a model across owners on Flower; only model updates leave (docs/training.md)",
        cmd_train,
    )
    client_options(sp)
    sp.add_argument(
        "action",
        nargs="?",
        choices=["list", "status", "cancel"],
        help="instead of a new run: list your runs at your home, one's status, or cancel one",
    )
    sp.add_argument("run", nargs="?", default="", help="the run id (status, cancel)")
    sp.add_argument("--task", help="logreg | linreg | mlp | mlp_relu")
    sp.add_argument(
        "--app",
        type=path,
        metavar="DIR",
        help="instead of --task: a custom app's folder, which every owner's operator "
        "approved (fedgate app approve); its init makes the initial model here",
    )
    sp.add_argument("--dataset")
    sp.add_argument("--features", help="feature columns, comma-separated")
    sp.add_argument("--label", help="the label column")
    sp.add_argument(
        "--classes",
        type=_classes,
        default=2,
        help="classification: classes 0..N-1, N 2 to 1000 (a custom app's regression: 0)",
    )
    sp.add_argument("--rounds", type=whole(1, INT32), default=10)
    sp.add_argument("--strategy", choices=STRATEGIES, default="fedavg")
    sp.add_argument(
        "--nodes",
        help="the owners that train, comma-separated; all: every member that lists the "
        "dataset in the federated catalog",
    )
    sp.add_argument("--min-nodes", type=whole(0, INT32), default=0, help="0: every owner named")
    sp.add_argument("--seed", type=whole(0, 2**63 - 1), default=0)
    sp.add_argument("--lr", type=float, default=0.0, help="learning rate (0: the task's)")
    sp.add_argument(
        "--epochs", type=whole(0, INT32), default=0, help="local epochs (0: the task's)"
    )
    sp.add_argument("--purpose", default="", help="purpose of use; grants may require one")
    sp.add_argument(
        "--dp",
        type=_dp,
        default=(0.0, 0.0),
        metavar="[NOISE,]CLIP",
        help="differential privacy. CLIP: each owner clips its update to this L1 norm and "
        "adds Laplace noise under its grant's epsilon (needed under DP grants). "
        "NOISE,CLIP: also Flower's central DP: owners clip to this L2 norm, the home adds "
        "Gaussian noise of this multiplier, and Flower's accountant reports (epsilon, delta)",
    )
    sp.add_argument(
        "--secagg",
        action="store_true",
        help="SecAgg+: each owner masks its update, the home sees only their sum "
        "(fedavg or fedprox, at least 3 owners)",
    )
    sp.add_argument("--out", type=path, help="folder for the model, metrics, receipts, plot")
    sp.add_argument("--quiet", action="store_true", help="no per-round lines")
    sp.add_argument("--timeout", type=seconds, default=590.0, help="seconds (default 590)")
