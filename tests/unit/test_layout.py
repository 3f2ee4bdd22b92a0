"""The layout's rules (docs/architecture.md), checked on the source so they stay true."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "gateway" / "rpc"


def _modules(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if not p.is_relative_to(GENERATED)]


def _imports(path: Path, *, at_run_time: bool = False, top_level: bool = False) -> set[str]:
    """What ``path`` imports; ``at_run_time``: not in ``TYPE_CHECKING`` blocks;
    ``top_level``: not inside functions either (what importing the module imports)."""
    skip = (ast.FunctionDef, ast.AsyncFunctionDef) if top_level else ()
    names: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        if at_run_time and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, skip):
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return names


def test_federation_imports_neither_gateway_nor_generated_code() -> None:
    bad = {
        f"{p.relative_to(ROOT)}: {name}"
        for p in _modules("federation")
        for name in _imports(p)
        if name.split(".")[0] == "gateway" or name.endswith("_pb2") or "_pb2." in name
    }
    assert not bad, sorted(bad)


def test_the_home_does_not_reach_into_the_owner() -> None:
    imported = _imports(ROOT / "gateway" / "roles" / "home.py")
    assert not {n for n in imported if n.startswith(("gateway.roles.owner", "gateway.release"))}


def test_protobuf_messages_are_built_only_in_serde() -> None:
    """No call of a ``*_pb2`` attribute (a message constructor) outside gateway/serde.py."""
    found = []
    for path in _modules("gateway") + _modules("federation"):
        if path == ROOT / "gateway" / "serde.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id.endswith("_pb2")
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_no_type_checker_escapes_in_the_checked_packages() -> None:
    escapes = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _modules("gateway") + _modules("federation")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "type: ignore" in line
    ]
    assert not escapes, escapes


def _in_fresh_interpreter(code: str) -> None:
    """Run ``code`` where nothing is imported yet (this test process has imported much)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_client_the_cli_and_a_node_load_no_flower() -> None:
    """Flower costs ~0.3 s to import: a node loads it once it holds a train grant, in a
    thread of its own, and a home's runs in processes forked from their forkserver
    (``gateway.training.job``); importing the node's modules and `fedgate query` do not
    (docs/architecture.md)."""
    code = (
        "import sys, gateway.client, gateway.cli.app, gateway.node, gateway.training.job; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'flwr'], 'flwr loaded'"
    )
    _in_fresh_interpreter(code)


def test_an_idle_node_holds_no_file_readers_and_no_psi_library() -> None:
    """Idle memory (issue 2: <= 150 MB): Parquet and CSV readers (with pyarrow's file
    systems) load on a node's first registration or query, libsodium (``rbcl``, which
    imports ``doctest`` and ``unittest``) on its first PSI."""
    code = (
        "import sys, gateway.node, gateway.cli.app, gateway.config\n"
        "lazy = ('pyarrow.parquet', 'pyarrow.csv', 'pyarrow.fs', 'rbcl', 'unittest')\n"
        "loaded = [m for m in lazy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    _in_fresh_interpreter(code)


def test_a_runs_server_process_imports_no_arrow() -> None:
    """A home's first run waits for its forkserver to import the worker (~0.7 s); the
    server side needs only statistics, so Arrow (~0.1 s) is the owners' alone."""
    code = (
        "import sys, gateway.training.worker\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'pyarrow']\n"
    )
    _in_fresh_interpreter(code)


def test_a_dp_release_loads_neither_scikit_learn_nor_scipy() -> None:
    """``opendp.prelude`` imports OpenDP's extras, scikit-learn and SciPy with them where
    installed: 2 s of a fresh owner's first DP release. ``federation.dp_lib`` loads only
    what we call."""
    code = (  # each of the three callers of OpenDP, through its own function
        "import sys\n"
        "import pyarrow as pa\n"
        "from federation.dp_hist import hist_quantile\n"
        "from gateway.dp_quantiles import noisy_histograms\n"
        "from gateway.privacy import laplace_noise\n"
        "assert len(laplace_noise(3, 1.0, 1.0)[0]) == 3\n"
        "h = noisy_histograms(pa.array([[1.0, 2.0, 3.0]]), lower=0, upper=4, epsilon=1.0)\n"
        "hist_quantile(h.states[0].as_py(), 0.5)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')]\n"
        "assert not heavy, heavy[:5]\n"
    )
    _in_fresh_interpreter(code)
