//! The compose short syntaxes, parsed as the docker CLI parses them: shell-like command
//! strings, port specs (`127.0.0.1:8000-8001:80-81/udp`), volume specs (`data:/var/lib:ro`)
//! and image references.

use super::types::{Port, ServiceVolume};
use core::net::IpAddr;

/// Splits a command string into words as the docker CLI does (google/shlex): whitespace
/// separates words, `'...'` is literal, `"..."` allows `\` escapes, `\` escapes outside quotes,
/// and `#` at the start of a word begins a comment.
pub fn shell_split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars
            .next_if(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
            .is_some()
        {}
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        if first == '#' {
            while chars.next_if(|&c| c != '\n').is_some() {}
            continue;
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                ' ' | '\t' | '\r' | '\n' => break,
                '\\' => word.push(chars.next().ok_or("EOF found after escape character")?),
                '\'' => loop {
                    match chars
                        .next()
                        .ok_or("EOF found when expecting closing quote")?
                    {
                        '\'' => break,
                        other => word.push(other),
                    }
                },
                '"' => loop {
                    match chars
                        .next()
                        .ok_or("EOF found when expecting closing quote")?
                    {
                        '"' => break,
                        '\\' => word.push(
                            chars
                                .next()
                                .ok_or("EOF found when expecting closing quote")?,
                        ),
                        other => word.push(other),
                    }
                },
                other => word.push(other),
            }
        }
        words.push(word);
    }
}

/// The ports of a short port spec, and the host IP it named (swarm ignores it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShortPorts {
    /// The ports, with protocol and mode `ingress` filled in.
    pub ports: Vec<Port>,
    /// A host IP that was written and will be ignored.
    pub ignored_ip: Option<String>,
}

fn port_range(text: &str, what: &str) -> Result<(u32, u32), String> {
    let number = |s: &str| -> Result<u32, String> {
        s.parse::<u32>()
            .ok()
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| format!("invalid {what} `{text}` (ports are 1 to 65535)"))
    };
    match text.split_once('-') {
        Some((start, end)) => {
            let (start, end) = (number(start)?, number(end)?);
            if end < start {
                return Err(format!(
                    "invalid {what} range `{text}` (the end is before the start)"
                ));
            }
            Ok((start, end))
        }
        None => number(text).map(|p| (p, p)),
    }
}

/// Parses `[[ip:]published:]target[/protocol]` with ranges, as `docker stack deploy` does.
pub fn parse_port(spec: &str) -> Result<ShortPorts, String> {
    let (address, protocol) = match spec.rsplit_once('/') {
        Some((address, protocol)) => (address, protocol),
        None => (spec, "tcp"),
    };
    if !matches!(protocol, "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid protocol `{protocol}` (use tcp, udp or sctp)"
        ));
    }
    let parts: Vec<&str> = address.split(':').collect();
    let n = parts.len();
    let target = parts[n - 1];
    let (ip, published) = match n {
        1 => (String::new(), ""),
        2 => (String::new(), parts[0]),
        _ => (parts[..n - 2].join(":"), parts[n - 2]),
    };
    let ip = ip
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .map_or(ip.clone(), str::to_string);
    let ignored_ip = if ip.is_empty() {
        None
    } else {
        let parsed: IpAddr = ip
            .parse()
            .map_err(|_| format!("invalid IP address `{ip}`"))?;
        (!parsed.is_unspecified()).then_some(ip)
    };
    let (target_start, target_end) = port_range(target, "container port")?;
    let published = if published.is_empty() {
        None
    } else {
        Some(port_range(published, "published port")?)
    };
    let mut ports = Vec::new();
    let port = |target: u32, published: u32| Port {
        target,
        published,
        protocol: protocol.to_string(),
        mode: "ingress".to_string(),
        name: String::new(),
    };
    match published {
        None => ports.extend((target_start..=target_end).map(|t| port(t, 0))),
        Some((start, end)) if end - start == target_end - target_start => ports.extend(
            (target_start..=target_end)
                .zip(start..=end)
                .map(|(t, p)| port(t, p)),
        ),
        Some((start, end)) if target_start == target_end => {
            ports.extend((start..=end).map(|p| port(target_start, p)))
        }
        Some(_) => {
            return Err(format!(
                "invalid ranges for container and published ports: `{target}` and `{}`",
                parts[n - 2]
            ))
        }
    }
    Ok(ShortPorts { ports, ignored_ip })
}

/// Options of a short volume spec that the docker CLI ignores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShortVolume {
    /// The mount.
    pub volume: ServiceVolume,
    /// Options that were written and are ignored.
    pub ignored_options: Vec<String>,
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn is_windows_drive(buffer: &str, c: char) -> bool {
    let mut chars = buffer.chars();
    c == ':' && matches!((chars.next(), chars.next()), (Some(d), None) if d.is_alphabetic())
}

fn is_file_path(source: &str) -> bool {
    if source.starts_with(['.', '/', '~']) || source.starts_with("\\\\") {
        return true;
    }
    let mut chars = source.chars();
    matches!((chars.next(), chars.next()), (Some(d), Some(':')) if d.is_alphabetic())
}

