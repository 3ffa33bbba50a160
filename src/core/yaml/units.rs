//! Parsing of the value syntaxes compose files use: Go durations (`1m30s`), byte sizes
//! (`512M`), CPU counts (`0.5`), integers and booleans as the docker CLI reads them.

/// Parses a Go duration (`300ms`, `1m30s`, `2h`, `0`) into nanoseconds; negative values are refused.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration");
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("`{text}` is negative; a duration must be positive"));
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(bad());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("`{text}` has no unit (write e.g. `{number}s`)")),
            _ => {
                return Err(format!(
                    "`{text}` has an unknown unit `{unit}` (use ns, us, ms, s, m or h)"
                ))
            }
        };
        let fraction = &fraction[..fraction.len().min(18)];
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let frac: u128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| bad())?
        };
        let part = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac * scale / 10u128.pow(fraction.len() as u32)))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        total = total.saturating_add(part);
    }
    i64::try_from(total).map_err(|_| format!("`{text}` is too long a duration"))
}

/// Parses a byte size as docker does (`units.RAMInBytes`): a number with an optional binary
/// suffix `k`, `m`, `g`, `t`, `p` (optionally followed by `b` or `ib`), case-insensitive.
pub fn parse_size(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a size (write e.g. `512M` or `1g`)");
    let split = text
        .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .ok_or_else(bad)?;
    let (number, suffix) = if text.as_bytes()[split] == b' ' {
        (&text[..split], &text[split + 1..])
    } else {
        (&text[..=split], &text[split + 1..])
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if value < 0.0 {
        return Err(format!("`{text}` is negative"));
    }
    let suffix = suffix.to_ascii_lowercase();
    let multiplier: f64 = match suffix.as_str() {
        "" | "b" => 1.0,
        _ => {
            let scale = match suffix.as_bytes()[0] {
                b'k' => 1024f64,
                b'm' => 1024f64.powi(2),
                b'g' => 1024f64.powi(3),
                b't' => 1024f64.powi(4),
                b'p' => 1024f64.powi(5),
                _ => return Err(bad()),
            };
            match &suffix[1..] {
                "" | "b" | "ib" => scale,
                _ => return Err(bad()),
            }
        }
    };
    let bytes = value * multiplier;
    if bytes > i64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(bytes as i64)
}

/// Parses a CPU count (`0.5`, `2`) into units of 1e-9 CPUs, refusing more than nine decimals.
pub fn parse_cpus(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a number of CPUs (write e.g. `0.5`)");
    let s = text.trim();
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 9 {
        return Err(format!("`{text}` is too precise (at most 9 decimals)"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().map_err(|_| bad())?
    };
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac))
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses an integer. A plain (unquoted) YAML scalar may be written in hex (`0x1F`), octal
/// (`0o440` or `0440`, as the docker CLI's YAML reader takes it) or binary (`0b101`); a quoted
/// one is decimal.
pub fn parse_int(text: &str, plain: bool) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a whole number");
    let s = text.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let cleaned = digits.replace('_', "");
    let (radix, body) = if !plain {
        (10, cleaned.as_str())
    } else if let Some(hex) = cleaned
        .strip_prefix("0x")
        .or_else(|| cleaned.strip_prefix("0X"))
    {
        (16, hex)
    } else if let Some(oct) = cleaned
        .strip_prefix("0o")
        .or_else(|| cleaned.strip_prefix("0O"))
    {
        (8, oct)
    } else if let Some(bin) = cleaned
        .strip_prefix("0b")
        .or_else(|| cleaned.strip_prefix("0B"))
    {
        (2, bin)
    } else if cleaned.len() > 1 && cleaned.starts_with('0') {
        (8, &cleaned[1..])
    } else {
        (10, cleaned.as_str())
    };
    if body.is_empty() || (!plain && digits.contains('_')) {
        return Err(bad());
    }
    let value = i64::from_str_radix(body, radix).map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => format!("`{text}` is too large"),
        _ => bad(),
    })?;
    Ok(if negative { -value } else { value })
}

/// Parses a boolean the way the docker CLI casts compose values (`true`, `yes`, `on`, `y`, ...).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Ok(true),
        "n" | "no" | "false" | "off" => Ok(false),
        _ => Err(format!("`{text}` is not a boolean (use true or false)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(10_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("2us"), Ok(2_000));
        assert_eq!(parse_duration("0.3s"), Ok(300_000_000));
        assert_eq!(parse_duration("1.1s"), Ok(1_100_000_000));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10 s").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("1g"), Ok(1024 * 1024 * 1024));
        assert_eq!(parse_size("256mb"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("10 m"), Ok(10 * 1024 * 1024));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5x").is_err());
        assert!(parse_size("5mbb").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus(".25"), Ok(250_000_000));
        assert_eq!(parse_cpus("0.000000001"), Ok(1));
        assert!(parse_cpus("0.0000000001").unwrap_err().contains("precise"));
        assert!(parse_cpus("half").is_err());
        assert!(parse_cpus("-1").is_err());
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int("0440", true), Ok(0o440));
        assert_eq!(parse_int("0440", false), Ok(440));
        assert_eq!(parse_int("0o440", true), Ok(0o440));
        assert_eq!(parse_int("0x1f", true), Ok(31));
        assert_eq!(parse_int("-5", true), Ok(-5));
        assert_eq!(parse_int("0", true), Ok(0));
        assert!(parse_int("1.5", true).is_err());
        assert!(parse_int("five", false).is_err());
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert_eq!(parse_bool("off"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }
}
