"""`fedgate demo`: the whole Yangtze Delta federation on one machine, start to finish."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.client import Client, ClientError, Profile
from gateway.demo import sample_data
from gateway.demo.launcher import NodeProcess, StopSignal, running
from gateway.demo.provision import REGION_DIR, Federation, provision
from gateway.demo.showcase import SHOWCASES, Showcase, write_sample_grants
from gateway.demo.training import run_training
from gateway.display import federated_catalog_table, table
from gateway.identity import load_bundle
from gateway.verifier import VerifyError, verify


def register_sample_data(
    fed: Federation, written: dict[str, list[Path]], say: Callable[[str], None]
) -> None:
    """Each node's operator registers that node's datasets through it, as in real use."""
    for node_id, descriptors in written.items():
        with Client(Profile.load(fed.operator_profile(node_id))) as ops:
            for path in descriptors:
                resp = ops.register(path)
                d = resp.dataset
                say(f"  {node_id:>9}: registered {d.name} ({d.level}, {d.rows:,} rows)")


def run_showcase(client: Client, case: Showcase) -> tuple[str, bool]:
    """The showcase's printout, and whether it went as expected (answered or refused)."""
    try:
        result = client.query(case.sql, purpose=case.purpose)
    except ClientError as exc:
        return f"   REFUSED {exc}", case.expect_refusal
    if case.expect_refusal:
        return "   UNEXPECTEDLY ANSWERED: this query should have been refused", False
    rows = [[_cell(v) for v in r.values()] for r in result.table.to_pylist()]
    text = table(result.table.column_names, rows)
    via = sorted({o.via for o in result.owners if o.via})
    meta = (
        f"owners: {', '.join(result.contributors)}"
        + (f" (via relay {', '.join(via)})" if via else "")
        + f"; L2 noise: {', '.join(result.noised) or 'none'}; epsilon spent: "
        + f"{result.epsilon_spent:g}; signed receipts: {len(result.receipts)}"
    )
    return "\n".join("   " + line for line in [*text.splitlines(), meta]), True


OVERLAP = ("anhui:enterprise_registry.credit_code", "miit:industry_enterprises.credit_code")


def run_overlap(client: Client) -> tuple[str, bool]:
    """The PSI of the demo: Anhui's registry against the ministry's list (docs/psi.md)."""
    left, right = OVERLAP
    head = (
        "-- How many of Anhui's enterprises are on the ministry's list (PSI)\n"
        f"   fedgate psi --left {left} --right {right}"
    )
    t0 = time.monotonic()
    try:
        answer = client.psi(left, right)
    except ClientError as exc:
        return f"{head}\n   FAILED: {exc}", False
    shown = "suppressed" if answer.suppressed else f"{answer.intersection:,}"
    return (
        f"{head}\n   overlap: {shown} (k = {answer.min_group_size}; identifiers never left "
        f"either owner; {sum(1 for o in answer.owners if o.receipt)} signed receipts; "
        f"{time.monotonic() - t0:.1f} s)",
        True,
    )


def audit_summary(fed: Federation) -> str:
    """Witness, export and verify each node's log offline, as an auditor would."""
    bundle = load_bundle(fed.ca_cert)
    rows = []
    for n in fed.nodes:
        with Client(Profile.load(fed.operator_profile(n.id))) as ops:
            witnessed = ops.witness_now()
            text = ops.audit_export().decode()
        try:
            # One record per "\n" (the export's only line end): str.splitlines() would
            # also cut an entry at a U+2028/U+2029 or U+0085 inside a refusal's reason.
            report = verify(text.split("\n"), bundle)
            verdict = "verified"
        except VerifyError as exc:
            verdict = f"FAILED: {exc}"
            rows.append([n.id, "", "", "", verdict])
            continue
        releases = report.kinds.get("release", 0)
        refusals = sum(
            report.kinds.get(k, 0) for k in ("query.refused", "psi.refused", "train.refused")
        )
        rows.append(
            [
                n.id,
                f"{report.entries}",
                f"{releases}/{refusals}",
                f"{len(witnessed.countersigned)}",
                verdict,
            ]
        )
    text = table(["node", "entries", "releases/refusals", "witnesses", "offline check"], rows)
    return "\n".join("   " + line for line in text.splitlines())


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "NULL" if value is None else str(value)


def _checking(stop: StopSignal, say: Callable[[str], None]) -> Callable[[str], None]:
    """``say`` that first stops the run if a stop was asked and its interrupt swallowed."""

    def checked(line: str) -> None:
        stop.check()
        say(line)

    return checked


def exited(proc: NodeProcess) -> str:
    """What ended a kept federation early: which node, its exit code."""
    return f"node {proc.node_id} exited with code {proc.process.returncode}"


