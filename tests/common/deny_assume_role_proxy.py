"""An HTTP proxy in front of moto that refuses STS AssumeRole for roles
whose name starts with "denied" (403 AccessDenied, as STS answers when the
trust policy does not let the caller in) and passes everything else through.
moto grants any AssumeRole, so this is how a test sees a refused one.

    python deny_assume_role_proxy.py UPSTREAM_URL PORT
"""

import http.client
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = urllib.parse.urlsplit(sys.argv[1])
PORT = int(sys.argv[2])
DENIED = (
    b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
    b"<Type>Sender</Type><Code>AccessDenied</Code>"
    b"<Message>User is not authorized to perform: sts:AssumeRole</Message>"
    b"</Error><RequestId>denied-by-test-proxy</RequestId></ErrorResponse>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        role = (form.get("RoleArn") or [""])[0]
        if form.get("Action") == ["AssumeRole"] and role.split("/")[-1].startswith("denied"):
            self.reply(403, [("Content-Type", "text/xml")], DENIED)
            return
        upstream = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        upstream.close()
        self.reply(response.status, headers, data)

    def reply(self, status, headers, data):
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

    def log_message(self, format, *args):
        sys.stderr.write("proxy: " + format % args + "\n")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Proxy)
    print(f"proxy listening on {PORT}", flush=True)
    server.serve_forever()
