//! [`HttpConfig`]: every limit and timeout of the HTTP server, each with a default and a setter.

use std::time::Duration;

/// Default limit on the request line plus headers: 8 KiB (answered with 431 when exceeded).
pub const DEFAULT_MAX_HEAD: usize = 8 * 1024;
/// Default limit on the number of header fields: 100 (431 when exceeded).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default limit on a request body the server reads for the handler: 1 MiB (413).
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
/// Default number of requests read ahead of their responses on one connection: 16.
pub const DEFAULT_MAX_PIPELINE: usize = 16;
/// Default time a client has to send a complete request head once it has started: 10 s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an idle keep-alive connection is kept: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The server's limits and timeouts. Build with [`HttpConfig::default`] and the setters:
///
/// ```
/// use std::time::Duration;
/// use torsion_protocols::http::HttpConfig;
///
/// let config = HttpConfig::default()
///     .max_head_size(16 * 1024)
///     .max_body_size(Some(10 << 20))
///     .idle_timeout(Duration::from_secs(5));
/// assert_eq!(config.head_limit(), 16 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub(crate) max_head: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_body_size: Option<u64>,
    pub(crate) max_pipeline: usize,
    pub(crate) max_chunk_line: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) response_timeout: Option<Duration>,
    /// `server: <value>\r\n`, ready to copy.
    pub(crate) server: Option<Vec<u8>>,
    pub(crate) access_log: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_head: DEFAULT_MAX_HEAD,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_size: Some(DEFAULT_MAX_BODY),
            max_pipeline: DEFAULT_MAX_PIPELINE,
            max_chunk_line: super::body::DEFAULT_MAX_CHUNK_LINE,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            response_timeout: None,
            server: Some(b"server: torsion\r\n".to_vec()),
            access_log: false,
        }
    }
}

impl HttpConfig {
    /// Limit on the request line plus header fields, in bytes, counting the final empty line
    /// (default [`DEFAULT_MAX_HEAD`]). A head of exactly this size is accepted; one byte more
    /// is answered with 431 and the connection closes.
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.max_head = bytes.max(16);
        self
    }

    /// Limit on the number of header fields (default [`DEFAULT_MAX_HEADERS`]); one more is 431.
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count.max(1);
        self
    }

    /// Limit on a request body's size (default 1 MiB; `None`: unlimited, for handlers that
    /// stream bodies of any size). A `Content-Length` over it is answered with 413 before the
    /// body is read (and before `100 Continue`); a chunked body is cut off with 413 when it
    /// crosses it.
    pub fn max_body_size(mut self, bytes: Option<u64>) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// How many requests are read ahead of their responses on one connection (default
    /// [`DEFAULT_MAX_PIPELINE`], at least 1). When that many are unanswered the server stops
    /// reading the socket until one is answered.
    pub fn max_pipeline(mut self, depth: usize) -> Self {
        self.max_pipeline = depth.max(1);
        self
    }

    /// Limit on a chunk-size line (size plus extensions) and on a chunked body's trailer
    /// section, in bytes (default 4 KiB); over it the request gets 400 and the connection closes.
    pub fn max_chunk_line(mut self, bytes: usize) -> Self {
        self.max_chunk_line = bytes.max(16);
        self
    }

    /// Time a client has to finish a request head once its first byte arrived (default 10 s;
    /// the slowloris defence). The connection is answered 408 and closed when it runs out.
    /// Idle keep-alive connections are not charged: their clock starts with the first byte.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Time an idle keep-alive connection (no request in progress) is kept open (default 60 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Time a handler has to complete a response once the request head arrived (default
    /// `None`: no deadline). When it runs out, a response not yet started is answered 503 and
    /// the connection closes; one already started is aborted (its framing cannot be finished).
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The `Server` header sent with each response (default `torsion`; `None`: no header).
    pub fn server_header(mut self, value: Option<http::HeaderValue>) -> Self {
        self.server = value.map(|v| [b"server: ", v.as_bytes(), b"\r\n"].concat());
        self
    }

    /// Logs one line per completed response at `info` (method, target, status, bytes) under
    /// the target `torsion::http::access` (default off).
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// The head size limit in force.
    pub fn head_limit(&self) -> usize {
        self.max_head
    }
}
