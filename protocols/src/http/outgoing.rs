//! The response side of a connection: answers placed in their request's slot, written
//! straight out when that slot is at the front of the pipeline, kept until then otherwise, and
//! retired in request order.

use bytes::Bytes;
use http::{StatusCode, Version};
use torsion_reactor::Ctx;

use super::conn::{BodyProducerParts, ReadState, Resp, St, CONTINUE};
use super::handler::{HttpError, RequestId};
use super::producer::body_sender;
use super::response::{self, Body, Framing, Response};

/// Output kept for a response waiting behind earlier ones, above which `write_body` reports
/// the buffer full (the transport's default high watermark).
const HELD_OUTPUT_HIGH: usize = 64 * 1024;

/// A response's header map with room for at most this many entries is kept for the next
/// request's headers; a bigger one is dropped rather than kept for the connection's life.
const SPARE_HEADERS_MAX: usize = 64;

impl St {
    /// Writes `data` for slot `i`: straight to the transport when it is the front slot and no
    /// body producer is running, else kept until the slots before it are done.
    /// [`emit`](Self::emit) for a borrowed slice: copied into the write buffer (where small
    /// writes coalesce) when it can go out now, into an owned chunk when it has to wait.
    pub(super) fn emit_slice(&mut self, cx: &mut Ctx<'_>, i: usize, data: &[u8]) -> bool {
        if i == 0 && !self.shared.borrow().producing {
            self.slots[i].bytes += data.len() as u64;
            cx.transport().write(data)
        } else {
            self.emit(cx, i, Bytes::copy_from_slice(data))
        }
    }

    pub(super) fn emit(&mut self, cx: &mut Ctx<'_>, i: usize, data: Bytes) -> bool {
        self.slots[i].bytes += data.len() as u64;
        if i == 0 && !self.shared.borrow().producing {
            cx.transport().write_bytes(data)
        } else {
            self.slots[i].out.push(data);
            // Output held behind earlier responses counts against the same high mark: a
            // streaming handler told to stop here hears `writable` when its turn comes.
            let held: usize = self.slots[i].out.iter().map(Bytes::len).sum();
            let full = held > HELD_OUTPUT_HIGH || cx.transport().is_write_buffer_above_high();
            self.writable_owed |= full;
            full
        }
    }

