"""twisted.web hello-world server for bench/http.sh: GET /hello -> "Hello, World!".

Prints `listening on 127.0.0.1:PORT` first, like the torsion servers. Context only: the HTTP
benchmark's reference is hyper.
"""
import sys

from twisted.internet import reactor
from twisted.web import resource, server


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Hello, World!"


site = server.Site(Hello())
site.displayTracebacks = False
site.log = lambda request: None  # no access log, like the other servers in the benchmark
port = reactor.listenTCP(0, site, interface="127.0.0.1")
print(f"listening on 127.0.0.1:{port.getHost().port}", flush=True)
reactor.run()
