"""An IT help desk's ticket system: tickets, their priority and owner, comments, and who is on duty.

An agent environment for ``builtin:agent`` (it runs inside the sandbox under ``python -I -S``:
standard library only). New ticket ids come from the state's counter, so a replay of the same calls
creates the same ids.

Rules the tools enforce: a ticket is assigned only to staff of the ticket's team who are not on
leave; ``urgent`` tickets need an owner who is on call; a ticket is closed only once it is
``resolved``; a closed ticket cannot change.
"""

STATUSES = ("open", "in_progress", "resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")


class HelpDesk:
    """The help desk's tickets and staff."""

    def load_state(self, state):
        self.tickets = {k: dict(v) for k, v in state["tickets"].items()}
        for t in self.tickets.values():
            t.setdefault("comments", [])
            t.setdefault("assignee", None)
        self.staff = {k: dict(v) for k, v in state["staff"].items()}
        self.next_id = int(state.get("next_id", 100))
        self._search_outages = int(state.get("search_outages", 0))

    def state(self):
        return {"tickets": self.tickets, "next_id": self.next_id}

    def _ticket(self, ticket_id, change=False):
        if ticket_id not in self.tickets:
            raise KeyError("no ticket %r" % ticket_id)
        t = self.tickets[ticket_id]
        if change and t["status"] == "closed":
            raise ValueError("ticket %s is closed and cannot change" % ticket_id)
        return t

    def search_tickets(self, text: str = "", status: str | None = None) -> list:
        """Tickets whose title contains the text (any case), optionally only those of one status.

        Args:
            text: words from the title; "" for all tickets
            status: open, in_progress, resolved or closed
        """
        if self._search_outages > 0:
            self._search_outages -= 1
            raise ConnectionError("the search index is rebuilding; try again in a moment")
        if status is not None and status not in STATUSES:
            raise ValueError("status is one of %s" % ", ".join(STATUSES))
        return [{"ticket_id": k, "title": t["title"], "status": t["status"], "priority": t["priority"],
                 "assignee": t["assignee"]} for k, t in sorted(self.tickets.items())
                if text.lower() in t["title"].lower() and (status is None or t["status"] == status)]

    def get_ticket(self, ticket_id: str) -> dict:
        """One ticket in full, with its comments.

        Args:
            ticket_id: the ticket's id, e.g. "T-12"
        """
        return {"ticket_id": ticket_id, **self._ticket(ticket_id)}

    def list_staff(self, team: str) -> list:
        """The staff of a team, with whether they are on call or on leave.

        Args:
            team: network, desktop or accounts
        """
        people = [{"name": n, **s} for n, s in sorted(self.staff.items()) if s["team"] == team]
        if not people:
            raise LookupError("no team %r (teams: %s)" % (team, ", ".join(sorted({s["team"] for s in self.staff.values()}))))
        return people

    def create_ticket(self, title: str, team: str, priority: str = "normal") -> dict:
        """Open a new ticket.

        Args:
            title: a short title saying what is wrong
            team: the team that handles it: network, desktop or accounts
            priority: low, normal, high or urgent
        """
        if priority not in PRIORITIES:
            raise ValueError("priority is one of %s" % ", ".join(PRIORITIES))
        if team not in {s["team"] for s in self.staff.values()}:
            raise ValueError("no team %r" % team)
        if not title.strip():
            raise ValueError("a ticket needs a title")
        tid = "T-%d" % self.next_id
        self.next_id += 1
        self.tickets[tid] = {"title": title.strip(), "team": team, "priority": priority, "status": "open",
                             "assignee": None, "comments": []}
        return {"ticket_id": tid}

    def assign_ticket(self, ticket_id: str, assignee: str) -> dict:
        """Give a ticket to a member of its team (it then counts as in progress).

        Args:
            ticket_id: the ticket's id
            assignee: the staff member's name
        """
        t = self._ticket(ticket_id, change=True)
        person = self.staff.get(assignee)
        if person is None:
            raise LookupError("no staff member %r" % assignee)
        if person["team"] != t["team"]:
            raise ValueError("%s is in %s; ticket %s belongs to %s" % (assignee, person["team"], ticket_id, t["team"]))
        if person.get("on_leave"):
            raise ValueError("%s is on leave" % assignee)
        if t["priority"] == "urgent" and not person.get("on_call"):
            raise ValueError("urgent tickets go to someone on call; %s is not" % assignee)
        t["assignee"] = assignee
        if t["status"] == "open":
            t["status"] = "in_progress"
        return {"ticket_id": ticket_id, "assignee": assignee, "status": t["status"]}

    def set_priority(self, ticket_id: str, priority: str) -> dict:
        """Change a ticket's priority.

        Args:
            ticket_id: the ticket's id
            priority: low, normal, high or urgent
        """
        t = self._ticket(ticket_id, change=True)
        if priority not in PRIORITIES:
            raise ValueError("priority is one of %s" % ", ".join(PRIORITIES))
        t["priority"] = priority
        return {"ticket_id": ticket_id, "priority": priority}

    def add_comment(self, ticket_id: str, text: str) -> dict:
        """Add a comment to a ticket.

        Args:
            ticket_id: the ticket's id
            text: the comment
        """
        t = self._ticket(ticket_id, change=True)
        if not text.strip():
            raise ValueError("the comment is empty")
        t["comments"].append(text.strip())
        return {"ticket_id": ticket_id, "comments": len(t["comments"])}

    def resolve_ticket(self, ticket_id: str) -> dict:
        """Mark a ticket resolved (the problem is fixed).

        Args:
            ticket_id: the ticket's id
        """
        t = self._ticket(ticket_id, change=True)
        t["status"] = "resolved"
        return {"ticket_id": ticket_id, "status": "resolved"}

    def close_ticket(self, ticket_id: str) -> dict:
        """Close a resolved ticket for good.

        Args:
            ticket_id: the ticket's id
        """
        t = self._ticket(ticket_id, change=True)
        if t["status"] != "resolved":
            raise ValueError("ticket %s is %s: resolve it before closing" % (ticket_id, t["status"]))
        t["status"] = "closed"
        return {"ticket_id": ticket_id, "status": "closed"}
