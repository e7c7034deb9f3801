"""moat._exec.Cancel, alone (no cluster): what a cancel from another thread may do to the
connection a call waits on."""
from moat import _exec


def test_a_cancel_never_raises():
    # urllib3 refuses to shut a response already released to its pool (RuntimeError)
    def refuses():
        raise RuntimeError("Cannot shutdown as connection has already been released")
    c = _exec.Cancel()
    c.attach_closer(refuses)
    c()
    assert c.cancelled


def test_a_detached_connection_is_not_shut():
    shut = []
    c = _exec.Cancel()
    c.attach_closer(lambda: shut.append("first"))
    c.attach_closer(None)  # the wait is over: the connection goes back to a pool
    c()
    assert shut == []
    c.attach_closer(lambda: shut.append("later"))  # opened after the cancel: shut at once
    assert shut == ["later"]
