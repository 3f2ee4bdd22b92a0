"""Custom Flower apps: approved by each owner's operator, run in a limited process.

The app here is an analyst's own logistic regression (its own numpy code, not the
built-in task) in a folder with ``client_app.py``. Each owner's operator approves it
(``fedgate app approve``); the analyst trains with ``--app``. Refused, each with a clear
status and an entry at the owner, nothing released: a digest not approved there, a
grant that does not name the app, an app revoked; an app whose reply holds more than a
model update, one that raises, and one that goes over its memory limit.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from federation.training.app_bundle import read_dir, task_of
from gateway.client import ClientError
from gateway.roles.train_home import TrainAsk, TrainResult
from gateway.training import landlock
from gateway.training.spec import TrainSpec
from tests.conftest import RunningFederation, run_fedgate
from tests.integration.rate import within_rate
from tests.integration.test_psi import register
from tests.integration.test_training import ANALYST, COLUMNS, CONTROLS, FEATURES, OWNERS, rows

pytestmark = pytest.mark.integration

APP = '''\
"""An analyst's own binary logistic regression (weights w, bias b), full batch."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federation.training.app_bundle import app_rows

app = ClientApp()


def init(n_features, n_outputs, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.01, size=n_features), np.zeros(1)]


def _data(msg, context):
    X, y = app_rows(context)
    cfg = msg.content["config"]
    if "mean" in cfg:
        X = (X - np.array(cfg["mean"])) / np.array(cfg["std"])
    return X, y, cfg


def _loss(w, b, X, y):
    p = 1 / (1 + np.exp(-(X @ w + b[0])))
    eps = 1e-12
    return p, float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))


