"""An agent environment runs in a sandboxed process of its own (bubblewrap, as root in CI): its tools
are derived there from type hints and docstrings, its state lives there across calls, and nothing a
model asks of it - host files, endless calls, floods, huge arguments, a dying host - escapes, hangs
the caller or outlives the episode."""

import time

import pytest

from weighbridge.eval.agent.sandboxed import EnvironmentFailed, SandboxedEnvironment

ORDERS = '''
class Orders:
    """A shop's order desk."""

    def load_state(self, state):
        self.orders = {k: dict(v) for k, v in state["orders"].items()}
        self.refunds = []

    def state(self):
        return {"orders": self.orders, "refunds": self.refunds}

    def get_order(self, order_id: str) -> dict:
        """Look up one order.

        Args:
            order_id: the order's id, e.g. "A1"
        """
        return self.orders[order_id]

    def refund(self, order_id: str, amount: float, reason: str | None = None) -> str:
        """Refund part or all of an order (never more than was paid)."""
        order = self.orders[order_id]
        if amount > order["paid"]:
            raise ValueError(f"{order_id} was paid {order['paid']}, cannot refund {amount}")
        order["paid"] -= amount
        self.refunds.append({"order": order_id, "amount": amount, "reason": reason})
        return f"refunded {amount}"

    def read_file(self, path: str) -> str:
        """Read a file of the workspace."""
        with open(path) as f:
            return f.read()

    def write_file(self, path: str, text: str) -> int:
        """Write a file of the workspace."""
        with open(path, "w") as f:
            return f.write(text)

    def wait_forever(self) -> None:
        """Never returns."""
        while True:
            pass

    def big_answer(self, size: int) -> str:
        """An answer of any size."""
        return "x" * size

    def shout(self, times: int) -> int:
        """Prints a lot."""
        for _ in range(times):
            print("y" * 1000)
        return times

    def die(self) -> None:
        """Ends the host process."""
        import os
        os._exit(3)

    def _secret(self) -> str:
        return "not a tool"
'''
STATE = {"orders": {"A1": {"item": "kettle", "paid": 40.0}, "B2": {"item": "mug", "paid": 8.5}}}


pytestmark = pytest.mark.usefixtures("need_bubblewrap")


def env(**kw) -> SandboxedEnvironment:
    return SandboxedEnvironment(ORDERS, "Orders", STATE, **kw)


def test_tools_come_from_type_hints_and_docstrings_and_state_lives_across_calls():
    with env() as e:
        tools = {t["function"]["name"]: t["function"] for t in e.tools}
        assert set(tools) == {"get_order", "refund", "read_file", "write_file", "wait_forever", "big_answer", "shout",
                              "die"}  # neither the hooks nor _secret
        assert tools["get_order"]["description"] == "Look up one order."
        assert tools["get_order"]["parameters"]["properties"]["order_id"] == {"type": "string",
                                                                             "description": 'the order\'s id, e.g. "A1"'}
        refund = tools["refund"]["parameters"]
        assert refund["required"] == ["order_id", "amount"] and refund["properties"]["amount"] == {"type": "number"}
        assert refund["properties"]["reason"] == {"type": "string"}
        assert e.call("refund", {"order_id": "A1", "amount": 15.0}).result == "refunded 15.0"
        r = e.call("refund", {"order_id": "A1", "amount": 100.0})
        assert not r.ok and "cannot refund 100.0" in r.error  # the tool's exception is the model's to read
        assert not e.call("get_order", {"order_id": "Z9"}).ok  # a KeyError too
        assert not e.call("_secret", {}).ok and not e.call("load_state", {"state": {}}).ok
        assert not e.call("refund", {"order_id": "A1"}).ok  # a missing argument
        assert e.state() == {"orders": {"A1": {"item": "kettle", "paid": 25.0}, "B2": {"item": "mug", "paid": 8.5}},
                             "refunds": [{"order": "A1", "amount": 15.0, "reason": None}]}


def test_a_model_asking_for_host_files_gets_errors_and_its_writes_stay_in_the_sandbox(tmp_path):
    host_secret = tmp_path / "secret.txt"
    host_secret.write_text("TOP-SECRET-9d2f")
    with env() as e:
        for path in ("../../etc/passwd", "/etc/passwd", "/root/.bashrc", str(host_secret), "/proc/1/environ"):
            r = e.call("read_file", {"path": path})
            assert not r.ok or ("root:x:0" not in str(r.result) and "TOP-SECRET" not in str(r.result)), (path, r)
        assert e.call("write_file", {"path": "notes.txt", "text": "hi"}).result == 2  # its own tmpfs works
        assert not e.call("write_file", {"path": str(tmp_path / "planted.txt"), "text": "x"}).ok
    assert not (tmp_path / "planted.txt").exists()


def test_a_call_that_never_returns_ends_the_environment_with_a_timeout():
    e = env(call_timeout_s=1.5)
    e.start()
    t = time.perf_counter()
    with pytest.raises(EnvironmentFailed) as failed:
        e.call("wait_forever", {})
    assert failed.value.kind == "timeout" and time.perf_counter() - t < 5
    assert e.proc.poll() is not None  # the whole sandbox is gone
    with pytest.raises(EnvironmentFailed, match="not running"):
        e.call("get_order", {"order_id": "A1"})


def test_floods_are_cut_off_and_huge_arguments_never_reach_the_environment():
    with env(max_result_bytes=1 << 16, max_args_bytes=1 << 20) as e:
        r = e.call("refund", {"order_id": "A1", "amount": 1.0, "reason": "x" * (10 << 20)})
        assert not r.ok and "10,485" in r.error and "at most 1,048,576" in r.error
        assert e.state()["refunds"] == []  # refused before it was sent; the environment lives on
        assert e.call("shout", {"times": 20_000}).result == 20_000  # 20 MB printed: read apart, not kept
        assert len(e.output) <= 4000
        with pytest.raises(EnvironmentFailed) as failed:
            e.call("big_answer", {"size": 10 << 20})
        assert failed.value.kind == "flood"
    assert e.proc.poll() is not None


def test_a_host_that_dies_or_an_environment_that_cannot_start_is_said_not_hung():
    with env() as e:
        with pytest.raises(EnvironmentFailed) as failed:
            e.call("die", {})
        assert failed.value.kind == "exited"
    broken = SandboxedEnvironment("class Orders:\n    def __init__(self):\n        raise RuntimeError('no db')\n",
                                  "Orders", {})
    with pytest.raises(EnvironmentFailed, match="did not start: RuntimeError: no db") as failed:
        broken.start()
    assert failed.value.kind == "start"
    with pytest.raises(EnvironmentFailed, match="did not start: AttributeError"):
        SandboxedEnvironment(ORDERS, "NoSuchClass", STATE).start()
