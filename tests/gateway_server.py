"""The gateway on a real loopback port, in a thread of the test process (uvicorn, as ``serve`` runs it)."""

import threading
import time

import uvicorn

from weighbridge.gateway.app import create_app
from weighbridge.gateway.plan import load_plan

from .conftest import free_port


class Gateway:
    def __init__(self, plan_path):
        self.port = free_port()
        self.app = create_app(load_plan(plan_path), seed=0)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def gateway(self):
        return self.app.state.gateway

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


