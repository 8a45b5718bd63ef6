//! [`BodyDecoder`]: request bodies framed by `Content-Length` or `chunked`, as a pure push
//! decoder (no I/O): feed it bytes, it hands back body data as slices of the input.

/// Default limit on a chunk-size line (size and extensions) and on the trailer section.
pub const DEFAULT_MAX_CHUNK_LINE: usize = 4096;

/// What a body decoder found in the input it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Body bytes (a slice of the input).
    Data(&'a [u8]),
    /// The body is complete; bytes after it belong to the next request.
    Done,
    /// All of the input was consumed and more is needed.
    NeedMore,
}

/// A malformed chunked body. The server answers 400 and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The chunk size is not hexadecimal, is empty, or overflows 64 bits.
    #[error("bad chunk size")]
    ChunkSize,
    /// The chunk extension does not follow `;name[=value]` syntax.
    #[error("bad chunk extension")]
    ChunkExtension,
    /// Chunk data not followed by CRLF, or a bare CR/LF in a chunk line or trailer.
    #[error("bad chunk framing")]
    Framing,
    /// A chunk-size line or the trailer section is longer than its limit (4 KiB by default).
    #[error("chunk line or trailers too long")]
    TooLong,
    /// A trailer field is malformed.
    #[error("bad trailer field")]
    Trailer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// `remaining` body bytes of a `Content-Length` body.
    Length {
        remaining: u64,
    },
    /// Reading a chunk-size line into `line`.
    Size,
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting the CRLF after chunk data (`got` of its 2 bytes seen).
    DataEnd {
        got: u8,
    },
    /// After the last chunk: trailer lines into `line`, until an empty line.
    Trailers,
    Done,
}

/// Decodes one request body. Built per request from the head's framing.
///
/// ```
/// use torsion_protocols::http::{BodyDecoder, Decoded};
///
/// let mut d = BodyDecoder::chunked();
/// let input = b"5\r\nhello\r\n0\r\n\r\nNEXT";
/// let (used, got) = d.decode(input).unwrap();
/// assert_eq!(got, Decoded::Data(b"hello"));
/// let (used2, got) = d.decode(&input[used..]).unwrap();
/// assert_eq!(got, Decoded::Done);
/// assert_eq!(&input[used + used2..], b"NEXT");
/// ```
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    line: Vec<u8>,
    trailer_bytes: usize,
    max_line: usize,
}

impl BodyDecoder {
    /// A body of exactly `length` bytes.
    pub fn length(length: u64) -> BodyDecoder {
        let state = if length == 0 { State::Done } else { State::Length { remaining: length } };
        BodyDecoder { state, line: Vec::new(), trailer_bytes: 0, max_line: DEFAULT_MAX_CHUNK_LINE }
    }

    /// A `chunked` body.
    pub fn chunked() -> BodyDecoder {
        BodyDecoder {
            state: State::Size,
            line: Vec::new(),
            trailer_bytes: 0,
            max_line: DEFAULT_MAX_CHUNK_LINE,
        }
    }

    /// Sets the limit on a chunk-size line and on the trailer section (default
    /// [`DEFAULT_MAX_CHUNK_LINE`], at least 16 bytes).
    pub fn with_max_line(mut self, bytes: usize) -> BodyDecoder {
        self.max_line = bytes.max(16);
        self
    }

