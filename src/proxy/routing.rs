//! Choosing the upstream for a request: host first, then the longest path prefix.
//!
//! Like nginx's `server_name` then `location`: routes that name the request's host are tried
//! before routes that name no host, and within each group the longest matching prefix wins.

use crate::config::Route;

/// An index into the config's routes.
pub type RouteId = usize;

/// The routes, ordered for first-match lookup.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// (route id, host, prefix), host-specific routes first, then by prefix length, longest
    /// first: the first match is the right one.
    ordered: Vec<(RouteId, Option<String>, String)>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> RouteTable {
        let mut ordered: Vec<_> = routes
            .iter()
            .enumerate()
            .map(|(id, r)| (id, r.host.clone(), r.path_prefix.clone()))
            .collect();
        ordered.sort_by(|a, b| {
            b.1.is_some()
                .cmp(&a.1.is_some())
                .then(b.2.len().cmp(&a.2.len()))
        });
        RouteTable { ordered }
    }

    /// The route for a request to `host` (as sent: any port and case are ignored) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<RouteId> {
        let host = host.map(strip_port);
        self.ordered
            .iter()
            .find(|(_, route_host, prefix)| {
                let host_matches = match (route_host, host) {
                    (None, _) => true,
                    (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                    (Some(_), None) => false,
                };
                host_matches && path.starts_with(prefix.as_str())
            })
            .map(|(id, _, _)| *id)
    }
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: &str) -> Route {
        Route {
            host: host.map(str::to_owned),
            path_prefix: prefix.to_owned(),
            upstream: 0,
            max_body_size: 0,
            timeouts: Default::default(),
        }
    }

    /// The longest prefix wins, and host-specific routes beat host-less ones.
    #[test]
    fn host_then_longest_prefix() {
        let table = RouteTable::new(&[
            route(None, "/"),
            route(None, "/api"),
            route(Some("admin.example"), "/"),
        ]);
        assert_eq!(table.find(Some("www.example"), "/"), Some(0));
        assert_eq!(table.find(Some("www.example"), "/api/users"), Some(1));
        assert_eq!(table.find(Some("ADMIN.example:8080"), "/api"), Some(2));
        assert_eq!(table.find(None, "/api"), Some(1));
    }

    /// Without a catch-all route, an unmatched request has no route.
    #[test]
    fn no_match() {
        let table = RouteTable::new(&[route(Some("a.example"), "/app")]);
        assert_eq!(table.find(Some("a.example"), "/other"), None);
        assert_eq!(table.find(Some("b.example"), "/app"), None);
        assert_eq!(table.find(Some("[::1]:80"), "/app"), None);
    }
}