/// Parses `[source:]target[:options]` as the docker CLI does: a source that looks like a path
/// makes a bind mount, another source a named volume, none an anonymous volume.
pub fn parse_volume(spec: &str) -> Result<ShortVolume, String> {
    let mut out = ShortVolume::default();
    let volume = &mut out.volume;
    volume.kind = "volume".to_string();
    if spec.is_empty() {
        return Err("empty volume spec".to_string());
    }
    if spec.chars().count() <= 2 {
        volume.target = spec.to_string();
        return Ok(out);
    }
    let mut fields: Vec<String> = Vec::new();
    let mut buffer = String::new();
    for c in spec.chars() {
        if c == ':' && !is_windows_drive(&buffer, c) {
            fields.push(std::mem::take(&mut buffer));
        } else {
            buffer.push(c);
        }
    }
    fields.push(buffer);
    if fields.iter().any(String::is_empty) {
        return Err(format!(
            "invalid volume spec `{spec}`: empty section between colons"
        ));
    }
    match fields.len() {
        1 => volume.target = fields.remove(0),
        2 | 3 => {
            volume.source = fields.remove(0);
            volume.target = fields.remove(0);
        }
        _ => return Err(format!("invalid volume spec `{spec}`: too many colons")),
    }
    if let Some(options) = fields.first() {
        for option in options.split(',') {
            match option {
                "ro" => volume.read_only = true,
                "rw" => volume.read_only = false,
                "nocopy" => volume.nocopy = true,
                p if PROPAGATIONS.contains(&p) => volume.bind_propagation = Some(p.to_string()),
                other => out.ignored_options.push(other.to_string()),
            }
        }
    }
    if is_file_path(&out.volume.source) {
        out.volume.kind = "bind".to_string();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split("echo hello world").unwrap(),
            ["echo", "hello", "world"]
        );
        assert_eq!(
            shell_split(r#"sh -c "echo \"hi\" there" 'a b' c\ d"#).unwrap(),
            ["sh", "-c", "echo \"hi\" there", "a b", "c d"]
        );
        assert_eq!(shell_split("run # comment").unwrap(), ["run"]);
        assert_eq!(shell_split("a#b").unwrap(), ["a#b"]);
        assert_eq!(shell_split("\"\"").unwrap(), [""]);
        assert!(shell_split("echo 'open").is_err());
        assert!(shell_split("").unwrap().is_empty());
    }

    fn port(target: u32, published: u32, protocol: &str) -> Port {
        Port {
            target,
            published,
            protocol: protocol.into(),
            mode: "ingress".into(),
            name: String::new(),
        }
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_port("4000:8080").unwrap().ports,
            [port(8080, 4000, "tcp")]
        );
        assert_eq!(parse_port("8080").unwrap().ports, [port(8080, 0, "tcp")]);
        assert_eq!(
            parse_port("53:53/udp").unwrap().ports,
            [port(53, 53, "udp")]
        );
        assert_eq!(
            parse_port("80-81:90-91").unwrap().ports,
            [port(90, 80, "tcp"), port(91, 81, "tcp")]
        );
        assert_eq!(
            parse_port("8000-8001:80").unwrap().ports,
            [port(80, 8000, "tcp"), port(80, 8001, "tcp")]
        );
        let with_ip = parse_port("127.0.0.1:80:80").unwrap();
        assert_eq!(with_ip.ports, [port(80, 80, "tcp")]);
        assert_eq!(with_ip.ignored_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(parse_port("0.0.0.0:80:80").unwrap().ignored_ip, None);
        assert_eq!(
            parse_port("[::1]:80:80").unwrap().ignored_ip.as_deref(),
            Some("::1")
        );
        assert!(parse_port("80:80-81").is_err());
        assert!(parse_port("80/tcpx").is_err());
        assert!(parse_port("99999:80").is_err());
        assert!(parse_port("abc").is_err());
        assert!(parse_port("x.y:80:80").is_err());
    }

    #[test]
    fn volumes() {
        let v = parse_volume("data:/var/lib/data:ro").unwrap().volume;
        assert_eq!(
            (
                v.kind.as_str(),
                v.source.as_str(),
                v.target.as_str(),
                v.read_only
            ),
            ("volume", "data", "/var/lib/data", true)
        );
        let v = parse_volume("/srv:/srv:rshared").unwrap().volume;
        assert_eq!(v.kind, "bind");
        assert_eq!(v.bind_propagation.as_deref(), Some("rshared"));
        let v = parse_volume("/cache").unwrap().volume;
        assert_eq!(
            (v.kind.as_str(), v.source.as_str(), v.target.as_str()),
            ("volume", "", "/cache")
        );
        let v = parse_volume("./conf:/etc/conf").unwrap().volume;
        assert_eq!(v.kind, "bind");
        let v = parse_volume("data:/d:nocopy").unwrap().volume;
        assert!(v.nocopy);
        assert_eq!(parse_volume("data:/d:z").unwrap().ignored_options, ["z"]);
        assert!(parse_volume("vol:/b:ro:x").is_err());
        assert!(parse_volume("vol::/b").is_err());
        assert!(parse_volume("").is_err());
        let v = parse_volume("C:\\data:/data").unwrap().volume;
        assert_eq!((v.kind.as_str(), v.source.as_str()), ("bind", "C:\\data"));
    }
}
