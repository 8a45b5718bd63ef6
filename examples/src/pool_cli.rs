//! `--threads N` for the servers: one reactor on the main thread (N = 1, the default and
//! today's behaviour), or a [`ReactorPool`] of N reactor threads (0 = one per core), each with
//! its own SO_REUSEPORT listener for TCP (the kernel spreads the connections) or fed by a
//! hand-off acceptor for a Unix socket. Protocols stay single-threaded either way: each lives
//! on the reactor that accepted it, so the same factory code serves both.

use torsion_reactor::pool::{PoolReactor, ReactorPool};
use torsion_reactor::{Address, Factory};
use tracing::info;

use crate::{
    announce_listening, listen_error, run_failure, startup_failure, Failure, EXIT_FAILURE, EXIT_USAGE,
};

/// Serves `addr` on a pool of `threads` reactors (0: one per core) until SIGINT or SIGTERM
/// has stopped every one of them gracefully. `make_factory` runs on each reactor's thread and
/// builds that reactor's factory. Prints `listening on <addr>` first, as the single-reactor
/// servers do; `what` names the server in the log.
pub fn serve_on_pool<F: Factory>(
    addr: &Address,
    threads: usize,
    what: &str,
    make_factory: impl Fn(&PoolReactor) -> F + Send + Sync + 'static,
) -> Result<(), Failure> {
    let mut pool = ReactorPool::builder().threads(threads).start().map_err(startup_failure)?;
    let port = pool.listen(addr, make_factory).map_err(|e| (EXIT_USAGE, listen_error(addr, &e)))?;
    pool.install_signal_handlers().map_err(startup_failure)?;
    let local = port.local_addr().clone();
    announce_listening(&local).map_err(|e| (EXIT_FAILURE, format!("cannot write to stdout: {e}")))?;
    let balance = port.balance();
    info!(%local, threads = pool.threads(), ?balance, "{what} listening; Ctrl-C (SIGINT) or SIGTERM stops it");
    let handle = pool.handle();
    pool.join().map_err(run_failure)?;
    for stats in handle.all_stats() {
        info!(
            reactor = stats.reactor,
            accepted = stats.accepted,
            bytes = stats.bytes_received,
            "reactor totals"
        );
    }
    info!("stopped");
    Ok(())
}
