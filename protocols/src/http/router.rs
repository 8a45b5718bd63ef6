//! [`Router`]: picks a handler per request by method and path prefix. Routing is not the
//! server's job; this is the small one the examples need.

use std::borrow::Cow;
use std::fmt;

use http::{Method, StatusCode};
use torsion_reactor::{DisconnectReason, TimerId};

use super::handler::{Handler, HttpCtx, Request, RequestId};
use super::response::text;

struct Route {
    method: Option<Method>,
    prefix: Cow<'static, str>,
    handler: Box<dyn Handler>,
}

/// Routes each request to the first route whose method matches (or any, with `None`) and
/// whose prefix the path starts with; 404 when none does. Its body and `end` calls go to the
/// same route. Timers, `writable`, `upgraded` and `connection_lost` go to every route.
///
/// ```
/// use http::{Method, StatusCode};
/// use torsion_protocols::http::{text, Handler, HttpCtx, Request, Router};
///
/// struct Hello;
/// impl Handler for Hello {
///     fn request(&mut self, hx: &mut HttpCtx<'_, '_>, _request: Request) {
///         let _ = hx.respond(text(StatusCode::OK, "Hello, World!"));
///     }
/// }
///
/// let _router = Router::new().route(Some(Method::GET), "/hello", Hello);
/// ```
pub struct Router {
    routes: Vec<Route>,
    /// Which route each request being read went to (index into `routes`).
    current: Option<(RequestId, usize)>,
}

impl Default for Router {
    fn default() -> Router {
        Router::new()
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<_> = self.routes.iter().map(|r| (r.method.clone(), r.prefix.clone())).collect();
        f.debug_struct("Router").field("routes", &routes).finish()
    }
}

impl Router {
    /// A router with no routes (everything is 404).
    pub fn new() -> Router {
        Router { routes: Vec::with_capacity(8), current: None }
    }

    /// Adds a route: requests with `method` (any, for `None`) whose path starts with `prefix`
    /// (a `&'static str` costs no allocation: routers are built per connection).
    pub fn route(
        mut self,
        method: Option<Method>,
        prefix: impl Into<Cow<'static, str>>,
        handler: impl Handler,
    ) -> Router {
        self.routes.push(Route { method, prefix: prefix.into(), handler: Box::new(handler) });
        self
    }

    fn current_route(&mut self, hx: &HttpCtx<'_, '_>) -> Option<&mut Box<dyn Handler>> {
        let (id, i) = self.current?;
        if hx.request_id() != Some(id) {
            return None;
        }
        Some(&mut self.routes[i].handler)
    }
}

impl Handler for Router {
    fn request(&mut self, hx: &mut HttpCtx<'_, '_>, request: Request) {
        let path = request.uri().path();
        let found = self.routes.iter().position(|r| {
            r.method.as_ref().is_none_or(|m| m == request.method()) && path.starts_with(r.prefix.as_ref())
        });
        match (found, hx.request_id()) {
            (Some(i), Some(id)) => {
                self.current = Some((id, i));
                self.routes[i].handler.request(hx, request);
            }
            _ => {
                self.current = None;
                let _ = hx.respond(text(StatusCode::NOT_FOUND, "not found\n"));
            }
        }
    }

    fn body(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
        if let Some(h) = self.current_route(hx) {
            h.body(hx, data);
        }
    }

    fn end(&mut self, hx: &mut HttpCtx<'_, '_>) {
        if let Some(h) = self.current_route(hx) {
            h.end(hx);
        }
    }

    fn timer_fired(&mut self, hx: &mut HttpCtx<'_, '_>, timer: TimerId) {
        for r in &mut self.routes {
            r.handler.timer_fired(hx, timer);
        }
    }

    fn writable(&mut self, hx: &mut HttpCtx<'_, '_>) {
        for r in &mut self.routes {
            r.handler.writable(hx);
        }
    }

    fn upgraded(&mut self, hx: &mut HttpCtx<'_, '_>, data: &[u8]) {
        if let Some((_, i)) = self.current {
            self.routes[i].handler.upgraded(hx, data);
        }
    }

    fn connection_lost(&mut self, hx: &mut HttpCtx<'_, '_>, reason: DisconnectReason) {
        for r in &mut self.routes {
            r.handler.connection_lost(hx, reason.clone());
        }
    }
}
