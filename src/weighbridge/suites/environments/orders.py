"""Order support for a small web shop, with the shop's refund policy enforced by the tools.

An agent environment for ``builtin:agent`` (it runs inside the sandbox under ``python -I -S``:
standard library only). Dates come from the state's ``today``, never the clock, so every replay of
the same calls ends in the same state.

Policy (also returned by ``get_policy``): an order that is still ``placed`` may be cancelled or have
its address changed; a ``delivered`` order may be refunded within ``refund_window_days`` of delivery,
never more than was paid less what was already refunded; ``damaged`` and ``wrong_item`` refunds are
allowed at any time, which the window does not limit; other requests are declined, and a customer
who disputes a decision or asks for a person is handed to a human by ``escalate``.
"""

from datetime import date

REASONS = ("damaged", "wrong_item", "not_received", "changed_mind")


class OrderSupport:
    """The support desk of a web shop: orders, customers, refunds and escalations."""

    def load_state(self, state):
        self.today = state["today"]
        self.window = int(state.get("refund_window_days", 30))
        self.customers = {k: dict(v) for k, v in state["customers"].items()}
        self.orders = {k: dict(v) for k, v in state["orders"].items()}
        self.refunds = [dict(r) for r in state.get("refunds", [])]
        self.escalations = [dict(e) for e in state.get("escalations", [])]
        self._tracking_failures = int(state.get("tracking_outages", 0))

    def state(self):
        return {"orders": self.orders, "refunds": self.refunds, "escalations": self.escalations,
                "customers": self.customers}

    def _order(self, order_id):
        if order_id not in self.orders:
            raise KeyError("no order %r" % order_id)
        return self.orders[order_id]

    def get_policy(self) -> dict:
        """The shop's refund and cancellation policy, and today's date."""
        return {"today": self.today, "refund_window_days": self.window,
                "rules": ["orders still 'placed' can be cancelled or get a new address",
                          "delivered orders can be refunded within the window, up to what was paid",
                          "damaged or wrong_item refunds are allowed after the window too",
                          "other requests are declined",
                          "a customer who disputes a decision or asks for a person: escalate to a human"]}

    def find_customer(self, email: str) -> dict:
        """Find a customer by e-mail address.

        Args:
            email: the customer's e-mail address
        """
        for cid, c in self.customers.items():
            if c["email"].lower() == email.strip().lower():
                return {"customer_id": cid, **c}
        raise LookupError("no customer with e-mail %r" % email)

    def list_orders(self, customer_id: str) -> list:
        """A customer's orders, newest first, with their status and total.

        Args:
            customer_id: the customer's id, e.g. "C1"
        """
        if customer_id not in self.customers:
            raise KeyError("no customer %r" % customer_id)
        mine = [dict(order_id=k, status=o["status"], total=o["total"], placed_on=o["placed_on"])
                for k, o in self.orders.items() if o["customer"] == customer_id]
        return sorted(mine, key=lambda o: o["placed_on"], reverse=True)

    def get_order(self, order_id: str) -> dict:
        """One order in full: items, status, address, dates, what was paid and refunded.

        Args:
            order_id: the order's id, e.g. "A1001"
        """
        return {"order_id": order_id, **self._order(order_id)}

    def track_order(self, order_id: str) -> dict:
        """Where a shipped order is, from the carrier (the carrier's service is sometimes down: try again).

        Args:
            order_id: the order's id
        """
        order = self._order(order_id)
        if self._tracking_failures > 0:
            self._tracking_failures -= 1
            raise TimeoutError("the carrier's tracking service did not answer; try again")
        if order["status"] not in ("shipped", "delivered"):
            return {"order_id": order_id, "status": order["status"], "carrier": None}
        return {"order_id": order_id, "status": order["status"], "carrier": order.get("carrier", "PostNord"),
                "last_scan": order.get("last_scan", "in transit")}

    def cancel_order(self, order_id: str) -> dict:
        """Cancel an order that has not shipped yet; what was paid is refunded in full.

        Args:
            order_id: the order's id
        """
        order = self._order(order_id)
        if order["status"] != "placed":
            raise ValueError("order %s is %s: only orders still 'placed' can be cancelled" % (order_id, order["status"]))
        order["status"] = "cancelled"
        amount = round(order["paid"] - order["refunded"], 2)
        order["refunded"] = order["paid"]
        self.refunds.append({"order_id": order_id, "amount": amount, "reason": "cancelled"})
        return {"order_id": order_id, "status": "cancelled", "refunded": amount}

    def change_address(self, order_id: str, address: str) -> dict:
        """Change the delivery address of an order that has not shipped yet.

        Args:
            order_id: the order's id
            address: the full new address, one line
        """
        order = self._order(order_id)
        if order["status"] != "placed":
            raise ValueError("order %s is %s: the address can only change before it ships" % (order_id, order["status"]))
        if not address.strip():
            raise ValueError("the address is empty")
        order["address"] = address.strip()
        return {"order_id": order_id, "address": order["address"]}

    def refund_order(self, order_id: str, amount: float, reason: str) -> dict:
        """Refund part or all of a delivered order, within the policy.

        Args:
            order_id: the order's id
            amount: how much to refund, in the order's currency
            reason: one of damaged, wrong_item, not_received, changed_mind
        """
        order = self._order(order_id)
        if reason not in REASONS:
            raise ValueError("reason must be one of %s" % ", ".join(REASONS))
        if order["status"] != "delivered":
            raise ValueError("order %s is %s: only delivered orders are refunded" % (order_id, order["status"]))
        if not (isinstance(amount, (int, float)) and amount > 0):
            raise ValueError("the amount must be a positive number")
        left = round(order["paid"] - order["refunded"], 2)
        if amount > left + 1e-9:
            raise ValueError("order %s has %.2f left to refund; %.2f is too much" % (order_id, left, amount))
        age = (date.fromisoformat(self.today) - date.fromisoformat(order["delivered_on"])).days
        if age > self.window and reason not in ("damaged", "wrong_item"):
            raise PermissionError("order %s was delivered %d days ago; the window is %d days for %s: escalate instead"
                                  % (order_id, age, self.window, reason))
        order["refunded"] = round(order["refunded"] + amount, 2)
        self.refunds.append({"order_id": order_id, "amount": round(float(amount), 2), "reason": reason})
        return {"order_id": order_id, "refunded": round(float(amount), 2), "refunded_total": order["refunded"]}

    def escalate(self, order_id: str, summary: str) -> dict:
        """Hand a case to a human agent (what the tools cannot do, or what the policy does not allow).

        Args:
            order_id: the order the case is about
            summary: one or two sentences for the human agent
        """
        self._order(order_id)
        self.escalations.append({"order_id": order_id})
        return {"order_id": order_id, "escalated": True, "queue_position": len(self.escalations)}
