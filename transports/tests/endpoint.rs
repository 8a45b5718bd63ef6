//! Endpoint strings: every form parses to the expected value and displays to a canonical string
//! that parses back to it; bad strings are typed errors naming the field and its byte offset;
//! any value displays to a string that parses back to it (proptest). Twisted's own parser reads
//! the same strings in `endpoint_twisted.rs`.

mod endpoint_forms;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use endpoint_forms::*;
use proptest::prelude::*;
use torsion_transports::*;

#[test]
fn every_server_form_parses_displays_canonically_and_round_trips() {
    for (text, expected, canonical) in server_table() {
        let parsed: ServerEndpoint = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(parsed.to_string(), canonical, "{text}");
        assert_eq!(canonical.parse::<ServerEndpoint>(), Ok(expected), "{canonical}");
    }
}

#[test]
fn every_client_form_parses_displays_canonically_and_round_trips() {
    for (text, expected, canonical) in client_table() {
        let parsed: ClientEndpoint = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(parsed.to_string(), canonical, "{text}");
        assert_eq!(canonical.parse::<ClientEndpoint>(), Ok(expected), "{canonical}");
    }
}

#[test]
fn helpers_give_the_address_to_bind_and_the_host_to_resolve() {
    let addr = |s: &str| s.parse::<ServerEndpoint>().unwrap().address().map(|a| a.to_string());
    assert_eq!(addr("tcp:80").as_deref(), Some("0.0.0.0:80"));
    assert_eq!(addr("tcp6:80").as_deref(), Some("[::]:80"));
    assert_eq!(addr("tcp:80:interface=127.0.0.1").as_deref(), Some("127.0.0.1:80"));
    assert_eq!(addr("ssl:443").as_deref(), Some("0.0.0.0:443"));
    assert_eq!(addr("unix:/s").as_deref(), Some("unix:/s"));
    assert_eq!(addr("unix:@n").as_deref(), Some("unix:@n"));
    assert_eq!(addr("systemd:domain=INET:index=0"), None);

    let hp = |s: &str| s.parse::<ClientEndpoint>().unwrap().host_port().map(|(h, p)| (h.to_owned(), p));
    assert_eq!(hp("tcp:example.com:80"), Some(("example.com".into(), 80)));
    assert_eq!(hp("tls:host=a:port=443"), Some(("a".into(), 443)));
    assert_eq!(hp("unix:/s"), None);

    // An Address is an endpoint: the same as parsing its string.
    for text in ["127.0.0.1:8000", "[::1]:8000", "unix:/tmp/x.sock", "unix:@name"] {
        let address: Address = text.parse().unwrap();
        assert_eq!(ServerEndpoint::from(address.clone()), text.parse::<ServerEndpoint>().unwrap(), "{text}");
        assert_eq!(ClientEndpoint::from(address.clone()), text.parse::<ClientEndpoint>().unwrap(), "{text}");
        assert_eq!(ServerEndpoint::from(address.clone()).address(), Some(address));
    }
}

