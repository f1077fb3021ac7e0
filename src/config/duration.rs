//! The one way durations are written, in the config, the admin API and on the command line.

use std::time::Duration;

/// A duration as the config and the admin API write it: numbers each followed by a unit, with
/// no space (`500ms`, `5s`, `2m`, `1h30m`, `7d`); units `ms`, `s`, `m`, `h`, `d`. One spelling
/// for everything, so that `"2"` and `"1 sec"` are refused alike.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let refuse = || {
        format!(
            "{text:?} is not a duration: write numbers each followed by a unit, with no space, \
             such as \"500ms\", \"5s\", \"2m\" or \"1h30m\" (units: ms, s, m, h, d)"
        )
    };
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(refuse());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(refuse()),
        };
        let n: u64 = number.parse().map_err(|_| refuse())?;
        total = n
            .checked_mul(millis_per_unit)
            .and_then(|millis| total.checked_add(Duration::from_millis(millis)))
            .ok_or_else(refuse)?;
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_one_spelling() {
        for (text, secs) in [
            ("500ms", 0.5),
            ("5s", 5.0),
            ("2m", 120.0),
            ("1h30m", 5400.0),
            ("7d", 604_800.0),
            ("0s", 0.0),
        ] {
            assert_eq!(
                parse_duration(text).map(|d| d.as_secs_f64()),
                Ok(secs),
                "{text}"
            );
        }
        for text in [
            "2",
            "1 sec",
            "1sec",
            "5 s",
            "",
            "s",
            "1.5s",
            "-1s",
            "1h 30m",
            "10years",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} accepted");
        }
    }
}
