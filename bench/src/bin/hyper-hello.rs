//! `hyper-hello`: the HTTP baseline of `bench/http.sh`. hyper's HTTP/1 server on a tokio
//! `current_thread` runtime (one thread, like a torsion reactor), answering every request with
//! `Hello, World!` as text/plain, keep-alive on, pipelined responses flushed together
//! (`pipeline_flush`, hyper's best setting for pipelining).
//!
//! Prints `listening on <addr>` first, like the torsion servers.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// hyper HTTP/1 hello-world server (bench baseline).
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"Hello, World!")));
    response
        .headers_mut()
        .insert("content-type", hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        loop {
            // An accept error (ECONNABORTED, EMFILE) must not end the server mid-benchmark.
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::task::yield_now().await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .pipeline_flush(true)
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    })
}
