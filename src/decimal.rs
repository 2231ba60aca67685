//! Exact decimals. A number a caller sends (a confidence, a business metric, a policy
//! threshold) is kept as the decimal its shortest round-trip form spells: on the log a
//! CBOR decimal fraction (RFC 8949 §3.4.4, tag 4: `[exponent, mantissa]`), in JSON a
//! number. No float enters an entry; aggregates sum [`Decimal::fixed`] integers, so
//! every node and every rebuild counts alike.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `mantissa × 10^exponent`, with no trailing zeros in the mantissa (so equal numbers
/// are equal values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub mantissa: i64,
    pub exponent: i32,
}

impl Decimal {
    /// The decimal a finite f64's shortest round-trip form spells (`None` for NaN and
    /// infinities).
    pub fn from_f64(f: f64) -> Option<Self> {
        if !f.is_finite() {
            return None;
        }
        let sci = format!("{f:e}"); // e.g. "-1.2345e-3"
        let (mant, exp) = sci.split_once('e')?;
        let exp: i32 = exp.parse().ok()?;
        let neg = mant.starts_with('-');
        let mant = mant.trim_start_matches('-');
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        let digits: i64 = format!("{int}{frac}").parse().ok()?;
        Some(Self::normal(
            if neg { -digits } else { digits },
            exp - frac.len() as i32,
        ))
    }

    /// `mantissa × 10^exponent` (the mantissa without trailing zeros, as every
    /// decimal is kept).
    pub const fn new(mantissa: i64, exponent: i32) -> Self {
        Decimal { mantissa, exponent }
    }

    /// An integer as a decimal.
    pub fn integer(n: i64) -> Self {
        Self::normal(n, 0)
    }

    fn normal(mut mantissa: i64, mut exponent: i32) -> Self {
        if mantissa == 0 {
            return Decimal {
                mantissa: 0,
                exponent: 0,
            };
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        Decimal { mantissa, exponent }
    }

    pub fn to_f64(self) -> f64 {
        format!("{}e{}", self.mantissa, self.exponent)
            .parse()
            .unwrap_or(f64::NAN)
    }

    /// The value scaled by 10^`places` as an integer, rounded half away from zero past
    /// that many decimal places; ±10^30 when that overflows (callers bound their inputs).
    pub fn fixed(self, places: u32) -> i128 {
        let shift = self.exponent + places as i32;
        let m = i128::from(self.mantissa);
        if shift >= 0 {
            10i128
                .checked_pow(shift as u32)
                .and_then(|p| m.checked_mul(p))
                .unwrap_or(if m < 0 {
                    -(10i128.pow(30))
                } else {
                    10i128.pow(30)
                })
        } else if -shift > 30 {
            0
        } else {
            let p = 10i128.pow((-shift) as u32);
            let (q, r) = (m / p, m % p);
            if r.abs() * 2 >= p {
                q + m.signum()
            } else {
                q
            }
        }
    }

    /// [`Decimal::fixed`], saturated to an i64.
    pub fn fixed_i64(self, places: u32) -> i64 {
        self.fixed(places)
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The CBOR form: tag 4 over `[exponent, mantissa]` (whole numbers too, as the
    /// log's first entries with confidences wrote them).
    pub fn to_cbor(self) -> serde_cbor::Value {
        use serde_cbor::Value as C;
        C::Tag(
            4,
            Box::new(C::Array(vec![
                C::Integer(self.exponent.into()),
                C::Integer(self.mantissa.into()),
            ])),
        )
    }

    /// Read the CBOR form back (also `[exponent, mantissa]` without its tag, as
    /// `serde_cbor::value` hands tagged values on).
    pub fn from_cbor(v: &serde_cbor::Value) -> Option<Self> {
        use serde_cbor::Value as C;
        match v {
            C::Integer(n) => i64::try_from(*n).ok().map(Self::integer),
            C::Tag(4, inner) => Self::from_cbor(inner),
            C::Array(a) if a.len() == 2 => match (&a[0], &a[1]) {
                (C::Integer(e), C::Integer(m)) => Some(Self::normal(
                    i64::try_from(*m).ok()?,
                    i32::try_from(*e).ok()?,
                )),
                _ => None,
            },
            _ => None,
        }
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_f64())
    }
}

/// JSON (human-readable formats): a number. CBOR: the decimal fraction.
impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_f64(self.to_f64())
        } else {
            self.to_cbor().serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if d.is_human_readable() {
            let f = f64::deserialize(d)?;
            Decimal::from_f64(f).ok_or_else(|| D::Error::custom("must be a finite number"))
        } else {
            let v = serde_cbor::Value::deserialize(d)?;
            Decimal::from_cbor(&v).ok_or_else(|| D::Error::custom("not a decimal fraction"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decimal_is_the_shortest_form_of_its_float() {
        let d = Decimal::from_f64(0.1).unwrap();
        assert_eq!((d.mantissa, d.exponent), (1, -1));
        let d = Decimal::from_f64(1234.5).unwrap();
        assert_eq!((d.mantissa, d.exponent), (12345, -1));
        let d = Decimal::from_f64(-300.0).unwrap();
        assert_eq!((d.mantissa, d.exponent), (-3, 2));
        assert_eq!(Decimal::from_f64(0.0).unwrap(), Decimal::integer(0));
        assert!(Decimal::from_f64(f64::NAN).is_none());
        for f in [0.1, 0.123456789012345, 1e-300, 9.87e20, -0.5] {
            assert_eq!(Decimal::from_f64(f).unwrap().to_f64(), f);
        }
    }

    #[test]
    fn fixed_point_rounds_half_away_from_zero_past_its_places() {
        let d = |f: f64| Decimal::from_f64(f).unwrap();
        assert_eq!(d(0.1).fixed(12), 100_000_000_000);
        assert_eq!(d(0.9).fixed(1), 9);
        assert_eq!(d(0.25).fixed(1), 3);
        assert_eq!(d(-0.25).fixed(1), -3);
        assert_eq!(d(0.24).fixed(1), 2);
        assert_eq!(d(12.0).fixed(3), 12_000);
        assert_eq!(d(1e-40).fixed(9), 0);
    }

    #[test]
    fn the_cbor_form_reads_back_with_or_without_its_tag() {
        for f in [0.05, 3.0, -12.75, 1e-9] {
            let d = Decimal::from_f64(f).unwrap();
            let bytes = serde_cbor::to_vec(&d).unwrap();
            let back: Decimal = serde_cbor::from_slice(&bytes).unwrap();
            assert_eq!(back, d);
            let v: serde_cbor::Value = serde_cbor::from_slice(&bytes).unwrap();
            let untagged = match v {
                serde_cbor::Value::Tag(_, inner) => *inner,
                other => other,
            };
            assert_eq!(Decimal::from_cbor(&untagged), Some(d));
        }
        let json = serde_json::to_string(&Decimal::from_f64(0.05).unwrap()).unwrap();
        assert_eq!(json, "0.05");
    }
}
