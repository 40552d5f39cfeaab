"""Opening the FoundationDB engine: its URLs, its limits, and a machine without libfdb_c.

The engine's behaviour on a cluster is the engine-parametrized suite's job (it runs on
FoundationDB when FDBSYNC_TEST_FDB_CLUSTER is set); these tests need no cluster.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from fdbsync.engine import FDBError, Limits, create_engine
from fdbsync.engine.fdb.engine import FdbEngine


def client_library_loads() -> bool:
    """Whether the bindings find libfdb_c here (importing fdb.impl loads it, nothing more)."""
    try:
        import fdb.impl  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(client_library_loads(), reason="libfdb_c is installed on this machine")
async def test_opening_without_the_client_library_says_what_to_install() -> None:
    """The real thing: this machine has no libfdb_c, so opening fails with an FDBError that
    names the package to install and points at sqlite for development."""
    engine = create_engine("fdb://")
    with pytest.raises(FDBError) as caught:
        await engine.open()
    message = str(caught.value)
    for expected in ("libfdb_c", "FoundationDB clients package", "7.3", "sqlite:///"):
        assert expected in message, message
    assert not engine.is_open
    with pytest.raises(FDBError):
        engine.create_transaction()
    with pytest.raises(FDBError):  # still missing: a second try says the same
        await engine.open()


def test_importing_fdbsync_and_creating_an_engine_load_no_client() -> None:
    """`import fdbsync` and create_engine("fdb://") neither load libfdb_c nor select the API
    version (which a process can do only once): opening the engine does."""
    code = textwrap.dedent(
        """
        import sys
        import fdb
        import fdbsync
        from fdbsync.engine import create_engine
        create_engine("fdb://")
        create_engine("fdb:///etc/foundationdb/fdb.cluster")
        assert "fdb.impl" not in sys.modules, "libfdb_c was loaded"
        assert not fdb.is_api_version_selected(), "the API version was selected"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("url", "cluster_file"),
    [
        ("fdb://", None),
        ("fdb:///", None),
        ("fdb:///etc/foundationdb/fdb.cluster", "/etc/foundationdb/fdb.cluster"),
        ("fdb:////etc/foundationdb/fdb.cluster", "/etc/foundationdb/fdb.cluster"),
    ],
)
def test_urls_name_the_cluster_file(url: str, cluster_file: str | None) -> None:
    engine = create_engine(url)
    assert isinstance(engine, FdbEngine)
    assert engine.cluster_file == cluster_file
    assert engine.url == url
    assert not engine.is_open


def test_url_options_set_limits() -> None:
    engine = create_engine("fdb:///etc/foundationdb/fdb.cluster?max_watches=50&transaction_time=1")
    assert (engine.limits.max_watches, engine.limits.transaction_time) == (50, 1.0)
    assert engine.limits.key_size == Limits().key_size


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("fdb://db.example.com:4500", "name a cluster file, not a host"),
        ("fdb://?watch_poll_interval=1", "unknown option(s) watch_poll_interval"),
        ("fdb://?max_watches=many", "must be a number"),
        ("fdb://?key_size=20000", "key_size 20000 > 10000"),
        ("fdb://?transaction_time=10", "transaction_time 10.0 outside 0..5 s"),
        ("fdb://?transaction_size=20000000", "transaction_size 20000000 outside"),
        ("fdb://?max_watches=2000000", "max_watches 2000000 outside"),
    ],
)
def test_bad_urls_and_limits_fail_at_once(url: str, complaint: str) -> None:
    with pytest.raises(ValueError) as caught:
        create_engine(url)
    assert complaint in str(caught.value)


def test_limits_stricter_than_foundationdbs_are_kept() -> None:
    strict = Limits(key_size=100, value_size=1000, transaction_size=10_000, max_watches=3)
    assert create_engine("fdb://", limits=strict).limits == strict
