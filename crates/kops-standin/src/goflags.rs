//! Flag value parsers that behave like the Go ones kOps' flags use
//! (`strconv.ParseBool`, `time.ParseDuration`, `strconv.ParseInt`, klog's
//! `Level` and `severity`), with Go's error wording, so that a bad value is
//! rejected the way pflag rejects it: `invalid argument "x" for "--flag"
//! flag: <the Go error>`.

/// `strconv.ParseBool`: the spellings pflag accepts for `--flag=value`.
pub fn boolean(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            quote(s)
        )),
    }
}

/// `time.ParseDuration`, returning nanoseconds. Accepts what Go accepts:
/// an optional sign, then one or more `<number><unit>` terms (`1h30m`,
/// `1.5s`, `300ms`), or a bare `0`.
pub fn duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {}", quote(s));
    let mut rest = s;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let bytes = rest.as_bytes();
        if !(bytes[0] == b'.' || bytes[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..frac_len];
            rest = &r[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", quote(s)));
        }
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(unit),
                    quote(s)
                ));
            }
        };
        let number: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            if frac_part.is_empty() { "0" } else { frac_part }
        )
        .parse()
        .map_err(|_| invalid())?;
        total += number * scale;
    }
    // Go rejects durations beyond ~292 years as overflow.
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let nanos = total.round() as i128;
    Ok(if negative { -nanos } else { nanos })
}

/// pflag's `int32`: `strconv.ParseInt(s, 0, 32)` (decimal, or `0x`/`0o`/`0b`
/// prefixed).
pub fn int32(s: &str) -> Result<i32, String> {
    let value = parse_int(s)?;
    i32::try_from(value)
        .map_err(|_| format!("strconv.ParseInt: parsing {}: value out of range", quote(s)))
}

/// pflag's `int`: `strconv.ParseInt(s, 0, 64)`.
pub fn int(s: &str) -> Result<i64, String> {
    parse_int(s)
}

fn parse_int(s: &str) -> Result<i64, String> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (radix, body) = if let Some(b) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, b)
    } else if let Some(b) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, b)
    } else if let Some(b) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, b)
    } else {
        (10, digits)
    };
    let syntax = || format!("strconv.ParseInt: parsing {}: invalid syntax", quote(s));
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return Err(syntax());
    }
    let magnitude = i64::from_str_radix(body, radix)
        .map_err(|_| format!("strconv.ParseInt: parsing {}: value out of range", quote(s)))?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// Go's `time.Duration.String()`: `18h0m0s`, `15m0s`, `10s`, `1.5s`,
/// `500ms`, `0s`.
pub fn format_duration(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = |value: u128, unit: u128| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let width = unit.to_string().len() - 1;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}\u{b5}s", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 1_000_000));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = n / 60_000_000_000 % 60;
    let seconds = frac(n % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

/// klog's `-v` Level: a base-10 int32.
pub fn level(s: &str) -> Result<i32, String> {
    s.parse::<i32>()
        .map_err(|_| format!("strconv.ParseInt: parsing {}: invalid syntax", quote(s)))
}

/// klog's severity names (or their numbers), as `--alsologtostderrthreshold`
/// takes them.
pub fn severity(s: &str) -> Result<String, String> {
    match s.to_ascii_uppercase().as_str() {
        "INFO" | "WARNING" | "ERROR" | "FATAL" | "0" | "1" | "2" | "3" => Ok(s.to_string()),
        _ => Err(format!("unknown severity {}", quote(s))),
    }
}

/// `-o/--output` of `kops get`.
pub fn output_format(s: &str) -> Result<String, String> {
    match s {
        "table" | "yaml" | "json" => Ok(s.to_string()),
        _ => Err(format!("unknown output format: {}", quote(s))),
    }
}

/// `--target` of `kops update cluster`: the targets kOps knows.
pub fn target(s: &str) -> Result<String, String> {
    match s {
        "direct" | "terraform" => Ok(s.to_string()),
        _ => Err(format!("unsupported target type {}", quote(s))),
    }
}

/// `--phase` of `kops update cluster`.
pub fn phase(s: &str) -> Result<String, String> {
    match s {
        "cluster" | "network" | "security" => Ok(s.to_string()),
        _ => Err(format!(
            "unknown phase {}, available phases: cluster,network,security",
            quote(s)
        )),
    }
}

/// Go's `%q` for the plain strings that show up in flag values.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_strconv() {
        assert_eq!(boolean("True"), Ok(true));
        assert_eq!(boolean("0"), Ok(false));
        assert_eq!(
            boolean("yes"),
            Err("strconv.ParseBool: parsing \"yes\": invalid syntax".to_string())
        );
    }

    #[test]
    fn durations_follow_time_parse_duration() {
        assert_eq!(duration("15m0s"), Ok(900_000_000_000));
        assert_eq!(duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(duration(".5ms"), Ok(500_000));
        assert_eq!(duration("0"), Ok(0));
        assert_eq!(duration("-2s"), Ok(-2_000_000_000));
        assert_eq!(
            duration("10"),
            Err("time: missing unit in duration \"10\"".to_string())
        );
        assert_eq!(
            duration("10x"),
            Err("time: unknown unit \"x\" in duration \"10x\"".to_string())
        );
        assert_eq!(
            duration("abc"),
            Err("time: invalid duration \"abc\"".to_string())
        );
        assert!(duration("").is_err());
        assert!(duration(".s").is_err());
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format_duration(64_800_000_000_000), "18h0m0s");
        assert_eq!(format_duration(900_000_000_000), "15m0s");
        assert_eq!(format_duration(10_000_000_000), "10s");
        assert_eq!(format_duration(1_500_000_000), "1.5s");
        assert_eq!(format_duration(90_000_000_000), "1m30s");
        assert_eq!(format_duration(500_000_000), "500ms");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(duration("1h0m0.25s").unwrap()), "1h0m0.25s");
    }

    #[test]
    fn int_is_64_bit() {
        assert_eq!(int("3000000000"), Ok(3_000_000_000));
        assert!(int("3x").unwrap_err().contains("invalid syntax"));
    }

    #[test]
    fn int32_accepts_go_prefixes_and_rejects_overflow() {
        assert_eq!(int32("2"), Ok(2));
        assert_eq!(int32("0x10"), Ok(16));
        assert_eq!(int32("-3"), Ok(-3));
        assert!(int32("3000000000").unwrap_err().contains("out of range"));
        assert!(int32("two").unwrap_err().contains("invalid syntax"));
    }
}
