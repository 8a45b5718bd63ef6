//! What the UDP examples share (included by `udp-echo` and `udp-time` with `#[path]`): parsing
//! `--listen`, binding with the one-line error, announcing the port, running until a signal.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use torsion_examples::{
    announce_listening, listen_error, run_failure, startup_failure, Failure, EXIT_FAILURE, EXIT_USAGE,
};
use torsion_reactor::{Address, DatagramProtocol, Reactor};
use tracing::info;

/// The forms `--listen` takes, for help texts and errors.
pub const UDP_ENDPOINT_FORMS: &str = "HOST:PORT, [V6]:PORT or udp:PORT[:interface=ADDR]";

/// Parses a UDP endpoint: `127.0.0.1:9000`, `[::1]:9000`, `localhost:9000`, or Twisted's
/// `udp:9000` (all IPv4 interfaces) and `udp:9000:interface=127.0.0.1`.
pub fn parse_udp_endpoint(text: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| format!("bad address '{text}' (expected {UDP_ENDPOINT_FORMS}): {why}");
    if let Some(rest) = text.strip_prefix("udp:") {
        let (port, interface) = match rest.split_once(':') {
            Some((port, options)) => {
                let interface = options.strip_prefix("interface=").ok_or_else(|| bad("unknown option"))?;
                (port, interface.parse::<IpAddr>().map_err(|_| bad("bad interface address"))?)
            }
            None => (rest, IpAddr::from([0, 0, 0, 0])),
        };
        let port = port.parse::<u16>().map_err(|_| bad("bad port"))?;
        return Ok(SocketAddr::new(interface, port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("'{text}' resolves to no address")),
        Err(e) => Err(bad(&torsion_examples::io_error_text(&e))),
    }
}

/// Listens on `listen` with `protocol`, prints `listening on <addr>`, and runs until SIGINT or
/// SIGTERM (exit 0). A bad or busy address is one line and exit code 2.
pub fn serve_udp(listen: &str, what: &str, protocol: impl DatagramProtocol) -> Result<(), Failure> {
    let addr = parse_udp_endpoint(listen).map_err(|message| (EXIT_USAGE, message))?;
    let mut reactor = Reactor::new().map_err(startup_failure)?;
    let port = reactor
        .listen_udp(addr, protocol)
        .map_err(|e| (EXIT_USAGE, listen_error(&Address::Inet(addr), &e)))?;
    reactor.install_signal_handlers().map_err(startup_failure)?;
    let local = Address::Inet(port.local_addr());
    announce_listening(&local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    info!(%local, "{what} listening (udp); Ctrl-C (SIGINT) or SIGTERM stops it");
    reactor.run().map_err(run_failure)?;
    info!(dropped = port.dropped_datagrams(), "stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_udp_endpoint;

    #[test]
    fn endpoints() {
        assert_eq!(parse_udp_endpoint("127.0.0.1:9").unwrap(), "127.0.0.1:9".parse().unwrap());
        assert_eq!(parse_udp_endpoint("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert_eq!(parse_udp_endpoint("udp:9").unwrap(), "0.0.0.0:9".parse().unwrap());
        assert_eq!(parse_udp_endpoint("udp:9:interface=::1").unwrap(), "[::1]:9".parse().unwrap());
        assert!(parse_udp_endpoint("udp:x").is_err());
        assert!(parse_udp_endpoint("udp:9:backlog=3").is_err());
        assert!(parse_udp_endpoint("nonsense").is_err());
    }
}