    pub(crate) fn respond(
        &mut self,
        cx: &mut Ctx<'_>,
        id: RequestId,
        response: Response,
    ) -> Result<(), HttpError> {
        let i = self.slot_index(id.0).ok_or(HttpError::UnknownRequest(id))?;
        if self.slots[i].state != Resp::Pending {
            return Err(HttpError::UnknownRequest(id));
        }
        let (parts, body) = response.into_parts();
        let length = match &body {
            Body::Empty => Some(0),
            Body::Full(b) => Some(b.len() as u64),
            Body::Reader { length, .. } | Body::Stream { length } => *length,
        };
        let slot = &mut self.slots[i];
        let upgrade = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        let (framing, advertised) = response::framing(parts.status, slot.version, slot.head_request, length);
        // One pass, no hash lookups: most responses have one or two headers.
        let wants_close = !parts.headers.is_empty()
            && parts.headers.iter().any(|(name, v)| {
                name == http::header::CONNECTION
                    && v.as_bytes()
                        .split(|&b| b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
            });
        let close = !upgrade
            && (slot.close_after
                || wants_close
                || framing == Framing::Close
                || self.shared.borrow().stopping);
        slot.close_after = close;
        if close {
            // No request after this one will be answered: stop reading them.
            self.last_request = true;
        }
        slot.upgrade = upgrade;
        if upgrade {
            // Nothing after this request is HTTP: stop parsing until the 101 is out.
            self.last_request = true;
        }
        slot.status = parts.status.as_u16();
        let keep_alive_10 = !close && !upgrade && slot.version == Version::HTTP_10;
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        if std::mem::take(&mut slot.expect_continue) {
            if matches!(body, Body::Stream { .. } | Body::Reader { .. }) {
                // A streamed answer goes on while the body comes: let the client send it.
                out.extend_from_slice(CONTINUE);
            } else {
                slot.refused_body = true;
            }
        }
        response::write_head(
            &mut out,
            parts.status,
            &parts.headers,
            framing,
            advertised,
            close,
            keep_alive_10,
            self.config.server.as_deref(),
        );
        if parts.headers.capacity() <= SPARE_HEADERS_MAX {
            // Recycled for the next request's headers (hyper does the same).
            let mut headers = parts.headers;
            headers.clear();
            self.spare_headers = Some(headers);
        }
        let discard = framing == Framing::None;
        slot.state = Resp::Done;
        match body {
            Body::Empty => {}
            Body::Full(b) if discard => drop(b),
            Body::Full(b) if b.len() < 16 * 1024 => out.extend_from_slice(&b),
            Body::Full(b) => {
                self.emit_slice(cx, i, &out);
                self.scratch = out;
                self.emit(cx, i, b);
                return Ok(());
            }
            Body::Reader { reader, .. } => {
                if !discard {
                    let remaining = if let Framing::Length(n) = framing { Some(n) } else { None };
                    // For the access log: the producer writes the body itself.
                    slot.bytes += remaining.unwrap_or(0);
                    slot.reader = Some(Box::new(BodyProducerParts {
                        reader,
                        chunked: framing == Framing::Chunked,
                        remaining,
                    }));
                }
            }
            Body::Stream { .. } => {
                let remaining = if let Framing::Length(n) = framing { Some(n) } else { None };
                slot.state = Resp::Streaming { chunked: framing == Framing::Chunked, remaining, discard };
            }
        }
        self.emit_slice(cx, i, &out);
        self.scratch = out;
        Ok(())
    }

    pub(crate) fn write_body(
        &mut self,
        cx: &mut Ctx<'_>,
        id: RequestId,
        data: &[u8],
    ) -> Result<bool, HttpError> {
        let i = self.slot_index(id.0).ok_or(HttpError::NotStreaming(id))?;
        let Resp::Streaming { chunked, remaining, discard } = &mut self.slots[i].state else {
            return Err(HttpError::NotStreaming(id));
        };
        if *discard || data.is_empty() {
            return Ok(cx.transport().is_write_buffer_above_high());
        }
        let mut data = data;
        if let Some(r) = remaining {
            let n = data.len().min(usize::try_from(*r).unwrap_or(usize::MAX));
            if n < data.len() {
                tracing::warn!("a streamed response wrote past its Content-Length; the excess is dropped");
            }
            data = &data[..n];
            *r -= n as u64;
        }
        let front = i == 0 && !self.shared.borrow().producing;
        if *chunked && front {
            let (line, len) = response::chunk_size_line(data.len());
            self.slots[i].bytes += (len + data.len() + 2) as u64;
            Ok(cx.transport().write_sequence([&line[..len], data, b"\r\n"]))
        } else if *chunked {
            let (line, len) = response::chunk_size_line(data.len());
            let mut chunk = Vec::with_capacity(len + data.len() + 2);
            chunk.extend_from_slice(&line[..len]);
            chunk.extend_from_slice(data);
            chunk.extend_from_slice(b"\r\n");
            Ok(self.emit(cx, i, Bytes::from(chunk)))
        } else {
            Ok(self.emit_slice(cx, i, data))
        }
    }

    pub(crate) fn end_body(&mut self, cx: &mut Ctx<'_>, id: RequestId) -> Result<(), HttpError> {
        let i = self.slot_index(id.0).ok_or(HttpError::NotStreaming(id))?;
        let Resp::Streaming { chunked, remaining, discard } = self.slots[i].state else {
            return Err(HttpError::NotStreaming(id));
        };
        self.slots[i].state = Resp::Done;
        if discard {
            return Ok(());
        }
        if chunked {
            self.emit(cx, i, Bytes::from_static(b"0\r\n\r\n"));
        } else if remaining.is_some_and(|r| r > 0) {
            tracing::warn!("a streamed response ended before its Content-Length; aborting");
            cx.transport().abort_connection();
        }
        Ok(())
    }

    /// Retires finished responses from the front, in order, writing what the next one had
    /// waiting. Returns whether any was retired.
    pub(super) fn advance(&mut self, cx: &mut Ctx<'_>) -> bool {
        let mut retired = false;
        loop {
            if self.shared.borrow().producing || self.closing {
                return retired;
            }
            let Some(front) = self.slots.front_mut() else { return retired };
            if let Some(parts) = front.reader.take() {
                let mut t = cx.transport();
                let mut shared = self.shared.borrow_mut();
                if shared.held {
                    t.unregister_producer();
                    shared.held = false;
                }
                let producer = body_sender(*parts, self.shared.clone());
                shared.producing = t.register_producer(producer, false).is_ok();
                return retired;
            }
            if front.state != Resp::Done {
                return retired;
            }
            let done = self.slots.pop_front().expect("front exists");
            retired = true;
            if self.config.access_log {
                // A request refused before it had a head is logged as `GET` with an empty path.
                let (method, path) =
                    done.log.as_deref().map_or(("GET", ""), |(m, p)| (m.as_str(), p.as_str()));
                tracing::info!(target: "torsion::http::access", method = %method, path = %path,
                    status = done.status, bytes = done.bytes, "request");
            }
            if done.upgrade {
                self.read = ReadState::Upgraded;
                self.last_request = false;
            }
            if done.close_after {
                self.closing = true;
                self.slots.clear();
                let mut transport = cx.transport();
                if self.input_done && self.inbuf.is_empty() {
                    // The client asked to close and everything it sent is read: close at
                    // once rather than linger for its FIN (the reactor still lingers if more
                    // input turns out to be waiting).
                    transport.expect_no_more_input();
                }
                transport.lose_connection();
                return retired;
            }
            if let Some(next) = self.slots.front_mut() {
                for chunk in std::mem::take(&mut next.out) {
                    cx.transport().write_bytes(chunk);
                }
            } else {
                // Stamped once in `settle`, not per response: a pipelined batch empties the
                // queue after each of its requests, and reading the clock is not free.
                self.idle_stale = true;
            }
        }
    }
}