@app.train()
def train(msg: Message, context: Context) -> Message:
    X, y, cfg = _data(msg, context)
    arrays = msg.content["arrays"]
    keys = list(arrays.keys())
    w, b = (arrays[k].numpy().astype(np.float64) for k in keys)
    for _ in range(int(cfg["epochs"])):
        p, _ = _loss(w, b, X, y)
        w = w - float(cfg["lr"]) * X.T @ (p - y) / len(y)
        b = b - float(cfg["lr"]) * np.array([np.mean(p - y)])
    _, loss = _loss(w, b, X, y)
    out = ArrayRecord({keys[0]: Array(w), keys[1]: Array(b)})
    metrics = MetricRecord({"num-examples": len(y), "train_loss": loss})
    return Message(RecordDict({"arrays": out, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    X, y, _ = _data(msg, context)
    w, b = (a.numpy() for a in msg.content["arrays"].values())
    p, loss = _loss(w, b, X, y)
    acc = float(np.mean((p > 0.5) == (y > 0.5)))
    metrics = MetricRecord({"num-examples": len(y), "eval_loss": loss, "eval_acc": acc})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
'''

# Variants that misbehave at the train step (each a different app, so another digest).
_AT_TRAIN = "    X, y, cfg = _data(msg, context)\n    arrays"
VARIANTS = {
    "good": APP,
    # sends the first feature of every row as its "weights"
    "leaks": APP.replace(
        "out = ArrayRecord({keys[0]: Array(w), keys[1]: Array(b)})",
        "out = ArrayRecord({keys[0]: Array(X[:, 0].copy()), keys[1]: Array(b)})",
    ),
    # sends the rows as a metric
    "chatty": APP.replace('"train_loss": loss})', '"train_loss": loss, "rows": X[:, 0].tolist()})'),
    # a NaN whose payload bits could carry a row's value (review, 2026-12-04)
    "nan": APP.replace('"train_loss": loss})', '"train_loss": float("nan")})'),
    # weighs its update by more rows than it holds (the receipt's examples too)
    "inflated": APP.replace(
        '{"num-examples": len(y), "train_loss"', '{"num-examples": 10**9, "train_loss"'
    ),
    # raises with row values in its message
    "raises": APP.replace(
        _AT_TRAIN, "    raise RuntimeError(str(app_rows(context)[0][:3]))\n    arrays"
    ),
    # reserves 3.2 GB: fine without a limit (nothing touched), not under 2 GB of address space
    "greedy": APP.replace(_AT_TRAIN, "    hog = np.empty(400_000_000)\n" + _AT_TRAIN),
    # a model of 52.8 MB: the logistic regression and a third array it carries along
    "big": APP.replace("np.zeros(1)]", "np.zeros(1), np.zeros(BIG)]\n\n\nBIG = 6_600_000")
    .replace(
        "    w, b = (arrays[k].numpy().astype(np.float64) for k in keys)",
        "    w, b, extra = (arrays[k].numpy().astype(np.float64) for k in keys)",
    )
    .replace("Array(b)})\n", "Array(b), keys[2]: Array(extra + 1.0)})\n")
    .replace("    w, b = (a.numpy() for a in", "    w, b, _ = (a.numpy() for a in"),
}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("apps")
    out = {}
    for name, source in VARIANTS.items():
        (root / name).mkdir()
        (root / name / "client_app.py").write_text(source)
        out[name] = root / name
    return out


def digest(apps: dict[str, Path], name: str) -> str:
    return read_dir(apps[name]).digest


@pytest.fixture(scope="module")
def granted(federation: RunningFederation, apps: dict[str, Path]) -> dict[str, pa.Table]:
    """Each owner's rows, granted for the built-in logreg and for the apps written here."""
    out = {}
    tasks = ("logreg", *(task_of(digest(apps, n)) for n in VARIANTS))
    for i, node in enumerate(OWNERS):
        table = rows(200 + i, 300 + 100 * i)
        register(
            federation, node, "app_rows", table, COLUMNS, CONTROLS, operations=("train",),
            train_tasks=tasks, max_rounds=20, exact=True,
        )  # fmt: skip
        out[node] = table
    return out


def fedgate(fed: RunningFederation, profile: str, *args: str) -> subprocess.CompletedProcess:
    path = str(fed.fed.profile_path(profile))
    return run_fedgate(*args, "--profile", path, timeout=300)


def approve(
    fed: RunningFederation, apps: dict[str, Path], name: str, nodes: tuple[str, ...] = OWNERS
) -> None:
    for node in nodes:
        result = fedgate(fed, f"ops@{node}", "app", "approve", str(apps[name]))
        assert result.returncode == 0, result.stderr
        assert digest(apps, name) in result.stdout


def train(
    fed: RunningFederation, apps: dict[str, Path], name: str, rounds: int, timeout: float = 20
) -> TrainResult:
    spec = TrainSpec(
        task=task_of(digest(apps, name)), dataset="app_rows", features=FEATURES, label="y",
        rounds=rounds, seed=7, learning_rate=0.5, local_epochs=5, n_classes=2,
    )  # fmt: skip

    def run() -> TrainResult:
        with fed.client(ANALYST) as c:
            return c.train(TrainAsk(spec, OWNERS), timeout=timeout).result(timeout=timeout + 10)

    return within_rate(run)


def test_an_approved_app_trains_in_its_own_process(
    federation: RunningFederation, apps: dict[str, Path], granted: dict[str, pa.Table]
) -> None:
    approve(federation, apps, "good")
    result = train(federation, apps, "good", rounds=8)
    assert len(result.rounds) == 8 and all(r.answered == 3 for r in result.rounds)
    assert result.rounds[-1].eval_accuracy > 0.7
    with np.load(io.BytesIO(result.model_npz)) as z:
        assert z["w0"].shape == (len(FEATURES),) and z["w1"].shape == (1,)
    for node in OWNERS:
        mine = [
            e for e in federation.audit(node, "release") if e.get("request_id") == result.run_id
        ]
        steps = ["train", "evaluate"] * 8
        assert [e["step"] for e in mine] in (
            ["query.stats", *steps],
            ["query.stats", "query.init", *steps],  # the owner that made the initial model
        )
        assert all(e["task"] == task_of(digest(apps, "good")) for e in mine)
        approved = federation.audit(node, "app.approved")
        assert any(e["digest"] == digest(apps, "good") for e in approved)
        # the run's app process was stopped with its last message
        assert not app_processes(federation, node)
    with federation.client("ops@jiangsu") as ops:
        assert digest(apps, "good") in {a.digest for a in ops.list_apps()}


def app_processes(fed: RunningFederation, node: str) -> list[int]:
    """Children of the node's process running the app host."""
    pid = fed.procs[node].process.pid
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and b"gateway.training.app_child" in cmd:
            found.append(int(d.name))
    return found


def test_an_app_not_approved_at_an_owner_is_refused_there(
    federation: RunningFederation, apps: dict[str, Path], granted: dict[str, pa.Table]
) -> None:
    approve(federation, apps, "good")
    with federation.client("ops@jiangsu") as ops:
        ops.revoke_app(digest(apps, "good"))
    before = len(federation.audit("jiangsu", "release"))
    with pytest.raises(ClientError) as err:
        train(federation, apps, "good", rounds=2)
    assert "not approved at jiangsu" in str(err.value)
    assert len(federation.audit("jiangsu", "release")) == before
    refusals = federation.audit("jiangsu", "train.refused")
    assert any("not approved" in e.get("reason", "") for e in refusals)
    revoked = federation.audit("jiangsu", "app.revoked")
    assert any(e["digest"] == digest(apps, "good") for e in revoked)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("leaks", "not the received one's shape"),
        ("chatty", "an app's metrics are finite numbers named"),
        ("nan", "an app's metrics are finite numbers named"),
        ("inflated", "has no 'num-examples' of the rows it holds"),
        ("raises", "the app failed (RuntimeError)"),
        ("greedy", "memory limit"),
    ],
)
def test_a_misbehaving_app_is_stopped_and_nothing_is_released(
    federation: RunningFederation,
    apps: dict[str, Path],
    granted: dict[str, pa.Table],
    name: str,
    says: str,
) -> None:
    approve(federation, apps, name)
    before = {n: len(federation.audit(n, "release")) for n in OWNERS}
    with pytest.raises(ClientError) as err:
        train(federation, apps, name, rounds=2)
    assert says in str(err.value)
    # the statistics (the built-in's) and one owner's initial model (the app's init)
    assert sum(len(federation.audit(n, "release")) - before[n] for n in OWNERS) == 4
    for node in OWNERS:
        assert not app_processes(federation, node)
    if name == "raises":  # the exception's type only: its message held row values
        assert "RuntimeError)" in str(err.value) and "[" not in str(err.value)


def test_a_grant_must_name_the_app(
    federation: RunningFederation, apps: dict[str, Path], granted: dict[str, pa.Table],
    tmp_path: Path,
) -> None:  # fmt: skip
    other = tmp_path / "other"
    other.mkdir()
    (other / "client_app.py").write_text(APP + "\n# another app\n")
    for node in OWNERS:
        with federation.client(f"ops@{node}") as ops:
            ops.approve_app(read_dir(other), "other")
    spec = TrainSpec(
        task=task_of(read_dir(other).digest), dataset="app_rows", features=FEATURES,
        label="y", rounds=2, seed=7, n_classes=2,
    )  # fmt: skip
    with federation.client(ANALYST) as c, pytest.raises(ClientError) as err:
        c.train(TrainAsk(spec, OWNERS)).result(timeout=120)
    assert "does not allow the task" in str(err.value)


def test_the_cli_approves_digests_and_runs_an_app(
    federation: RunningFederation, apps: dict[str, Path], granted: dict[str, pa.Table],
    tmp_path: Path,
) -> None:  # fmt: skip
    approve(federation, apps, "good")
    out = tmp_path / "run"
    result = fedgate(
        federation, ANALYST, "train", "--app", str(apps["good"]), "--dataset", "app_rows",
        "--features", ",".join(FEATURES), "--label", "y", "--rounds", "3", "--lr", "0.5",
        "--epochs", "5", "--nodes", ",".join(OWNERS), "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / "model.npz").is_file() and "final accuracy" in result.stdout
    shown = run_fedgate("app", "digest", str(apps["good"]))
    assert shown.returncode == 0 and digest(apps, "good") in shown.stdout
    listed = fedgate(federation, "ops@jiangsu", "app", "list")
    assert listed.returncode == 0 and digest(apps, "good") in listed.stdout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.py").write_text("x = 1\n")
    result = fedgate(federation, "ops@jiangsu", "app", "approve", str(bad))
    assert result.returncode == 2 and "client_app.py" in result.stderr
    assert "Traceback" not in result.stderr
    refused = fedgate(federation, ANALYST, "app", "approve", str(apps["good"]))
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr


def test_a_model_of_50_mb_travels_in_pieces(
    federation: RunningFederation, apps: dict[str, Path], granted: dict[str, pa.Table]
) -> None:
    """A model larger than a gRPC message may be (4 MiB here), over one round: the fit
    and evaluate messages (52.8 MB) go out to the owners in pieces, the fit replies and
    the final model come back in pieces."""
    approve(federation, apps, "big")
    t0 = time.monotonic()
    result = train(federation, apps, "big", rounds=1, timeout=300)
    print(f"a round of a {len(result.model_npz) / 1e6:.1f} MB model: {time.monotonic() - t0:.1f} s")
    assert len(result.model_npz) > 50_000_000
    assert all(r.answered == 3 for r in result.rounds)
    with np.load(io.BytesIO(result.model_npz)) as z:
        assert z["w2"].shape == (6_600_000,)
        np.testing.assert_array_equal(z["w2"], 1.0)  # the round added 1 at every owner
    assert result.rounds[-1].eval_accuracy > 0.6


def approve_and_grant(federation: RunningFederation, folder: Path, name: str) -> str:
    """The app in ``folder`` approved at every owner and named in a grant there: its task."""
    task = task_of(read_dir(folder).digest)
    for n in OWNERS:
        with federation.client(f"ops@{n}") as ops:
            ops.approve_app(read_dir(folder), name)
        federation.grant(
            n, dataset="app_rows", grantee_kind="org", grantee=federation.fed.node("shanghai").org,
            operations=("train",), columns=CONTROLS, min_group_size=5, train_tasks=(task,),
            exact=True,
        )  # fmt: skip
    return task


def one_round(task: str) -> TrainSpec:
    return TrainSpec(
        task=task, dataset="app_rows", features=FEATURES, label="y", rounds=1, seed=7,
        n_classes=2,
    )  # fmt: skip


def _refused(federation: RunningFederation, folder: Path, source: str) -> ClientError:
    """The app ``source`` written to ``folder``, approved, granted and run for a round:
    the refusal the analyst gets."""
    folder.mkdir()
    (folder / "client_app.py").write_text(source)
    spec = one_round(approve_and_grant(federation, folder, folder.name))
    with federation.client(ANALYST) as c, pytest.raises(ClientError) as err:
        c.train(TrainAsk(spec, OWNERS)).result(timeout=60)
    return err.value


@pytest.mark.parametrize(
    "attempt",
    [
        "open(KEY, 'rb').read()",  # the node's own TLS key
        "open(ROWS_FILE, 'rb').read()",  # the dataset's file itself
        "open(os.path.join(APP_DIR, 'left.txt'), 'w').write('x')",  # a file of its own
        "os.kill(os.getppid(), signal.SIGSTOP)",  # the owner node itself (ABI 6)
    ],
    ids=["node-key", "dataset-file", "write", "signal-the-node"],
)
@pytest.mark.skipif(landlock.abi() < 4, reason="Landlock ABI 4 (Linux 6.7) restricts TCP")
def test_an_approved_app_cannot_reach_past_its_rows(
    federation: RunningFederation, granted: dict[str, pa.Table], tmp_path: Path, attempt: str
) -> None:
    """Under Landlock an app reads only Python, fedgate's packages and its own files,
    writes none and signals no process outside it: the attempt fails in the app."""
    node = "jiangsu"
    home = federation.fed.node_dir(node)
    source = APP.replace(
        _AT_TRAIN,
        f"    {attempt}\n" + _AT_TRAIN,
    ).replace(
        "import numpy as np\n",
        "import os\nimport signal\nimport socket\n\nimport numpy as np\n\n"
        f"KEY = {str(home / 'tls' / 'node.key')!r}\n"
        f"ROWS_FILE = {str(federation.fed.data_dir(node) / 'app_rows.parquet')!r}\n"
        f"PORT = {federation.fed.node(node).listen.rsplit(':', 1)[1]}\n"
        "APP_DIR = os.path.dirname(__file__)\n",
    )
    err = _refused(federation, tmp_path / "snoop", source)
    assert "PermissionError" in str(err), err
    assert federation.procs[node].process.poll() is None  # the node lives on


def _isolates() -> bool:
    """Whether this machine gives an app's process a user and network namespace (as its
    entry point, ``gateway.training.app_child``, asks first thing)."""
    probe = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-c", "from gateway.training import netns; print(netns.isolate())"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return "no IP network" in probe.stdout


@pytest.mark.parametrize(
    "attempt",
    [
        "socket.create_connection(('127.0.0.1', PORT), timeout=2)  # tcp",  # the node's port
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'rows', ('127.0.0.1', UDP))",
        # back into the node's network namespace, then the datagram
        "ctypes.CDLL(None).setns(os.pidfd_open(os.getppid()), 0x40000000); "
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'rows', ('127.0.0.1', UDP))",
        # a pathname unix socket (as /dev/log or a resolver's): not network, not Landlock's
        "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'rows', UNIX)",
        # a datagram pair's sendto names a path too (review, 2026-12-04)
        "socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)[0].sendto(b'rows', UNIX)",
    ],
    ids=["tcp", "udp", "setns-then-udp", "unix-socket", "datagram-pair"],
)
@pytest.mark.skipif(not _isolates(), reason="no network namespace for a process here")
def test_an_approved_app_has_no_network(
    federation: RunningFederation, granted: dict[str, pa.Table], tmp_path: Path, attempt: str
) -> None:
    """An app's process has a user and network namespace of its own: neither a TCP
    connection to the node's port nor a UDP datagram to a listener on loopback leaves it,
    nor can it join the node's network namespace again (setns needs the first user
    namespace's CAP_SYS_ADMIN, which it gave up even where the node runs as root)."""
    node = "jiangsu"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix.bind(str(tmp_path / "sock"))
    unix.settimeout(0.5)
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    with listener, unix:
        source = APP.replace(_AT_TRAIN, f"    {attempt}\n" + _AT_TRAIN).replace(
            "import numpy as np\n",
            "import ctypes\nimport os\nimport socket\n\nimport numpy as np\n\n"
            f"PORT = {federation.fed.node(node).listen.rsplit(':', 1)[1]}\n"
            f"UDP = {listener.getsockname()[1]}\n"
            f"UNIX = {str(tmp_path / 'sock')!r}\n",
        )
        err = _refused(federation, tmp_path / "caller", source)
        # ENETUNREACH from the namespace; a TCP connect meets Landlock's check first
        failed = {"PermissionError"} if "tcp" in attempt and landlock.abi() >= 4 else {"OSError"}
        if "setns" in attempt:  # refused at pidfd_open (Landlock) or unreachable after
            failed |= {"PermissionError"}
        if "AF_UNIX" in attempt:  # seccomp: EACCES
            failed = {"PermissionError"}
        assert any(f"the app failed ({f})" in str(err) for f in failed), err
        for sock in (listener, unix):
            with pytest.raises(TimeoutError):
                sock.recvfrom(64)  # nothing came
    assert federation.procs[node].process.poll() is None


@pytest.mark.skipif(not _isolates(), reason="no network namespace for a process here")
def test_an_apps_process_has_one_thread_the_sandbox_binds(
    federation: RunningFederation, granted: dict[str, pa.Table], tmp_path: Path
) -> None:
    """Landlock and seccomp bind the thread that applies them and those it starts later:
    numpy's BLAS started a worker thread as it loaded, before the sandbox, and an app
    could run code on it unbound (review, 2026-12-04). Now the app's process has one
    thread when the sandbox is applied (the app says so by the error it raises)."""
    # /proc's task folder has two links and one per thread (stat is not Landlock's)
    attempt = "raise (ValueError if os.stat('/proc/self/task').st_nlink == 3 else KeyError)()"
    source = APP.replace(_AT_TRAIN, f"    {attempt}\n" + _AT_TRAIN).replace(
        "import numpy as np\n", "import os\n\nimport numpy as np\n"
    )
    err = _refused(federation, tmp_path / "threads", source)
    assert "the app failed (ValueError)" in str(err), err


INIT_LOOKS_FOR_ROWS = APP.replace(
    "def init(n_features, n_outputs, seed):\n    rng = np.random.default_rng(seed)\n"
    "    return [rng.normal(scale=0.01, size=n_features), np.zeros(1)]",
    "def init(n_features, n_outputs, seed):\n    import sys\n\n"
    "    rows, frame = 0, sys._getframe(1)\n"
    "    while frame is not None:  # the host's own variables, up the stack\n"
    "        x = frame.f_locals.get('X')\n"
    "        if isinstance(x, np.ndarray) and x.ndim == 2:\n"
    "            rows = max(rows, x.shape[0])\n"
    "        frame = frame.f_back\n"
    "    return [np.zeros(n_features), np.array([float(rows)])]",
).replace('    for _ in range(int(cfg["epochs"])):', "    for _ in range(0):")


def test_an_apps_init_runs_where_no_row_is(
    federation: RunningFederation, granted: dict[str, pa.Table], tmp_path: Path
) -> None:
    """``init`` runs in a process given no rows (only their width): an init that looks
    for the rows in memory, and sends their count back as the bias, sends 0."""
    assert "_getframe" in INIT_LOOKS_FOR_ROWS and "range(0)" in INIT_LOOKS_FOR_ROWS
    folder = tmp_path / "looks"
    folder.mkdir()
    (folder / "client_app.py").write_text(INIT_LOOKS_FOR_ROWS)
    spec = one_round(approve_and_grant(federation, folder, "looks"))
    with federation.client(ANALYST) as c:
        result = c.train(TrainAsk(spec, OWNERS)).result(timeout=60)
    with np.load(io.BytesIO(result.model_npz)) as z:  # the app's train changes nothing
        assert z["w1"].tolist() == [0.0]


def test_an_app_process_that_cannot_leave_the_network_stops_before_any_app_code() -> None:
    """A process of two threads cannot enter a user namespace: the entry point stops at
    once with its own exit code (the owner refuses the message), never running the app."""
    code = (
        "import sys, threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "from gateway.training.app_child import main\n"
        "sys.exit(main(['/nonexistent', '512', '10']))\n"
    )
    proc = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    from gateway.training.app_child import EXIT_NOT_ISOLATED

    assert proc.returncode == EXIT_NOT_ISOLATED, proc.stderr
    assert "network not isolated, stopping" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_under_dp_an_app_that_fails_on_some_rows_is_answered_not_refused(
    federation: RunningFederation, tmp_path: Path
) -> None:
    """An approved app that raises only where a row's first feature is large: under a DP
    grant that failure is not told as a refusal (which the rows would decide, outside the
    noise); the owner answers the model it got, clipped, noised and charged, and the run
    finishes."""
    folder = tmp_path / "fails_on_rows"
    folder.mkdir()
    raising = "    X, y, cfg = _data(msg, context)\n    if (X[:, 0] > 0.5).any():\n"
    raising += "        raise RuntimeError('a large row')\n    arrays"
    (folder / "client_app.py").write_text(APP.replace(_AT_TRAIN, raising))
    task = task_of(read_dir(folder).digest)
    for i, node in enumerate(OWNERS):
        with federation.client(f"ops@{node}") as ops:
            ops.approve_app(read_dir(folder), "fails on rows")
        register(
            federation, node, "app_dp_rows", rows(400 + i, 200), COLUMNS, CONTROLS,
            operations=("train",), level="L3", min_group_size=10, dp_epsilon=0.5,
            dp_budget=20.0, train_tasks=(task,), max_rounds=5,
        )  # fmt: skip
    spec = TrainSpec(
        task=task, dataset="app_dp_rows", features=FEATURES, label="y", rounds=2, seed=7,
        learning_rate=0.5, local_epochs=2, n_classes=2, dp_clip=1.0,
    )  # fmt: skip
    with federation.client(ANALYST) as c:
        result = c.train(TrainAsk(spec, OWNERS), timeout=60).result(timeout=90)
    assert len(result.rounds) == 2
    for node in OWNERS:
        mine = [o for o in result.owners if o.node_id == node]
        assert sum(o.epsilon for o in mine) == pytest.approx(0.5 * 3)  # stats + 2 rounds
        refused = [
            e for e in federation.audit(node, "train.refused") if e["request_id"] == result.run_id
        ]
        assert not refused, refused
