//! Who a request comes from: the client's address, believing `X-Forwarded-For` only from the proxies named in
//! `TRUSTED_PROXIES` (docs/security.md). Per-address throttles and limits key on this address.

use std::net::IpAddr;

use poem::Request;

/// Forwarded addresses read from `X-Forwarded-For`, at most: a longer chain is not a real proxy path.
const FORWARDED_HOPS_MAX: usize = 16;

/// The client's address. When the socket peer is a trusted proxy, `X-Forwarded-For` is read from the right,
/// skipping trusted proxies, and the first other address is the client's: entries left of it could have been
/// written by the client itself. A malformed entry ends the walk at the last trusted hop.
pub fn client_address(request: &Request, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = request.remote_addr().as_socket_addr().map(|a| a.ip())?;
    Some(resolve(peer, forwarded_for(request), trusted_proxies))
}

/// The client's address as text, for throttle keys and session records.
pub fn client_ip(request: &Request, trusted_proxies: &[IpAddr]) -> Option<String> {
    client_address(request, trusted_proxies).map(|ip| ip.to_string())
}

/// The client's address as text, with the proxies configured in the app's state.
pub fn request_ip(request: &Request) -> Option<String> {
    let trusted = request
        .data::<crate::AppState>()
        .map(|state| state.config.security.trusted_proxies.as_slice())
        .unwrap_or_default();
    client_ip(request, trusted)
}

fn forwarded_for(request: &Request) -> Vec<String> {
    request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|part| part.trim().to_owned())
        .collect()
}

fn resolve(peer: IpAddr, forwarded: Vec<String>, trusted: &[IpAddr]) -> IpAddr {
    let mut client = peer;
    if !trusted.contains(&peer) {
        return client;
    }
    for entry in forwarded.iter().rev().take(FORWARDED_HOPS_MAX) {
        let Ok(hop) = entry.parse::<IpAddr>() else {
            return client;
        };
        client = hop;
        if !trusted.contains(&hop) {
            return client;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("ip")
    }

    fn chain(raw: &str) -> Vec<String> {
        raw.split(',').map(|p| p.trim().to_owned()).collect()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_and_read_from_the_right() {
        let lb = ip("10.0.0.1");
        let trusted = [lb, ip("10.0.0.2")];
        // Not from a proxy: the header is the client's own invention.
        assert_eq!(
            resolve(ip("203.0.113.9"), chain("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
        // From the load balancer: the address it saw.
        assert_eq!(
            resolve(lb, chain("198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
        // A client that prepends a fake address does not choose its own.
        assert_eq!(
            resolve(lb, chain("1.2.3.4, 198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
        // Through two trusted proxies.
        assert_eq!(
            resolve(lb, chain("198.51.100.7, 10.0.0.2"), &trusted),
            ip("198.51.100.7")
        );
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(resolve(lb, chain("nonsense"), &trusted), lb);
        assert_eq!(resolve(lb, Vec::new(), &trusted), lb);
    }
}