def keep_running(
    fed: Federation,
    procs: list[NodeProcess],
    profile_path: Path,
    stop: StopSignal,
    say: Callable[[str], None],
    made_tmp: bool,
) -> str:
    """Say how to reach the federation, then wait for Ctrl-C. Returns "" then, or which
    node exited meanwhile, its end of log said first (before a folder made is removed)."""
    stop.check()  # a stop asked before the prompt is not the keep's end
    ended = ""
    # Everything after the prompt is inside the handler, so Ctrl-C at any moment means
    # "stop the federation", never an error.
    with contextlib.suppress(KeyboardInterrupt):
        say("")
        say("The federation keeps running. In another terminal:")
        venv = Path(sys.prefix) / "bin" / "activate"
        say(f"  source {venv}   # puts fedgate on the PATH")
        say(f"  export FEDGATE_PROFILE={profile_path}")
        say("  fedgate catalog           # federated catalog")
        say('  fedgate query "SELECT city, COUNT(*) FROM enterprise_registry GROUP BY city"')
        say("  fedgate whoami")
        say(f"Profiles (operators and analysts): {fed.workdir / 'profiles'}")
        say(f"Federation CA certificate: {fed.ca_cert}")
        say(f"Node logs: {fed.workdir / 'nodes'}/<id>/node.log")
        removed = f" and remove {fed.workdir}, which the demo made" if made_tmp else ""
        say(f"Press Ctrl-C to stop every node{removed}.")
        while not stop.asked:
            gone = next((p for p in procs if not p.alive()), None)
            if gone is not None:
                ended = exited(gone)
                say(f"{ended}; the end of {gone.log_path}:")
                say("\n".join("  " + line for line in gone.log_tail().splitlines()))
                break
            time.sleep(0.5)
    # Ctrl-C is how a kept federation is meant to end: it stays asked, so a second one
    # is not raised into the nodes' stop or the removal of the folder (review,
    # 2026-12-05: it cut the removal short and left the keys on disk)
    return ended


def run_demo(
    *,
    workdir: Path | None,
    scale: float,
    seed: int,
    keep: bool,
    home: str,
    say: Callable[[str], None] = print,
) -> int:
    stop = StopSignal().install()
    tell, say = say, _checking(stop, say)  # every step starts with a line: it checks
    made_tmp = workdir is None
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="fedgate-demo-"))
    t0 = time.monotonic()
    try:  # from here on a folder made here is removed however the demo ends
        say(f"[1/8] provisioning the Yangtze Delta federation in {workdir}")
        fed = provision(workdir, REGION_DIR, free_ports=True, progress=lambda m: say("  " + m))
        say(f"[2/8] generating sample data (seed {seed}, scale {scale:g})")
        written = sample_data.generate(
            workdir / "data", seed=seed, scale=scale, nodes=[n.id for n in fed.nodes]
        )
        say(f"  {sum(len(v) for v in written.values())} datasets written")
        say(f"[3/8] starting {len(fed.nodes)} gateway nodes on loopback")
        with running(fed) as procs:
            say(f"  all {len(procs)} nodes SERVING after {time.monotonic() - t0:.1f}s:")
            for n in fed.nodes:
                parent = f", under {n.parent}" if n.parent else ""
                say(f"    {n.id:>9}  {n.listen:<16} {n.level}{parent}")
            say("[4/8] operators register their datasets (checked against declared schemas)")
            register_sample_data(fed, written, say)
            analyst = next((u for u, h in fed.analysts if h == home), None)
            profile_path = fed.profile_path(analyst) if analyst else fed.operator_profile(home)
            say(f"[5/8] federated catalog through {home}, as {profile_path.stem}:")
            with Client(Profile.load(profile_path)) as client:
                say(federated_catalog_table(client.federated_catalog()))
            grants = write_sample_grants(fed, home)
            say(f"[6/8] each owner's operator wrote its grants ({len(grants)} in all)")
            say(f"[7/8] federated queries through {home}, as {profile_path.stem}:")
            unexpected = []
            with Client(Profile.load(profile_path)) as client:
                for case in SHOWCASES:
                    say("")
                    say(f"-- {case.title}")
                    say(f"   {case.sql}")
                    text, as_expected = run_showcase(client, case)
                    say(text)
                    if not as_expected:
                        unexpected.append(case.title)
                say("")
                text, ok = run_overlap(client)
                say(text)
                if not ok:
                    unexpected.append("overlap")
                say("")
                if not run_training(client, written, say):  # round by round, as they end
                    unexpected.append("training")
            say("")
            say("[8/8] traceability: every owner's signed audit log, witnessed by its peers")
            say(audit_summary(fed))
            if keep:
                ended = keep_running(fed, procs, profile_path, stop, say, made_tmp)
                tell("stopping all nodes")  # unchecked: a stop ends a kept federation
            else:
                ended = ""
                say("stopping all nodes")
    except KeyboardInterrupt:
        tell("interrupted: every node was stopped")
        return 130
    finally:  # a folder the demo made holds every key: never left behind, --keep or not
        if made_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    if ended:
        tell(f"demo FAILED: {ended} while the federation was kept")
    if unexpected:
        tell("demo FAILED: not as expected: " + "; ".join(unexpected))
    if ended or unexpected:
        return 1
    tell(f"demo finished in {time.monotonic() - t0:.1f}s")
    return 0
