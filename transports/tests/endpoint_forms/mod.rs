//! The table of endpoint strings shared by `endpoint.rs` and `endpoint_twisted.rs`: every form,
//! the value it parses to, and its canonical display.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use torsion_transports::*;

pub fn v4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

pub fn v6_localhost() -> Option<IpAddr> {
    Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
}

pub fn tcp(port: u16, interface: Option<IpAddr>, backlog: Option<u32>, ipv6: bool) -> ServerEndpoint {
    ServerEndpoint::Tcp { port, interface, backlog, ipv6 }
}

pub fn unix(addr: UnixAddr, mode: Option<u32>, lockfile: bool, backlog: Option<u32>) -> ServerEndpoint {
    ServerEndpoint::Unix { addr, mode, lockfile, backlog }
}

pub fn path(p: &str) -> UnixAddr {
    UnixAddr::Path(p.into())
}

pub fn ctcp(host: &str, port: u16, timeout: Option<u64>, bind: Option<IpAddr>) -> ClientEndpoint {
    ClientEndpoint::Tcp {
        host: host.into(),
        port,
        timeout: timeout.map(Duration::from_secs),
        bind_address: bind,
    }
}

/// (description, expected value, canonical display).
pub fn server_table() -> Vec<(&'static str, ServerEndpoint, &'static str)> {
    let ssl = |port, interface, backlog, key: &str, cert: &str, extra: Option<&str>| ServerEndpoint::Ssl {
        port,
        interface,
        backlog,
        private_key: key.into(),
        cert_key: cert.into(),
        extra_cert_chain: extra.map(PathBuf::from),
    };
    vec![
        ("tcp:8080", tcp(8080, None, None, false), "tcp:8080"),
        ("tcp:0", tcp(0, None, None, false), "tcp:0"),
        ("tcp:65535", tcp(65535, None, None, false), "tcp:65535"),
        (
            "tcp:8080:interface=127.0.0.1",
            tcp(8080, v4(127, 0, 0, 1), None, false),
            "tcp:8080:interface=127.0.0.1",
        ),
        ("tcp:port=8080:backlog=10", tcp(8080, None, Some(10), false), "tcp:8080:backlog=10"),
        ("tcp:backlog=10:8080", tcp(8080, None, Some(10), false), "tcp:8080:backlog=10"),
        (
            "tcp:8080:127.0.0.1:7",
            tcp(8080, v4(127, 0, 0, 1), Some(7), false),
            "tcp:8080:interface=127.0.0.1:backlog=7",
        ),
        (r"tcp:8080:interface=\:\:1", tcp(8080, v6_localhost(), None, false), r"tcp:8080:interface=\:\:1"),
        (r"tcp6:8080", tcp(8080, None, None, true), "tcp6:8080"),
        (r"tcp6:8080:interface=\:\:1", tcp(8080, v6_localhost(), None, true), r"tcp6:8080:interface=\:\:1"),
        ("tcp6:8080:interface=[::1]", tcp(8080, v6_localhost(), None, true), r"tcp6:8080:interface=\:\:1"),
        ("tcp6:8080:5", tcp(8080, None, Some(5), true), "tcp6:8080:backlog=5"),
        (
            r"tcp6:8080:backlog=5:interface=fe80\:\:1",
            tcp(8080, "fe80::1".parse().ok(), Some(5), true),
            r"tcp6:8080:interface=fe80\:\:1:backlog=5",
        ),
        ("127.0.0.1:8080", tcp(8080, v4(127, 0, 0, 1), None, false), "tcp:8080:interface=127.0.0.1"),
        ("0.0.0.0:0", tcp(0, v4(0, 0, 0, 0), None, false), "tcp:0:interface=0.0.0.0"),
        ("[::1]:8080", tcp(8080, v6_localhost(), None, true), r"tcp6:8080:interface=\:\:1"),
        ("unix:/run/app.sock", unix(path("/run/app.sock"), None, true, None), "unix:/run/app.sock"),
        (
            "unix:rel/app.sock:mode=660",
            unix(path("rel/app.sock"), Some(0o660), true, None),
            "unix:rel/app.sock:mode=660",
        ),
        (
            "unix:/s:mode=0600:lockfile=0:backlog=3",
            unix(path("/s"), Some(0o600), false, Some(3)),
            "unix:/s:mode=600:backlog=3:lockfile=0",
        ),
        ("unix:/s:lockfile=1", unix(path("/s"), None, true, None), "unix:/s"),
        ("unix:address=/s", unix(path("/s"), None, true, None), "unix:/s"),
        ("unix:@torsion", unix(UnixAddr::Abstract(b"torsion".to_vec()), None, true, None), "unix:@torsion"),
        (r"unix:\@at", unix(path("@at"), None, true, None), r"unix:\@at"),
        (r"unix:/tmp/a\:b\=c\\d", unix(path(r"/tmp/a:b=c\d"), None, true, None), r"unix:/tmp/a\:b\=c\\d"),
        ("unix:/tmp/[x]", unix(path("/tmp/[x]"), None, true, None), "unix:/tmp/[x]"),
        (
            "ssl:443:privateKey=key.pem:certKey=cert.pem",
            ssl(443, None, None, "key.pem", "cert.pem", None),
            "ssl:443:privateKey=key.pem:certKey=cert.pem",
        ),
        (
            "ssl:443:privateKey=both.pem",
            ssl(443, None, None, "both.pem", "both.pem", None),
            "ssl:443:privateKey=both.pem",
        ),
        ("ssl:443", ssl(443, None, None, "server.pem", "server.pem", None), "ssl:443:privateKey=server.pem"),
        (
            "ssl:443:k.pem:c.pem",
            ssl(443, None, None, "k.pem", "c.pem", None),
            "ssl:443:privateKey=k.pem:certKey=c.pem",
        ),
        (
            r"ssl:0:privateKey=k.pem:extraCertChain=chain.pem:interface=\:\:1:backlog=9",
            ssl(0, v6_localhost(), Some(9), "k.pem", "k.pem", Some("chain.pem")),
            r"ssl:0:privateKey=k.pem:extraCertChain=chain.pem:interface=\:\:1:backlog=9",
        ),
        (
            "systemd:domain=INET:index=0",
            ServerEndpoint::Systemd { domain: SystemdDomain::Inet, index: 0 },
            "systemd:domain=INET:index=0",
        ),
        (
            "systemd:INET6:index=2",
            ServerEndpoint::Systemd { domain: SystemdDomain::Inet6, index: 2 },
            "systemd:domain=INET6:index=2",
        ),
        (
            "systemd:domain=UNIX:index=1",
            ServerEndpoint::Systemd { domain: SystemdDomain::Unix, index: 1 },
            "systemd:domain=UNIX:index=1",
        ),
    ]
}

