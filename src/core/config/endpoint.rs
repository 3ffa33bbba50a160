//! Engine addresses of the generic driver in one canonical form, so that one host written two
//! ways (`tcp://h:2376` and `tcp://h:2376/`, `tcp://h` with the default port, `ssh://root@h` and
//! `ssh://h:22`, `[::ffff:10.0.0.5]` and `10.0.0.5`) is seen as one host at validate.

use core::net::{IpAddr, Ipv6Addr};

/// The docker CLI's port for `tcp://` with TLS, which shoal requires.
const DEFAULT_TLS_PORT: u16 = 2376;
/// ssh's port.
const DEFAULT_SSH_PORT: u16 = 22;

/// Why an address cannot be put in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointProblem {
    /// An IPv4 address with a leading zero in an octet: some resolvers read it as octal, others
    /// as decimal, so it may name another host than the one meant.
    AmbiguousIpv4 {
        /// The address as written.
        written: String,
        /// The same octets read as decimal.
        decimal: String,
    },
}

/// The canonical form of `host` (`scheme://host:port` for tcp and ssh, the path for unix), or
/// why it is ambiguous; `None` for what is not an engine address at all (checked elsewhere).
pub fn canonical_endpoint(host: &str) -> Option<Result<String, EndpointProblem>> {
    let (scheme, rest) = host.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "unix" {
        let path = rest.trim_end_matches('/');
        let mut canonical = String::new();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            canonical.push('/');
            canonical.push_str(part);
        }
        return Some(Ok(format!("unix://{canonical}")));
    }
    let default_port = match scheme.as_str() {
        "tcp" => DEFAULT_TLS_PORT,
        "ssh" => DEFAULT_SSH_PORT,
        _ => return None,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (name, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => {
            let (name, after) = bracketed.split_once(']')?;
            (name, after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host_port, None),
        },
    };
    let port = match port {
        None | Some("") => default_port,
        Some(port) => port.parse().ok()?,
    };
    let name = match canonical_name(name) {
        Ok(name) => name,
        Err(problem) => return Some(Err(problem)),
    };
    Some(Ok(format!("{scheme}://{name}:{port}")))
}

/// A host name lower-cased, an IP address in its shortest form (an IPv4-mapped IPv6 address
/// as the IPv4 one), refusing IPv4 octets with leading zeros.
fn canonical_name(name: &str) -> Result<String, EndpointProblem> {
    if let Ok(v6) = name.parse::<Ipv6Addr>() {
        return Ok(match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{v6}]"),
        });
    }
    let octets: Vec<&str> = name.split('.').collect();
    let numeric = octets.len() == 4
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()));
    if numeric {
        if octets.iter().any(|o| o.len() > 1 && o.starts_with('0')) {
            let decimal: Vec<String> = octets
                .iter()
                .map(|o| o.trim_start_matches('0'))
                .map(|o| if o.is_empty() { "0" } else { o }.to_string())
                .collect();
            return Err(EndpointProblem::AmbiguousIpv4 {
                written: name.to_string(),
                decimal: decimal.join("."),
            });
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(ip.to_string());
        }
    }
    Ok(name.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(host: &str) -> String {
        canonical_endpoint(host).unwrap().unwrap()
    }

    #[test]
    fn one_host_written_many_ways_is_one_endpoint() {
        let same = [
            "tcp://172.30.78.14:2376",
            "tcp://172.30.78.14:2376/",
            "tcp://172.30.78.14",
            "TCP://172.30.78.14:2376",
            "tcp://[::ffff:172.30.78.14]:2376",
            "tcp://[::ffff:ac1e:4e0e]:2376",
        ];
        for host in same {
            assert_eq!(canonical(host), "tcp://172.30.78.14:2376", "{host}");
        }
        assert_eq!(
            canonical("ssh://root@Node1.Example.:22"),
            "ssh://node1.example:22"
        );
        assert_eq!(canonical("ssh://node1.example"), "ssh://node1.example:22");
        assert_eq!(canonical("ssh://[fd00:0::1]:2222"), "ssh://[fd00::1]:2222");
        assert_eq!(
            canonical("unix:///var/run//docker.sock/"),
            "unix:///var/run/docker.sock"
        );
    }

    #[test]
    fn different_hosts_and_ports_stay_apart() {
        assert_ne!(
            canonical("tcp://10.0.0.5:2376"),
            canonical("tcp://10.0.0.5:2377")
        );
        assert_ne!(canonical("tcp://10.0.0.5"), canonical("ssh://10.0.0.5"));
        assert_ne!(canonical("tcp://10.0.0.5"), canonical("tcp://10.0.0.50"));
    }

    #[test]
    fn leading_zeros_are_ambiguous() {
        assert_eq!(
            canonical_endpoint("tcp://172.030.078.014:2376"),
            Some(Err(EndpointProblem::AmbiguousIpv4 {
                written: "172.030.078.014".into(),
                decimal: "172.30.78.14".into(),
            }))
        );
        assert_eq!(canonical("tcp://10.0.0.0:2376"), "tcp://10.0.0.0:2376");
    }

    #[test]
    fn what_is_no_engine_address_is_left_to_the_caller() {
        assert_eq!(canonical_endpoint("10.0.0.5"), None);
        assert_eq!(canonical_endpoint("http://10.0.0.5"), None);
    }
}