#[test]
fn bad_server_strings_name_the_field_and_its_position() {
    let long = format!("unix:/{}", "x".repeat(200));
    let exact = format!("unix:/{}", "x".repeat(UNIX_PATH_MAX - 1));
    assert!(exact.parse::<ServerEndpoint>().is_ok(), "{UNIX_PATH_MAX} bytes fit");
    let cases: Vec<(&str, Option<&str>, usize)> = vec![
        ("", None, 0),
        ("tcp", Some("port"), 3),
        ("tcp:", Some("port"), 4),
        ("tcp:99999", Some("port"), 4),
        ("tcp:65536", Some("port"), 4),
        ("tcp:-1", Some("port"), 4),
        ("tcp:+80", Some("port"), 4),
        ("tcp: 80", Some("port"), 4),
        ("tcp:8_0", Some("port"), 4),
        ("tcp:http", Some("port"), 4),
        ("tcp:80:interface=", Some("interface"), 17),
        ("tcp:80:interface=localhost", Some("interface"), 17),
        ("tcp:80:interface=1.2.3", Some("interface"), 17),
        ("tcp6:80:interface=::1", Some("interface"), 18),
        ("tcp6:80:interface=127.0.0.1", Some("interface"), 18),
        ("tcp6:80:interface=[127.0.0.1]", Some("interface"), 18),
        ("tcp6:80:interface=[::1", None, 18),
        ("tcp6:80:interface=[::1]x", Some("interface"), 18),
        (r"tcp6:80:interface=[::1]\:", Some("interface"), 18),
        ("tcp:80:backlog=-1", Some("backlog"), 15),
        ("tcp:80:backlog=4294967296", Some("backlog"), 15),
        ("tcp:80:port=81", Some("port"), 7),
        ("tcp:80:backlog=1:backlog=2", Some("backlog"), 17),
        ("tcp:80:bogus=1", Some("bogus"), 7),
        ("tcp:80:Interface=::1", Some("Interface"), 7),
        ("tcp:80:1.2.3.4:5:6", None, 17),
        ("tcp:80\\", None, 6),
        ("tcp:80:interface=1.2.3.4\\", None, 24),
        ("TCP:80", None, 0),
        ("udp:80", None, 0),
        ("udp:80:x", None, 0),
        ("localhost", None, 0),
        ("8080", None, 0),
        ("::1:80", None, 0),
        ("localhost:8080", Some("host"), 0),
        (":8080", Some("host"), 0),
        ("127.0.0.1:", Some("port"), 10),
        ("127.0.0.1:99999", Some("port"), 10),
        ("[::1]8080", Some("port"), 5),
        ("[::1", None, 0),
        ("[127.0.0.1]:80", Some("host"), 0),
        ("unix:", Some("address"), 5),
        ("unix:@", Some("address"), 5),
        (long.as_str(), Some("address"), 5),
        ("unix:/a\0b", Some("address"), 7),
        ("unix:/s:mode=8", Some("mode"), 13),
        ("unix:/s:mode=rw", Some("mode"), 13),
        ("unix:/s:mode=17777", Some("mode"), 13),
        ("unix:/s:lockfile=yes", Some("lockfile"), 17),
        ("unix:/s:lockfile=2", Some("lockfile"), 17),
        ("unix:/s:lockfile=", Some("lockfile"), 17),
        ("unix:/s:/t", Some("mode"), 8),
        ("ssl:443:sslmethod=TLSv1_METHOD", Some("sslmethod"), 18),
        ("ssl:443:k:c:TLSv1_METHOD", Some("sslmethod"), 12),
        ("ssl:443:dhParameters=dh.pem", Some("dhParameters"), 21),
        ("ssl:443:privateKey=", Some("privateKey"), 19),
        ("ssl:443:privateKey=k:privateKey=k", Some("privateKey"), 21),
        ("ssl:99999:privateKey=k", Some("port"), 4),
        ("systemd:domain=INET", Some("index"), 19),
        ("systemd:domain=inet:index=0", Some("domain"), 15),
        ("systemd:domain=INET:index=x", Some("index"), 26),
        ("systemd:domain=INET:name=web", Some("name"), 25),
        ("systemd:index=0", Some("domain"), 15),
    ];
    let mut wrong = Vec::new();
    for (text, field, position) in cases {
        match text.parse::<ServerEndpoint>() {
            Ok(e) => wrong.push(format!("{text:?} parsed as {e:?}")),
            Err(err) if (err.field(), err.position()) != (field, position) => wrong.push(format!(
                "{text:?}: {:?} (expected {field:?} at {position}): {err}",
                (err.field(), err.position())
            )),
            Err(err) => assert!(!err.to_string().is_empty()),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The errors are the specific kinds, not a catch-all.
    assert!(matches!(
        "tcp6:80:interface=::1".parse::<ServerEndpoint>(),
        Err(EndpointParseError::UnescapedColon { .. })
    ));
    assert!(matches!("tcp:99999".parse::<ServerEndpoint>(), Err(EndpointParseError::BadPort { min: 0, .. })));
    assert!(matches!(
        long.parse::<ServerEndpoint>(),
        Err(EndpointParseError::UnixPathTooLong { len: 201, .. })
    ));
    assert!(matches!("tcp:80:a=1:a=2".parse::<ServerEndpoint>(), Err(EndpointParseError::UnknownKey { .. })));
    assert!(matches!(
        "tcp:80:backlog=1:backlog=2".parse::<ServerEndpoint>(),
        Err(EndpointParseError::DuplicateKey { .. })
    ));
    assert!(matches!(
        "tcp:80\\".parse::<ServerEndpoint>(),
        Err(EndpointParseError::TrailingBackslash { .. })
    ));
    assert!(matches!("udp:80".parse::<ServerEndpoint>(), Err(EndpointParseError::UnknownType { .. })));
    assert!(matches!("unix:/a\0b".parse::<ServerEndpoint>(), Err(EndpointParseError::NulInPath { .. })));
    assert_eq!("".parse::<ServerEndpoint>(), Err(EndpointParseError::Empty));
}

#[test]
fn bad_client_strings_name_the_field_and_its_position() {
    let long = format!("unix:path=/{}", "x".repeat(200));
    let cases: Vec<(&str, Option<&str>, usize)> = vec![
        ("", None, 0),
        ("tcp:example.com", Some("port"), 15),
        ("tcp:port=80", Some("host"), 11),
        ("tcp:h:0", Some("port"), 6),
        ("tcp:h:65536", Some("port"), 6),
        ("h:0", Some("port"), 2),
        ("tcp:h:80:extra", None, 9),
        ("tcp:host=a:host=b:port=1", Some("host"), 11),
        ("tcp:a:host=b:port=1", Some("port"), 13),
        ("tcp:a:b:host=c", Some("host"), 8),
        ("tcp:h:1:timeout=x", Some("timeout"), 16),
        ("tcp:h:1:timeout=-1", Some("timeout"), 16),
        ("tcp:h:1:timeout=1.", Some("timeout"), 16),
        ("tcp:h:1:timeout=1.0000000001", Some("timeout"), 16),
        ("tcp:h:1:bindAddress=localhost", Some("bindAddress"), 20),
        ("tcp:h:1:bindAddress=::1", Some("bindAddress"), 20),
        ("tcp:h:1:bogus=1", Some("bogus"), 8),
        ("tcp:host=a b:port=1", Some("host"), 10),
        ("tcp:host=:port=1", Some("host"), 9),
        ("[::1]", Some("port"), 5),
        ("unix:", Some("path"), 5),
        ("unix:/a:/b", None, 8),
        ("unix:/a:lockfile=1", Some("lockfile"), 17),
        ("unix:path=/a:path=/b", Some("path"), 13),
        (long.as_str(), Some("path"), 10),
        ("tls:host=a", Some("port"), 10),
        ("tls:host=a:port=1:caCertsDir=x:trustRoots=y", Some("trustRoots"), 31),
        ("tls:host=a:port=1:certificate=c.pem", Some("certificate"), 30),
        ("tls:host=a:port=1:endpoint=tcp", Some("endpoint"), 27),
        ("ssl:host=a:port=1", None, 0),
        ("ssl:443", None, 0),
        ("tcp6:443", None, 0),
        ("systemd:domain=INET:index=0", None, 0),
    ];
    let mut wrong = Vec::new();
    for (text, field, position) in cases {
        match text.parse::<ClientEndpoint>() {
            Ok(e) => wrong.push(format!("{text:?} parsed as {e:?}")),
            Err(err) if (err.field(), err.position()) != (field, position) => wrong.push(format!(
                "{text:?}: {:?} (expected {field:?} at {position}): {err}",
                (err.field(), err.position())
            )),
            Err(err) => assert!(!err.to_string().is_empty()),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(matches!("tcp:h:0".parse::<ClientEndpoint>(), Err(EndpointParseError::BadPort { min: 1, .. })));
}

fn ip_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u16; 8]>().prop_map(IpAddr::from)]
}

fn text_strategy() -> impl Strategy<Value = String> {
    // Heavy on the characters that need escaping, with some arbitrary Unicode.
    prop_oneof!["[a-z:=@\\[\\]\\\\/. _-]{1,30}", "\\PC{1,12}"]
}

fn unix_addr_strategy() -> impl Strategy<Value = UnixAddr> {
    prop_oneof![
        text_strategy()
            .prop_filter("no NUL, fits sun_path", |s| !s.contains('\0') && s.len() <= UNIX_PATH_MAX)
            .prop_map(|s| UnixAddr::Path(s.into())),
        text_strategy()
            .prop_filter("fits", |s| s.len() <= UNIX_PATH_MAX)
            .prop_map(|s| UnixAddr::Abstract(s.into_bytes())),
    ]
}

fn path_strategy() -> impl Strategy<Value = PathBuf> {
    text_strategy().prop_filter("no NUL", |s| !s.contains('\0')).prop_map(PathBuf::from)
}

fn host_strategy() -> impl Strategy<Value = String> {
    text_strategy().prop_filter("no white space or control characters", |s| {
        !s.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

fn duration_strategy() -> impl Strategy<Value = Option<Duration>> {
    proptest::option::of(
        (any::<u32>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(u64::from(s), n)),
    )
}

fn server_strategy() -> impl Strategy<Value = ServerEndpoint> {
    prop_oneof![
        (
            any::<u16>(),
            proptest::option::of(ip_strategy()),
            proptest::option::of(any::<u32>()),
            any::<bool>()
        )
            .prop_map(|(port, interface, backlog, ipv6)| {
                let interface = interface.filter(|i| !ipv6 || i.is_ipv6());
                ServerEndpoint::Tcp { port, interface, backlog, ipv6 }
            }),
        (
            unix_addr_strategy(),
            proptest::option::of(0u32..=0o7777),
            any::<bool>(),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(addr, mode, lockfile, backlog)| ServerEndpoint::Unix {
                addr,
                mode,
                lockfile,
                backlog
            }),
        (
            any::<u16>(),
            proptest::option::of(ip_strategy()),
            proptest::option::of(any::<u32>()),
            path_strategy(),
            proptest::option::of(path_strategy()),
            proptest::option::of(path_strategy()),
        )
            .prop_map(|(port, interface, backlog, private_key, cert_key, extra_cert_chain)| {
                ServerEndpoint::Ssl {
                    port,
                    interface,
                    backlog,
                    cert_key: cert_key.unwrap_or_else(|| private_key.clone()),
                    private_key,
                    extra_cert_chain,
                }
            }),
        (0usize..3, any::<u32>()).prop_map(|(d, index)| ServerEndpoint::Systemd {
            domain: [SystemdDomain::Inet, SystemdDomain::Inet6, SystemdDomain::Unix][d],
            index: index as usize,
        }),
    ]
}

fn client_strategy() -> impl Strategy<Value = ClientEndpoint> {
    prop_oneof![
        (host_strategy(), 1u16.., duration_strategy(), proptest::option::of(ip_strategy())).prop_map(
            |(host, port, timeout, bind_address)| ClientEndpoint::Tcp { host, port, timeout, bind_address }
        ),
        (unix_addr_strategy(), duration_strategy())
            .prop_map(|(addr, timeout)| ClientEndpoint::Unix { addr, timeout }),
        (
            host_strategy(),
            1u16..,
            proptest::option::of(path_strategy()),
            duration_strategy(),
            proptest::option::of(ip_strategy())
        )
            .prop_map(|(host, port, ca_certs_dir, timeout, bind_address)| ClientEndpoint::Tls {
                host,
                port,
                ca_certs_dir,
                timeout,
                bind_address
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_server_endpoint_displays_to_a_string_that_parses_back(endpoint in server_strategy()) {
        let text = endpoint.to_string();
        prop_assert_eq!(text.parse::<ServerEndpoint>(), Ok(endpoint), "{}", text);
    }

    #[test]
    fn any_client_endpoint_displays_to_a_string_that_parses_back(endpoint in client_strategy()) {
        let text = endpoint.to_string();
        prop_assert_eq!(text.parse::<ClientEndpoint>(), Ok(endpoint), "{}", text);
    }

    #[test]
    fn arbitrary_strings_are_values_or_errors_never_panics(text in "[a-z0-9:=@\\[\\]\\\\/. ]{0,40}|\\PC{0,20}") {
        if let Ok(e) = text.parse::<ServerEndpoint>() {
            prop_assert_eq!(e.to_string().parse::<ServerEndpoint>(), Ok(e));
        }
        if let Ok(e) = text.parse::<ClientEndpoint>() {
            prop_assert_eq!(e.to_string().parse::<ClientEndpoint>(), Ok(e));
        }
    }
}