pub fn client_table() -> Vec<(&'static str, ClientEndpoint, &'static str)> {
    let tls = |host: &str, port, ca: Option<&str>, timeout: Option<u64>| ClientEndpoint::Tls {
        host: host.into(),
        port,
        ca_certs_dir: ca.map(PathBuf::from),
        timeout: timeout.map(Duration::from_secs),
        bind_address: None,
    };
    vec![
        ("tcp:host=example.com:port=80", ctcp("example.com", 80, None, None), "tcp:host=example.com:port=80"),
        ("tcp:example.com:80", ctcp("example.com", 80, None, None), "tcp:host=example.com:port=80"),
        ("tcp:host=example.com:80", ctcp("example.com", 80, None, None), "tcp:host=example.com:port=80"),
        ("tcp:example.com:port=80", ctcp("example.com", 80, None, None), "tcp:host=example.com:port=80"),
        (
            "tcp:h:1:timeout=5:bindAddress=127.0.0.1",
            ctcp("h", 1, Some(5), v4(127, 0, 0, 1)),
            "tcp:host=h:port=1:timeout=5:bindAddress=127.0.0.1",
        ),
        (r"tcp:host=\:\:1:port=65535", ctcp("::1", 65535, None, None), r"tcp:host=\:\:1:port=65535"),
        ("tcp:host=[::1]:port=8", ctcp("::1", 8, None, None), r"tcp:host=\:\:1:port=8"),
        (
            r"tcp:h:9:bindAddress=\:\:1",
            ctcp("h", 9, None, v6_localhost()),
            r"tcp:host=h:port=9:bindAddress=\:\:1",
        ),
        ("example.com:80", ctcp("example.com", 80, None, None), "tcp:host=example.com:port=80"),
        ("localhost:8080", ctcp("localhost", 8080, None, None), "tcp:host=localhost:port=8080"),
        ("127.0.0.1:8080", ctcp("127.0.0.1", 8080, None, None), "tcp:host=127.0.0.1:port=8080"),
        ("[::1]:8080", ctcp("::1", 8080, None, None), r"tcp:host=\:\:1:port=8080"),
        (
            "tcp:h:1:timeout=2.5",
            ClientEndpoint::Tcp {
                host: "h".into(),
                port: 1,
                timeout: Some(Duration::from_millis(2500)),
                bind_address: None,
            },
            "tcp:host=h:port=1:timeout=2.5",
        ),
        (
            "unix:/run/app.sock",
            ClientEndpoint::Unix { addr: path("/run/app.sock"), timeout: None },
            "unix:path=/run/app.sock",
        ),
        (
            "unix:path=/s:timeout=3",
            ClientEndpoint::Unix { addr: path("/s"), timeout: Some(Duration::from_secs(3)) },
            "unix:path=/s:timeout=3",
        ),
        (
            "unix:@name",
            ClientEndpoint::Unix { addr: UnixAddr::Abstract(b"name".to_vec()), timeout: None },
            "unix:path=@name",
        ),
        (
            "tls:host=example.com:port=443",
            tls("example.com", 443, None, None),
            "tls:host=example.com:port=443",
        ),
        (
            "tls:example.com:443:7",
            tls("example.com", 443, None, Some(7)),
            "tls:host=example.com:port=443:timeout=7",
        ),
        (
            "tls:host=a:port=1:caCertsDir=/etc/ssl/certs",
            tls("a", 1, Some("/etc/ssl/certs"), None),
            "tls:host=a:port=1:trustRoots=/etc/ssl/certs",
        ),
        ("tls:host=a:port=1:trustRoots=ca", tls("a", 1, Some("ca"), None), "tls:host=a:port=1:trustRoots=ca"),
        (
            "tls:host=a:port=1:bindAddress=10.0.0.1:timeout=4",
            ClientEndpoint::Tls {
                host: "a".into(),
                port: 1,
                ca_certs_dir: None,
                timeout: Some(Duration::from_secs(4)),
                bind_address: v4(10, 0, 0, 1),
            },
            "tls:host=a:port=1:timeout=4:bindAddress=10.0.0.1",
        ),
    ]
}
