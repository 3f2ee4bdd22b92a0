"""``fedgate membership`` and ``fedgate federation``: the signed member list, local set-up."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import Subparsers, add_command, add_group, path, scale_factor
from gateway.errors import FedgateError

# gateway.demo.provision.REGION_DIR, worked out here so that `fedgate --help` imports no more.
DEFAULT_REGIONS = Path(__file__).resolve().parents[2] / "region_configs"


def cmd_membership_sign(args: argparse.Namespace) -> int:
    import tomllib

    from federation import membership as m
    from gateway import identity

    try:
        raw = tomllib.loads(Path(args.input).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FedgateError(f"{args.input} does not exist") from None
    except UnicodeDecodeError:
        raise FedgateError(f"{args.input} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise FedgateError(f"{args.input} is not valid TOML: {exc}") from None
    # each part checked by name, as federation init does (a KeyError's repr, 'members',
    # and "'int' object is not iterable" were all this said)
    federation, listed, serial = raw.get("federation"), raw.get("members"), raw.get("serial")
    if federation is None:
        raise FedgateError(f"{args.input}: federation (the federation's name) is missing")
    if not isinstance(federation, str) or not federation:
        raise FedgateError(f"{args.input}: federation must be a non-empty string")
    if listed is None or listed == []:
        raise FedgateError(f"{args.input}: no [[members]]: list each member node in one")
    if not isinstance(listed, list):
        raise FedgateError(f"{args.input}: members must be [[members]] tables")
    try:
        members = tuple(m.member_from(x, i) for i, x in enumerate(listed))
    except m.MembershipError as exc:
        raise FedgateError(f"{args.input}: {exc}") from None
    if serial is not None and (type(serial) is not int or serial < 1):
        raise FedgateError(f"{args.input}: serial must be a whole number of at least 1")
    ca_dir, out = Path(args.ca_dir), Path(args.out)
    identity.check_output(ca_dir, out, Path(args.input))
    doc = identity.sign_membership(ca_dir, federation, members, serial, out)
    print(f"membership of {len(members)} members, serial {doc.serial}, signed: {out}")
    return 0


def cmd_membership_show(args: argparse.Namespace) -> int:
    from federation import membership as m
    from gateway import display, identity

    bundle = identity.load_bundle(Path(args.ca))
    doc = m.verify(Path(args.file).read_bytes(), identity.membership_keys(bundle))
    print(f"federation {doc.federation}, serial {doc.serial}, issued {doc.issued_at}: signature OK")
    rows = [[x.id, x.name, x.level, x.parent, x.address, x.org] for x in doc.members]
    print(display.table(["id", "name", "level", "parent", "address", "org"], rows))
    return 0


def cmd_federation_init(args: argparse.Namespace) -> int:
    from gateway.demo import sample_data
    from gateway.demo.provision import provision

    fed = provision(
        Path(args.workdir), Path(args.regions), free_ports=args.free_ports, progress=print
    )
    if args.sample_data:
        sample_data.generate(fed.workdir / "data", seed=args.seed, scale=args.scale, progress=print)
    print(f"node configs: {fed.workdir / 'configs'}; profiles: {fed.workdir / 'profiles'}")
    return 0


def register(sub: Subparsers) -> None:
    mem = add_group(sub, "membership", "the signed membership document")
    sp = add_command(
        mem, "sign", "sign a membership list (TOML) with the CA key", cmd_membership_sign
    )
    sp.add_argument(
        "--input", type=path, required=True, help="TOML: federation, serial, [[members]]"
    )
    sp.add_argument("--ca-dir", type=path, required=True)
    sp.add_argument("--out", type=path, required=True)
    sp = add_command(mem, "show", "verify and print a membership document", cmd_membership_show)
    sp.add_argument(
        "file",
        type=path,
    )
    sp.add_argument("--ca", type=path, required=True, help="CA certificate (bundle)")

    fed = add_group(sub, "federation", "local federation set-up")
    sp = add_command(
        fed, "init", "provision CA, node and user keys, membership and configs", cmd_federation_init
    )
    sp.add_argument(
        "--workdir",
        type=path,
        default=str(DEFAULT_REGIONS.parent / ".fedgate"),
        help="where keys, certificates and data go (default: <repo>/.fedgate)",
    )
    sp.add_argument(
        "--regions",
        type=path,
        default=str(DEFAULT_REGIONS),
        help="folder with federation.toml and <id>.toml (default: <repo>/region_configs)",
    )
    sp.add_argument("--free-ports", action="store_true", help="pick free loopback ports")
    sp.add_argument("--sample-data", action="store_true", help="also generate sample data")
    sp.add_argument("--seed", type=int, default=20261125, help="(default: %(default)s)")
    sp.add_argument(
        "--scale", type=scale_factor, default=1.0, help="sample data scale (default: 1)"
    )
