"""A small Hugging Face Hub-compatible HTTP server for tests: a TEST DOUBLE, not a feature of hf_supermask.

The real Hub is unreachable from the test machines, so the Hub round trip (`push_to_hub`, then `from_pretrained` /
`pipeline` from a repo id) runs against this server on 127.0.0.1. It speaks the subset of the Hub protocol that
huggingface_hub 2.x and transformers 5.x use for that round trip, as read from huggingface_hub's sources
(`hf_api.py`, `_commit_api.py`, `file_download.py`, `utils/_http.py`):

- `POST /api/repos/create`                                    create a repo (409 if it exists, like the Hub)
- `POST /api/{type}s/{repo_id}/preupload/{revision}`          every file is answered "regular" (inline upload)
- `POST /api/{type}s/{repo_id}/commit/{revision}`             NDJSON: header, file (base64), deletedFile/Folder
- `POST /api/{type}s/{repo_id}/branch/{branch}`               create a branch (409 if it exists)
- `GET  /api/{type}s/{repo_id}[/revision/{revision}]`         repo info (sha, siblings)
- `GET  /api/{type}s/{repo_id}/tree/{revision}[/{path}]`      tree listing (`?recursive=true` supported)
- `GET|HEAD /[{type}s/]{repo_id}/resolve/{revision}/{path}`   file download with ETag, X-Repo-Commit,
                                                               Content-Length (and Range on GET)
- `GET  /api/whoami-v2`, `POST /api/validate-yaml`, `GET /api/agent-harnesses` (an empty registry)

Errors carry the headers huggingface_hub maps to its exceptions: `X-Error-Code: RepoNotFound | RevisionNotFound |
EntryNotFound` with a 404 (`EntryNotFound` on an absent file is what lets transformers probe optional tokenizer files).
Commits are immutable and content-addressed (a 40-hex sha per commit), so `revision=<sha>` keeps working after the
branch moves on. Storage is in memory. Only the standard library is used. Bounded: request bodies are capped, idle
keep-alive connections time out, and `stop()` joins the serving thread with a timeout.

    with HubServer(token="hf_test") as hub:   # binds a free port on 127.0.0.1
        os.environ["HF_ENDPOINT"] = hub.url

Not implemented (answered 400/404): pull requests (`create_pr`), LFS/Xet uploads, tags, paths-info, commit listing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO_ACTIONS = {"revision", "tree", "preupload", "commit", "branch", "refs", "paths-info", "commits"}
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (`git hash-object`), which is what the Hub uses as a regular file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubError(Exception):
    """An HTTP error answered the way the Hub does: status, JSON body and `X-Error-Code` / `X-Error-Message`."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    date: float
    files: dict  # path -> bytes (immutable once committed)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: float
    refs: dict = field(default_factory=dict)  # branch -> commit oid
    commits: dict = field(default_factory=dict)  # oid -> Commit

    def resolve(self, revision: str) -> Commit:
        revision = revision or "main"
        if revision in self.refs:
            return self.commits[self.refs[revision]]
        if revision in self.commits:
            return self.commits[revision]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class HubServer:
    """An in-memory Hub-compatible server on a free loopback port, served from a background thread."""

    def __init__(self, token: str | None = None, user: str = "user", port: int = 0, max_body_bytes: int = 256 << 20):
        self.token = token  # when set, writes (and whoami) need `Authorization: Bearer <token>`
        self.user = user
        self.max_body_bytes = max_body_bytes
        self.requests: deque = deque(maxlen=5000)  # (time, method, path, status) of every request, for debugging
        self._repos: dict[tuple[str, str], Repo] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.hub = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="hub-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- introspection for tests --------------------------------------------------------------------------------

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """The commit sha `revision` points to."""
        with self._lock:
            return self._repo(repo_type, repo_id).resolve(revision).oid

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """Every file of the repo at `revision`, by path."""
        with self._lock:
            return dict(self._repo(repo_type, repo_id).resolve(revision).files)

    # ---- storage --------------------------------------------------------------------------------------------------

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def _has_repo(self, repo_type: str, repo_id: str) -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def _new_commit(self, parent: Commit | None, title: str, description: str, files: dict) -> Commit:
        self._counter += 1
        digest = hashlib.sha1()
        digest.update(json.dumps([parent.oid if parent else None, title, description, self._counter]).encode())
        for path in sorted(files):
            digest.update(f"{path}\0{git_blob_sha1(files[path])}\0".encode())
        return Commit(digest.hexdigest(), parent.oid if parent else None, title, description, time.time(), files)

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> tuple[Repo, bool]:
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                return self._repos[(repo_type, repo_id)], False
            repo = Repo(repo_type, repo_id, private, time.time())
            initial = self._new_commit(None, "initial commit", "", {".gitattributes": _GITATTRIBUTES})
            repo.commits[initial.oid] = initial
            repo.refs["main"] = initial.oid
            self._repos[(repo_type, repo_id)] = repo
            return repo, True

    def commit(self, repo_type, repo_id, branch, header, operations) -> Commit:
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            if branch not in repo.refs:
                if branch in repo.commits:
                    raise HubError(400, f"Cannot commit to a commit sha ({branch}): pass a branch as revision")
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent = repo.commits[repo.refs[branch]]
            expected = header.get("parentCommit")
            if expected and expected != parent.oid:
                raise HubError(412, f"Parent commit {expected} is not the head of {branch} ({parent.oid})")
            files = dict(parent.files)
            for key, value in operations:
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding for {path}: {value.get('encoding')}")
                    files[path] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                elif key == "lfsFile":
                    raise HubError(
                        400, f"LFS uploads are not supported by this test server ({path}); preupload answers 'regular'"
                    )
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            commit = self._new_commit(parent, header.get("summary", ""), header.get("description", ""), files)
            repo.commits[commit.oid] = commit
            repo.refs[branch] = commit.oid
            return commit

    def create_branch(self, repo_type, repo_id, branch, starting_point) -> None:
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            if branch in repo.refs:
                raise HubError(409, f"Reference refs/heads/{branch} already exists")
            repo.refs[branch] = repo.resolve(starting_point or "main").oid


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a client that keeps a connection open never blocks shutdown
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    server_version = "hf-supermask-test-hub/1.0"

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def log_message(self, format, *args):  # noqa: A002 - keep the request log in memory, not on stderr
        pass

    # ---- plumbing -----------------------------------------------------------------------------------------------

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        status = 500
        try:
            body = self._read_body()
            status = self._route(method, body)
        except HubError as error:
            status = self._send_error(error, method)
        except Exception as error:  # a bug in the double: answer 500 rather than hang the client
            status = self._send_error(HubError(500, f"{type(error).__name__}: {error}"), method)
        finally:
            self.hub.requests.append((time.time(), method, self.path, status))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1000).strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > self.hub.max_body_bytes:
                    self.close_connection = True
                    raise HubError(413, "Payload too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(10)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.hub.max_body_bytes:
            self.close_connection = True
            raise HubError(413, "Payload too large")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers=None, head=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)
        return status

    def _json(self, payload, status: int = 200, headers=None) -> int:
        return self._send(status, json.dumps(payload).encode(), headers=headers)

    def _send_error(self, error: HubError, method: str) -> int:
        headers = {"X-Error-Message": error.message.encode("ascii", "replace").decode(), **error.headers}
        if error.code:
            headers["X-Error-Code"] = error.code
        body = json.dumps({"error": error.message}).encode()
        return self._send(error.status, body, headers=headers, head=method == "HEAD")

    def _require_token(self) -> None:
        if self.hub.token is None:
            return
        if self.headers.get("Authorization") != f"Bearer {self.hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header")

    def _endpoint(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self._endpoint()}/{_URL_PREFIX[repo_type]}{repo_id}"

    # ---- routing ------------------------------------------------------------------------------------------------

    def _route(self, method: str, body: bytes) -> int:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        segments = [unquote(s) for s in url.path.strip("/").split("/")] if url.path.strip("/") else []
        head = method == "HEAD"

        if segments[:1] == ["api"]:
            rest = segments[1:]
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo(json.loads(body or b"{}"))
            if rest == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if rest == ["validate-yaml"] and method == "POST":
                return self._json({"errors": [], "warnings": []})
            if rest == ["agent-harnesses"] and method == "GET":
                return self._json({"standardEnvVars": [], "harnesses": {}})
            if rest and rest[0] in REPO_TYPES:
                return self._repo_api(method, REPO_TYPES[rest[0]], rest[1:], query, body)
            raise HubError(404, f"Not found: {url.path}")

        repo_type = "model"
        if segments and segments[0] in ("datasets", "spaces"):
            repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
        for width in (2, 1):  # repo ids are "namespace/name" (or a bare legacy "name")
            if len(segments) > width + 1 and segments[width] == "resolve" and method in ("GET", "HEAD"):
                repo_id = "/".join(segments[:width])
                return self._resolve(repo_type, repo_id, segments[width + 1], "/".join(segments[width + 2 :]), head)
        raise HubError(404, f"Not found: {url.path}")

    def _split_repo_id(self, repo_type: str, rest: list[str]) -> tuple[str, list[str]]:
        if len(rest) >= 2 and self.hub._has_repo(repo_type, "/".join(rest[:2])):
            return "/".join(rest[:2]), rest[2:]
        if rest and self.hub._has_repo(repo_type, rest[0]):
            return rest[0], rest[1:]
        if len(rest) >= 2 and rest[1] not in _REPO_ACTIONS:
            return "/".join(rest[:2]), rest[2:]
        return (rest[0] if rest else ""), rest[1:]

    def _repo_api(self, method, repo_type, rest, query, body) -> int:
        repo_id, action = self._split_repo_id(repo_type, rest)
        if method == "GET" and not action:
            return self._info(repo_type, repo_id, "main")
        if method == "GET" and action[0] == "revision" and len(action) >= 2:
            return self._info(repo_type, repo_id, "/".join(action[1:]))
        if method == "GET" and action[0] == "tree" and len(action) >= 2:
            recursive = query.get("recursive", "false").lower() in ("1", "true")
            return self._tree(repo_type, repo_id, action[1], "/".join(action[2:]), recursive)
        if method == "POST" and action[0] == "preupload" and len(action) >= 2:
            self._require_token()
            return self._preupload(repo_type, repo_id, "/".join(action[1:]), json.loads(body or b"{}"))
        if method == "POST" and action[0] == "commit" and len(action) >= 2:
            self._require_token()
            if query.get("create_pr") in ("1", "true"):
                raise HubError(400, "Pull requests (create_pr) are not supported by this test server")
            return self._commit(repo_type, repo_id, "/".join(action[1:]), body)
        if method == "POST" and action[0] == "branch" and len(action) >= 2:
            self._require_token()
            payload = json.loads(body or b"{}")
            self.hub.create_branch(repo_type, repo_id, "/".join(action[1:]), payload.get("startingPoint"))
            return self._json({})
        raise HubError(404, f"Not found: {method} {self.path}")

    # ---- endpoints ----------------------------------------------------------------------------------------------

    def _whoami(self) -> int:
        if self.hub.token is not None and self.headers.get("Authorization") != f"Bearer {self.hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        access = {"displayName": "test", "role": "write", "fineGrained": None}
        return self._json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": self.hub.user,
                "fullname": self.hub.user,
                "email": None,
                "emailVerified": False,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": access},
            }
        )

    def _create_repo(self, payload: dict) -> int:
        self._require_token()
        name, organization = payload.get("name"), payload.get("organization")
        if not name or "/" in name:
            raise HubError(400, f"Invalid repo name: {name!r}")
        repo_type = payload.get("type") or "model"
        if repo_type not in _URL_PREFIX:
            raise HubError(400, f"Invalid repo type: {repo_type!r}")
        repo_id = f"{organization or self.hub.user}/{name}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        _, created = self.hub.create_repo(repo_type, repo_id, private)
        url = self._repo_url(repo_type, repo_id)
        if not created:
            return self._json({"error": f"You already created this {repo_type} repo", "url": url}, status=409)
        return self._json({"url": url, "name": repo_id, "id": repo_id})

    def _info(self, repo_type: str, repo_id: str, revision: str) -> int:
        with self.hub._lock:
            repo = self.hub._repo(repo_type, repo_id)
            commit = repo.resolve(revision)
            created, private = repo.created, repo.private
        siblings = [
            {"rfilename": path, "size": len(data), "blobId": git_blob_sha1(data)}
            for path, data in sorted(commit.files.items())
        ]
        info = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(created),
            "private": private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(s["size"] for s in siblings),
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        return self._json(info)

    def _tree(self, repo_type, repo_id, revision, path, recursive) -> int:
        with self.hub._lock:
            commit = self.hub._repo(repo_type, repo_id).resolve(revision)
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        below = {p[len(prefix) :]: data for p, data in commit.files.items() if p.startswith(prefix)}
        if path and not below:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        entries, folders = [], set()
        for relative, data in sorted(below.items()):
            parts = relative.split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add("/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(
                    {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": prefix + relative}
                )
        for folder in sorted(folders):
            content = "\n".join(sorted(p for p in below if p.startswith(folder + "/")))
            oid = hashlib.sha1(f"tree {commit.oid} {prefix}{folder}\n{content}".encode()).hexdigest()
            entries.append({"type": "directory", "oid": oid, "size": 0, "path": prefix + folder})
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        return self._json(entries)

    def _preupload(self, repo_type, repo_id, revision, payload) -> int:
        with self.hub._lock:
            commit = self.hub._repo(repo_type, repo_id).resolve(revision)
        answers = []
        for item in payload.get("files", []):
            existing = commit.files.get(item.get("path"))
            answers.append(
                {
                    "path": item.get("path"),
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(existing) if existing is not None else None,
                }
            )
        return self._json({"files": answers, "commitOid": commit.oid})

    def _commit(self, repo_type, repo_id, branch, body) -> int:
        header, operations = None, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            if item.get("key") == "header":
                header = item.get("value") or {}
            else:
                operations.append((item.get("key"), item.get("value") or {}))
        if header is None:
            raise HubError(400, "The commit payload has no header line")
        commit = self.hub.commit(repo_type, repo_id, branch, header, operations)
        return self._json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    def _resolve(self, repo_type, repo_id, revision, path, head) -> int:
        with self.hub._lock:
            commit = self.hub._repo(repo_type, repo_id).resolve(revision)
        data = commit.files.get(path)
        if data is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        status, body = 200, data
        byte_range = self.headers.get("Range")
        if byte_range and not head:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", byte_range.strip())
            if not match or not (match.group(1) or match.group(2)):
                raise HubError(416, f"Invalid range: {byte_range}")
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
            else:  # suffix range: the last N bytes
                start, end = max(len(data) - int(match.group(2)), 0), len(data) - 1
            if start >= len(data) or start > end:
                raise HubError(
                    416, f"Range not satisfiable: {byte_range}", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return self._send(status, body, content_type, headers=headers, head=head)


if __name__ == "__main__":  # a manual check: python tests/hub_server.py [port]
    import sys

    with HubServer(token="hf_test", port=int(sys.argv[1]) if len(sys.argv) > 1 else 0) as hub:
        print(f"HF_ENDPOINT={hub.url} HF_TOKEN=hf_test", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
