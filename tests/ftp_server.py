"""A minimal FTP server on 127.0.0.1 for active-mode downloads (EPRT/PORT, then RETR).

libcurl's active mode makes a listening socket of its own, which it never passes to
SOCKOPTFUNCTION, and accepts the server's data connection on it: the one case where libcurl
closes a socket that curlfault's trackers never saw made. One control connection at a time,
one thread; ``close()`` closes every socket and joins the thread.
"""

from __future__ import annotations

import socket
import threading


class ActiveFtpServer:
    """``with ActiveFtpServer(b"data") as srv: get(srv.url("file.txt"), FTPPORT="127.0.0.1")``."""

    def __init__(self, data: bytes = b"hello ftp") -> None:
        self.data = data
        self.commands: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ftp-server", daemon=True)

    def url(self, name: str) -> str:
        return f"ftp://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> ActiveFtpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with reader:
            conn.sendall(b"220 ready\r\n")
            target: tuple[str, int] | None = None
            for raw in reader:
                line = raw.decode("latin-1").strip()
                self.commands.append(line)
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                if verb == "EPRT":  # |1|127.0.0.1|port|
                    _, _, host, port, _ = arg.split("|")
                    target = (host, int(port))
                    reply = "200 EPRT ok"
                elif verb == "PORT":  # h1,h2,h3,h4,p1,p2
                    parts = arg.split(",")
                    target = (".".join(parts[:4]), int(parts[4]) * 256 + int(parts[5]))
                    reply = "200 PORT ok"
                elif verb == "RETR" and target is not None:
                    conn.sendall(b"150 sending\r\n")
                    with socket.create_connection(target, timeout=10) as data:
                        data.sendall(self.data)
                    target = None
                    reply = "226 done"
                else:
                    reply = {
                        "USER": "331 any password",
                        "PASS": "230 logged in",
                        "PWD": '257 "/"',
                        "CWD": "250 ok",
                        "TYPE": "200 ok",
                        "SIZE": f"213 {len(self.data)}",
                    }.get(verb, "502 not implemented")
                conn.sendall(reply.encode() + b"\r\n")