    /// True once the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`: returns how many bytes were consumed and what they were. Call
    /// again with the rest until it says [`Decoded::NeedMore`] (all consumed) or
    /// [`Decoded::Done`] (the rest is not body).
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Decoded<'a>), BodyError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Done => return Ok((used, Decoded::Done)),
                State::Length { remaining } => {
                    if rest.is_empty() {
                        return Ok((used, Decoded::NeedMore));
                    }
                    let n = rest.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    let left = remaining - n as u64;
                    self.state = if left == 0 { State::Done } else { State::Length { remaining: left } };
                    return Ok((used + n, Decoded::Data(&rest[..n])));
                }
                State::Data { remaining } => {
                    if rest.is_empty() {
                        return Ok((used, Decoded::NeedMore));
                    }
                    let n = rest.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    let left = remaining - n as u64;
                    self.state =
                        if left == 0 { State::DataEnd { got: 0 } } else { State::Data { remaining: left } };
                    return Ok((used + n, Decoded::Data(&rest[..n])));
                }
                State::DataEnd { got } => {
                    let Some(&b) = rest.first() else { return Ok((used, Decoded::NeedMore)) };
                    let want = if got == 0 { b'\r' } else { b'\n' };
                    if b != want {
                        return Err(BodyError::Framing);
                    }
                    used += 1;
                    self.state = if got == 0 { State::DataEnd { got: 1 } } else { State::Size };
                }
                State::Size | State::Trailers => {
                    let Some(line_len) = self.take_line(rest)? else {
                        return Ok((input.len(), Decoded::NeedMore));
                    };
                    used += line_len;
                    let line = std::mem::take(&mut self.line);
                    if self.state == State::Size {
                        let size = parse_chunk_line(&line)?;
                        self.state =
                            if size == 0 { State::Trailers } else { State::Data { remaining: size } };
                    } else if line.is_empty() {
                        self.state = State::Done;
                    } else {
                        self.trailer_bytes += line.len() + 2;
                        if self.trailer_bytes > self.max_line {
                            return Err(BodyError::TooLong);
                        }
                        check_trailer(&line)?;
                    }
                    self.line = line;
                    self.line.clear();
                }
            }
        }
    }

    /// Appends `rest` to the line buffer up to a CRLF. Returns the bytes consumed from `rest`
    /// when the line is complete (the line, without CRLF, is in `self.line`), `None` when all
    /// of `rest` was taken and the line goes on.
    fn take_line(&mut self, rest: &[u8]) -> Result<Option<usize>, BodyError> {
        // A CR left at the end of the previous piece must be followed by LF.
        if self.line.last() == Some(&b'\r') {
            let Some(&b) = rest.first() else { return Ok(None) };
            if b != b'\n' {
                return Err(BodyError::Framing);
            }
            self.line.pop();
            return Ok(Some(1));
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(at) if rest[at] == b'\n' => Err(BodyError::Framing),
            Some(at) => {
                if self.line.len() + at > self.max_line {
                    return Err(BodyError::TooLong);
                }
                self.line.extend_from_slice(&rest[..at]);
                match rest.get(at + 1) {
                    Some(b'\n') => Ok(Some(at + 2)),
                    Some(_) => Err(BodyError::Framing),
                    None => {
                        self.line.push(b'\r');
                        Ok(None)
                    }
                }
            }
            None => {
                if self.line.len() + rest.len() > self.max_line {
                    return Err(BodyError::TooLong);
                }
                self.line.extend_from_slice(rest);
                Ok(None)
            }
        }
    }
}

/// `chunk-size [ chunk-ext ]`: 1*HEXDIG, then `*( BWS ";" BWS name [ BWS "=" BWS value ] )`
/// with a token name and a token or quoted-string value.
fn parse_chunk_line(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BodyError::ChunkSize);
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| n << 4 | u64::from(hex_value(d)));
    let mut rest = &line[digits..];
    if rest.first().is_some_and(|&b| !matches!(b, b' ' | b'\t' | b';')) {
        return Err(BodyError::ChunkSize);
    }
    loop {
        rest = skip_ws(rest);
        match rest.first() {
            None => return Ok(size),
            Some(b';') => rest = skip_ws(&rest[1..]),
            Some(_) => return Err(BodyError::ChunkExtension),
        }
        let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return Err(BodyError::ChunkExtension);
        }
        rest = skip_ws(&rest[name..]);
        if rest.first() == Some(&b'=') {
            rest = skip_ws(&rest[1..]);
            if rest.first() == Some(&b'"') {
                let mut i = 1;
                loop {
                    match rest.get(i) {
                        None => return Err(BodyError::ChunkExtension),
                        Some(b'"') => break,
                        Some(b'\\')
                            if rest
                                .get(i + 1)
                                .is_some_and(|&b| b == b'\t' || (b' '..0x7f).contains(&b) || b >= 0x80) =>
                        {
                            i += 2
                        }
                        Some(&b)
                            if b == b'\t'
                                || b == b' '
                                || b == b'!'
                                || (0x23..=0x5b).contains(&b)
                                || (0x5d..=0x7e).contains(&b)
                                || b >= 0x80 =>
                        {
                            i += 1
                        }
                        Some(_) => return Err(BodyError::ChunkExtension),
                    }
                }
                rest = &rest[i + 1..];
            } else {
                let value = rest.iter().take_while(|&&b| is_tchar(b)).count();
                if value == 0 {
                    return Err(BodyError::ChunkExtension);
                }
                rest = &rest[value..];
            }
        }
    }
}

fn check_trailer(line: &[u8]) -> Result<(), BodyError> {
    let colon = line.iter().position(|&b| b == b':').ok_or(BodyError::Trailer)?;
    if colon == 0 || !line[..colon].iter().all(|&b| is_tchar(b)) {
        return Err(BodyError::Trailer);
    }
    if line[colon + 1..].iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(BodyError::Trailer);
    }
    Ok(())
}

fn skip_ws(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    }
}

/// RFC 9110 tchar.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
