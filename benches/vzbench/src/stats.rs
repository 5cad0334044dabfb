//! Medians and spread: these machines are noisy, so single times mean little.

/// Median, minimum and maximum of some samples.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        if samples.is_empty() {
            return Spread::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Spread {
            median,
            min: s[0],
            max: s[n - 1],
        }
    }

    /// "412 [390-450]" with the given number of decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!("{:.d$} [{:.d$}-{:.d$}]", self.median, self.min, self.max, d = decimals)
    }
}

/// A target met or missed, for the report: "met (0.21 <= 0.30)" or "MISSED by 40% (0.42 > 0.30)".
pub fn verdict(value: f64, limit: f64, at_most: bool) -> String {
    let ok = if at_most { value <= limit } else { value >= limit };
    let (op_ok, op_bad) = if at_most { ("<=", ">") } else { (">=", "<") };
    if ok {
        format!("met ({value:.2} {op_ok} {limit:.2})")
    } else {
        let by = if at_most {
            (value / limit - 1.0) * 100.0
        } else {
            (1.0 - value / limit) * 100.0
        };
        format!("MISSED by {by:.0}% ({value:.2} {op_bad} {limit:.2})")
    }
}

/// A report line for a target of the form "at most `limit`": "- what: met (...)".
pub fn at_most(what: &str, value: f64, limit: f64) -> String {
    format!("- {what}: {}", verdict(value, limit, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_spread_and_verdicts() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Spread::of(&[]).median, 0.0);
        assert_eq!(s.show(0), "2 [1-3]");
        assert_eq!(verdict(0.2, 0.3, true), "met (0.20 <= 0.30)");
        assert_eq!(verdict(0.45, 0.3, true), "MISSED by 50% (0.45 > 0.30)");
        assert_eq!(verdict(0.6, 0.8, false), "MISSED by 25% (0.60 < 0.80)");
    }
}
