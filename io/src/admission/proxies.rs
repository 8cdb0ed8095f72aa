//! Which address a request comes from, behind proxies that append to
//! `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for`, an AWS ALB).
//!
//! The header is a list the client starts and every proxy appends to: only
//! the entries written by proxies we trust are worth anything. So the
//! address is read from the right: the TCP peer, then the header's entries
//! from the last one, skipping every hop that is a trusted proxy; the first
//! hop that is not is the client. Whatever the client wrote itself sits to
//! the left of that and is never read — a spoofed header changes nothing.

use std::net::IpAddr;

use ipnet::IpNet;

/// The proxies in front of the daemon (`trusted_proxies`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrustedProxies {
    /// No proxy: the TCP peer is the client; the header is ignored.
    #[default]
    None,
    /// This many proxies in a row, the nearest one the TCP peer.
    Count(usize),
    /// Proxies are the addresses in these networks.
    Nets(Vec<IpNet>),
}

/// `trusted_proxies` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a count of proxies nor a list of networks: {0:?}")]
pub struct BadProxies(pub String);

impl std::str::FromStr for TrustedProxies {
    type Err = BadProxies;

    /// `""` or `"0"`: none; `"2"`: two proxies; `"10.0.0.0/8, 127.0.0.1"`:
    /// networks (a bare address is a /32 or /128).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(TrustedProxies::None);
        }
        if let Ok(n) = s.parse::<usize>() {
            return Ok(if n == 0 {
                TrustedProxies::None
            } else {
                TrustedProxies::Count(n)
            });
        }
        let nets = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadProxies(p.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies::Nets(nets))
    }
}

impl TrustedProxies {
    /// The client's address, from the TCP peer and the `X-Forwarded-For`
    /// values in the order they arrived (several headers are one list).
    /// Walks the entries from the right without collecting them: nothing
    /// is allocated per request.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        // Whether the address `hop` steps from us (the peer is hop 0) is a
        // trusted proxy.
        let is_proxy = |ip: &IpAddr, hop: usize| match self {
            TrustedProxies::None => false,
            TrustedProxies::Count(n) => hop < *n,
            TrustedProxies::Nets(nets) => nets.iter().any(|net| net.contains(ip)),
        };
        if !is_proxy(&peer, 0) {
            return peer;
        }
        // From the right: the last entry is what the nearest proxy saw.
        let entries = forwarded.rev().flat_map(|v| v.rsplit(',')).map(str::trim);
        let mut client = peer;
        for (hop, entry) in entries.enumerate() {
            let Ok(ip) = entry.parse::<IpAddr>() else {
                // Not an address: nothing further left can be trusted;
                // the proxy that wrote it is as far as we know.
                return client;
            };
            client = ip;
            if !is_proxy(&ip, hop + 1) {
                return ip;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn settings_parse_as_a_count_or_networks() {
        assert_eq!("".parse(), Ok(TrustedProxies::None));
        assert_eq!("0".parse(), Ok(TrustedProxies::None));
        assert_eq!("2".parse(), Ok(TrustedProxies::Count(2)));
        let nets: TrustedProxies = "10.0.0.0/8, 127.0.0.1, ::1".parse().expect("nets");
        assert!(matches!(nets, TrustedProxies::Nets(ref n) if n.len() == 3));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.example".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn without_proxies_the_header_is_ignored() {
        let t = TrustedProxies::None;
        assert_eq!(
            t.client(ip("192.0.2.1"), ["198.51.100.9"].into_iter()),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn one_proxy_gives_the_address_it_saw_whatever_the_client_wrote() {
        let t = TrustedProxies::Count(1);
        let nginx = ip("10.0.0.5");
        // What nginx appended is the last entry.
        assert_eq!(t.client(nginx, ["192.0.2.7"].into_iter()), ip("192.0.2.7"));
        // A spoofed entry sits to the left of it and is not read.
        assert_eq!(
            t.client(nginx, ["198.51.100.1, 192.0.2.7"].into_iter()),
            ip("192.0.2.7")
        );
        assert_eq!(
            t.client(nginx, ["198.51.100.1", "192.0.2.7"].into_iter()),
            ip("192.0.2.7")
        );
        // No header: the proxy is all we know.
        assert_eq!(t.client(nginx, std::iter::empty()), nginx);
    }

    #[test]
    fn two_proxies_skip_one_entry() {
        let t = TrustedProxies::Count(2);
        assert_eq!(
            t.client(
                ip("10.0.0.5"),
                ["203.0.113.9, 192.0.2.7, 10.0.0.4"].into_iter()
            ),
            ip("192.0.2.7")
        );
    }

    #[test]
    fn networks_skip_every_trusted_hop_and_only_those() {
        let t: TrustedProxies = "10.0.0.0/8".parse().expect("nets");
        // A peer outside the networks is the client itself.
        assert_eq!(
            t.client(ip("192.0.2.1"), ["198.51.100.1"].into_iter()),
            ip("192.0.2.1")
        );
        assert_eq!(
            t.client(
                ip("10.0.0.5"),
                ["198.51.100.1, 192.0.2.7, 10.1.1.1"].into_iter()
            ),
            ip("192.0.2.7")
        );
        // Garbage where an address should be: the proxy that wrote it.
        assert_eq!(
            t.client(ip("10.0.0.5"), ["not-an-ip"].into_iter()),
            ip("10.0.0.5")
        );
    }
}
