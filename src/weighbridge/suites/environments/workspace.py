"""A small file workspace: a project's notes, configs and data as files the agent reads and edits.

An agent environment for ``builtin:agent`` (it runs inside the sandbox under ``python -I -S``:
standard library only). The files live in memory, keyed by a normalised path under ``/``: a path
that climbs out (``../../etc/passwd``) is an error the model sees, and nothing here opens a host
file - the sandbox would not let it reach one anyway.
"""

MAX_FILE = 200_000


class Workspace:
    """Files of one project, read and edited through tools."""

    def load_state(self, state):
        self.files = dict(state["files"])
        self.read_only = sorted(state.get("read_only", []))
        self._write_failures = int(state.get("disk_full_writes", 0))

    def state(self):
        """The files, each compared up to trailing whitespace at its end (a final newline or not)."""
        return {"files": {p: c.rstrip() for p, c in self.files.items()}}

    def _path(self, path):
        if not isinstance(path, str) or not path.strip():
            raise ValueError("a path is needed")
        parts = []
        for part in path.strip().split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise PermissionError("%r is outside the workspace" % path)
                parts.pop()
            else:
                parts.append(part)
        return "/" + "/".join(parts)

    def _writable(self, path):
        if path in self.read_only:
            raise PermissionError("%s is read-only" % path)
        if self._write_failures > 0:
            self._write_failures -= 1
            raise OSError("the disk was briefly full; nothing was written - try again")

    def list_files(self, directory: str = "/") -> list:
        """The files under a directory (recursively), with their sizes.

        Args:
            directory: the directory to list, "/" for the whole workspace
        """
        d = self._path(directory)
        prefix = d.rstrip("/") + "/"
        return [{"path": p, "bytes": len(c.encode("utf-8"))} for p, c in sorted(self.files.items())
                if p.startswith(prefix) or d == "/"]

    def read_file(self, path: str) -> str:
        """The text of one file.

        Args:
            path: the file's path, e.g. "/notes/todo.md"
        """
        p = self._path(path)
        if p not in self.files:
            raise FileNotFoundError("no file %s" % p)
        return self.files[p]

    def search(self, text: str) -> list:
        """Every line that contains the text, as path, line number and line.

        Args:
            text: what to look for (case-sensitive)
        """
        if not text:
            raise ValueError("search for something")
        hits = []
        for p, content in sorted(self.files.items()):
            for n, line in enumerate(content.splitlines(), 1):
                if text in line:
                    hits.append({"path": p, "line": n, "text": line[:200]})
        return hits[:50]

    def write_file(self, path: str, content: str) -> dict:
        """Create a file or replace its whole content.

        Args:
            path: the file's path
            content: the complete new text of the file
        """
        p = self._path(path)
        if len(content) > MAX_FILE:
            raise ValueError("a file holds at most %d characters" % MAX_FILE)
        self._writable(p)
        self.files[p] = content
        return {"path": p, "bytes": len(content.encode("utf-8"))}

    def replace_in_file(self, path: str, old: str, new: str) -> dict:
        """Replace one exact piece of text in a file (it must occur exactly once).

        Args:
            path: the file's path
            old: the exact text to replace
            new: the text to put instead
        """
        p = self._path(path)
        if p not in self.files:
            raise FileNotFoundError("no file %s" % p)
        count = self.files[p].count(old) if old else 0
        if count != 1:
            raise ValueError("the text occurs %d times in %s; it must occur exactly once" % (count, p))
        self._writable(p)
        self.files[p] = self.files[p].replace(old, new)
        return {"path": p, "replaced": 1}

    def move_file(self, source: str, destination: str) -> dict:
        """Move or rename a file (never over an existing one).

        Args:
            source: the file's current path
            destination: its new path
        """
        s, d = self._path(source), self._path(destination)
        if s not in self.files:
            raise FileNotFoundError("no file %s" % s)
        if d in self.files:
            raise FileExistsError("%s already exists" % d)
        self._writable(s)
        self.files[d] = self.files.pop(s)
        return {"moved": s, "to": d}

    def delete_file(self, path: str) -> dict:
        """Delete one file.

        Args:
            path: the file's path
        """
        p = self._path(path)
        if p not in self.files:
            raise FileNotFoundError("no file %s" % p)
        self._writable(p)
        del self.files[p]
        return {"deleted": p}
