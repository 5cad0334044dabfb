//! Units of the foundation layer: one parser for every duration ferry reads, from the command
//! line (`--max-downtime 500ms`) or a configuration (`CHECKPOINT_INTERVAL="1h"`), so that a
//! value means the same wherever it is written.

use std::time::Duration;

/// Now, in whole seconds since the Unix epoch (0 on a clock before it): the one reading of
/// wall-clock seconds that states, journals and listings record.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A size for people, in OpenVZ's K/M/G/T (binary): `704K`, `1.5G`, `12M`; one decimal below
/// 10 of a unit, none above; bytes below 1 KiB as `512B`. Never rounds something to `0M`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v < 10.0 && v.fract() >= 0.05 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{:.0}{}", v, UNITS[u])
    }
}

/// An interval in whole seconds, above zero ([`duration`]: seconds, or a number with a unit):
/// CHECKPOINT_INTERVAL and `--checkpoint-interval`.
pub fn interval_secs(s: &str) -> Option<u64> {
    duration(s).map(|d| d.as_secs()).filter(|v| *v > 0)
}

/// A duration: a number with `ms`, `s`, `m`, `h` or `d`, or a bare number of seconds (as
/// OpenVZ's intervals and timeouts are). Fractions are allowed with a unit (`1.5s`, `0.5h`);
/// nothing negative, nothing else after the number.
pub fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit_ms) = [("ms", 1.0), ("s", 1e3), ("m", 60e3), ("h", 3600e3), ("d", 86400e3)]
        .iter()
        .find_map(|(suffix, ms)| s.strip_suffix(suffix).map(|n| (n, *ms)))
        .unwrap_or((s, 1e3));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    let ms = v * unit_ms;
    (ms.is_finite() && ms < 1e15).then(|| Duration::from_secs_f64(ms / 1e3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(512), "512B");
        assert_eq!(size(704 << 10), "704K");
        assert_eq!(size(1536 << 10), "1.5M");
        assert_eq!(size(12 << 20), "12M");
        assert_eq!(size(3 << 29), "1.5G");
        assert_eq!(size(2 << 40), "2T");
        assert_eq!(size(4096 << 40), "4096T");
    }

    #[test]
    fn one_meaning_for_every_duration() {
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(duration(" 5m "), Some(Duration::from_secs(300)));
        assert_eq!(duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(duration("0"), Some(Duration::ZERO));
        for bad in ["", "s", "ms", "-1s", "1x", "1 s", "1e3", "1.2.3s", "99999999999999999d"] {
            assert_eq!(duration(bad), None, "{bad:?}");
        }
    }
}
